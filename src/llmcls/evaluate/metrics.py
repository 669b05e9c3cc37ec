"""Metrics of every task, shared by validation during training and the evaluate, baseline and ensemble stages
(scikit-learn and scipy): single-label classes, multi-label sets, and scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    classification_report,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    log_loss,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from llmcls.core.errors import LlmclsError
from llmcls.evaluate.calibration import expected_calibration_error

# Whether a larger value is better, for choosing the best checkpoint.
GREATER_IS_BETTER = {
    "accuracy": True,
    "f1_macro": True,
    "f1_micro": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "pearson": True,
    "spearman": True,
    "r2": True,
}
# The metrics validation computes for each task (what train.metric_for_best may name) and the main one
# (what `auto` picks, and what sweeps and reports compare first).
TASK_METRICS = {
    SINGLE_LABEL: ("accuracy", "f1_macro", "log_loss"),
    MULTI_LABEL: ("f1_macro", "f1_micro", "accuracy", "log_loss"),
    REGRESSION: ("pearson", "spearman", "rmse", "mae", "r2"),
}


# How tables (the report's leaderboard, a model card) name the headline metrics, in the order they show them.
METRIC_NAMES = {
    "accuracy": "accuracy",
    "f1_macro": "macro F1",
    "f1_micro": "micro F1",
    "log_loss": "log loss",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "rmse": "RMSE",
    "qwk": "QWK",
}


def metric_for_best(setting: str, task: str) -> str:
    """The validation metric that picks the kept checkpoint (params train.metric_for_best) for ``task``."""
    if setting == "auto":
        return TASK_METRICS[task][0]
    if setting not in TASK_METRICS[task]:
        raise LlmclsError(
            f"params.yaml train.metric_for_best: {setting!r} is not a {task} metric; use auto or one of "
            f"{list(TASK_METRICS[task])}"
        )
    return setting


def macro_prf(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    """Macro precision / recall / F1 over the classes that occur, true or predicted (a negative prediction,
    an answer outside the label set, is wrong but no class). A class with no rows in the split and never
    predicted has no F1 to average (it would count as 0); one with rows that is never hit counts 0."""
    occurring = sorted({int(c) for c in np.concatenate([y_true, y_pred]) if c >= 0})
    p, r, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=occurring, average="macro", zero_division=0)
    return float(p), float(r), float(f1)


def summary_metrics(y_true: Sequence[int], probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1 and log loss of class probabilities ``probs`` (n x classes)."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=-1)
    precision, recall, f1 = macro_prf(y_true, y_pred)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": precision,
        "recall_macro": recall,
        "f1_macro": f1,
        "log_loss": float(log_loss(y_true, probs, labels=list(range(probs.shape[1])))),
    }


def full_report(y_true: Sequence[int], probs: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Summary metrics plus the per-class report and the confusion matrix (rows: true, columns: predicted)."""
    y_pred = probs.argmax(axis=-1)
    classes = list(range(len(names)))
    report = classification_report(
        y_true, y_pred, labels=classes, target_names=list(names), output_dict=True, zero_division=0
    )
    per_class = {name: {k: float(v) for k, v in report[name].items()} for name in names}
    return summary_metrics(y_true, probs) | {
        "ece": expected_calibration_error(np.asarray(y_true), probs),
        "n": int(len(y_true)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def binary_log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy over every (row, label) of a multi-label split."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-15, 1 - 1e-15)
    return float(-(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean())


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Set metrics of 0/1 ``predicted`` (rows x labels) against ``y_true``: micro / macro / samples F1, macro
    precision and recall, subset accuracy (the whole set right), Hamming loss; and of ``probs``: macro ROC-AUC
    and average precision over the labels with both outcomes in the split, and the binary log loss."""
    both = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    p, r, _, _ = precision_recall_fscore_support(y_true, predicted, average="macro", zero_division=0)
    ranked = (y_true[:, both], probs[:, both])
    return {
        "f1_macro": float(f1_score(y_true, predicted, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(y_true, predicted, average="micro", zero_division=0)),
        "f1_samples": float(f1_score(y_true, predicted, average="samples", zero_division=0)),
        "precision_macro": float(p),
        "recall_macro": float(r),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "hamming_loss": float(hamming_loss(y_true, predicted)),
        "roc_auc_macro": float(roc_auc_score(*ranked, average="macro")) if both else float("nan"),
        "average_precision_macro": float(average_precision_score(*ranked, average="macro")) if both else float("nan"),
        "log_loss": binary_log_loss(y_true, probs),
    }


def multilabel_report(
    y_true: np.ndarray, probs: np.ndarray, predicted: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    """multilabel_metrics plus each label's precision, recall, F1 and support."""
    p, r, f1, support = precision_recall_fscore_support(y_true, predicted, average=None, zero_division=0)
    per_class = {
        name: {"precision": float(p[j]), "recall": float(r[j]), "f1-score": float(f1[j]), "support": int(support[j])}
        for j, name in enumerate(names)
    }
    return multilabel_metrics(y_true, probs, predicted) | {"n": int(len(y_true)), "per_class": per_class}


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, Pearson and Spearman correlation, R² of predicted scores (correlations are NaN when either
    side is constant: no ranking to compare)."""
    constant = np.ptp(y_true) == 0 or np.ptp(predicted) == 0
    return {
        "pearson": float("nan") if constant else float(pearsonr(y_true, predicted).statistic),
        "spearman": float("nan") if constant else float(spearmanr(y_true, predicted).statistic),
        "rmse": float(root_mean_squared_error(y_true, predicted)),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)),
    }


def quadratic_kappa(y_true: np.ndarray, grades: np.ndarray) -> float:
    """Quadratic weighted kappa of whole-number grades (the essay-scoring metric)."""
    return float(cohen_kappa_score(np.rint(y_true).astype(int), np.asarray(grades).astype(int), weights="quadratic"))
