"""Classification metrics shared by validation during training and the evaluate stage (scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)

from llmcls.evaluate.calibration import expected_calibration_error

# Whether a larger value is better, for choosing the best checkpoint.
GREATER_IS_BETTER = {"accuracy": True, "f1_macro": True, "log_loss": False}


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
