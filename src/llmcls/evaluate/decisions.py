"""Turning a model's outputs into decisions, with what is tuned for them on the validation split: per-label
thresholds of a multi-label model, and the cut-points that round an integer-scored regression into grades.

Both are fitted on validation rows only, stored with the model (llmcls.json "decision") or the baseline's and
ensemble's own reports, and applied the same way by evaluate, predict and export. Test rows never tune them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, LabelSet

THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)  # the candidates each label's threshold is chosen from
CUT_STEPS = 101  # candidate positions of one cut-point between its neighbours, per coordinate pass
CUT_PASSES = 3  # coordinate passes over the cut-points (later passes rarely move one by more than a step)


def label_f1_by_threshold(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """F1 of one label at every THRESHOLD_GRID value (rows: thresholds)."""
    predicted = probs[None, :] >= THRESHOLD_GRID[:, None]
    tp = (predicted & (y[None, :] == 1)).sum(axis=1)
    fp = (predicted & (y[None, :] == 0)).sum(axis=1)
    fn = (~predicted & (y[None, :] == 1)).sum(axis=1)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray) -> list[float]:
    """Per label, the grid threshold with the best F1 on these rows (the smallest of equal ones). Macro F1 is
    the mean of the labels' F1s, each moved by its own threshold only, so this maximises macro F1. A label
    without positive rows here has no F1 to tune: it keeps 0.5."""
    thresholds = []
    for j in range(y_true.shape[1]):
        if y_true[:, j].sum() == 0:
            thresholds.append(0.5)
            continue
        thresholds.append(float(THRESHOLD_GRID[int(np.argmax(label_f1_by_threshold(y_true[:, j], probs[:, j])))]))
    return thresholds


def to_grades(scores: np.ndarray, cut_points: list[float], lowest: int) -> np.ndarray:
    """Scores as grades: ``lowest`` below the first cut-point, one grade more past each further one."""
    return lowest + np.searchsorted(np.asarray(cut_points), np.asarray(scores), side="right")


def rounded_grades(scores: np.ndarray, lowest: int, highest: int) -> np.ndarray:
    """Plain rounding into the grade range: cut-points at every half point."""
    return to_grades(scores, [g + 0.5 for g in range(lowest, highest)], lowest)


def tune_cut_points(y_true: np.ndarray, scores: np.ndarray, lowest: int, highest: int) -> list[float]:
    """Cut-points with the best quadratic weighted kappa on these rows: start from rounding (half points),
    then move one cut-point at a time to its best place between its neighbours (coordinate ascent, the Kaggle
    essay-scoring practice). Deterministic; never worse than rounding on these rows."""
    truth = np.rint(y_true).astype(int)
    cuts = [g + 0.5 for g in range(lowest, highest)]

    def kappa(candidate: list[float]) -> float:
        return float(cohen_kappa_score(truth, to_grades(scores, candidate, lowest), weights="quadratic"))

    best = kappa(cuts)
    for _ in range(CUT_PASSES):
        for i in range(len(cuts)):
            low = cuts[i - 1] if i else lowest - 0.5
            high = cuts[i + 1] if i + 1 < len(cuts) else highest + 0.5
            for position in np.linspace(low, high, CUT_STEPS)[1:-1]:
                trial = cuts[:i] + [float(position)] + cuts[i + 1 :]
                if (score := kappa(trial)) > best + 1e-12:
                    best, cuts = score, trial
    return [round(c, 6) for c in cuts]


def fit_decision(labels: LabelSet, y_val: np.ndarray, outputs: np.ndarray, thresholds: str | float) -> dict | None:
    """What a model's decisions need, fitted on its validation outputs: multi-label thresholds (``thresholds``:
    "tuned", or one number for every label), integer-score cut-points; None for single-label (argmax)."""
    if labels.task == MULTI_LABEL:
        if thresholds == "tuned":
            return {"thresholds": tune_thresholds(y_val, outputs), "tuned_on": "val"}
        return {"thresholds": [float(thresholds)] * len(labels.names), "tuned_on": None}
    if labels.task == REGRESSION and labels.integer_scores:
        lowest, highest = (int(round(s)) for s in labels.score_range)  # the training scores' grades
        scores = outputs[:, 0]
        return {"grades": [lowest, highest], "cut_points": tune_cut_points(y_val, scores, lowest, highest)}
    return None


def decide(labels: LabelSet, outputs: np.ndarray, decision: dict[str, Any] | None) -> np.ndarray:
    """The decisions of outputs: class ids (argmax), a 0/1 label matrix (thresholds), scores or grades."""
    if labels.task == MULTI_LABEL:
        return (outputs >= np.asarray(decision["thresholds"])[None, :]).astype(int)
    if labels.task == REGRESSION:
        if decision and "cut_points" in decision:
            return to_grades(outputs[:, 0], decision["cut_points"], decision["grades"][0])
        return outputs[:, 0]
    return outputs.argmax(axis=1)


def decided_labels(labels: LabelSet, chosen: np.ndarray) -> list:
    """decide()'s classification decisions by name: a class name per row, or a multi-label row's label names."""
    if labels.task == MULTI_LABEL:
        return [[n for n, on in zip(labels.names, row, strict=True) if on] for row in chosen]
    return [labels.names[i] for i in chosen]
