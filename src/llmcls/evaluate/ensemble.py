"""The ensemble stage's logic: a weighted average of the LLM's and the baseline's outputs (class or label
probabilities, or scores).

The LLM's weight is a param, or fitted on the validation split (the weight with the lowest validation log
loss, binary log loss for label sets, squared error for scores, on a 0.05 grid); test rows never choose it.
The blend's own thresholds or cut-points are then fitted on validation, as each model's were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, mean_squared_error

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SCORED_SPLITS, LabelSet, SplitFolder, targets
from llmcls.core.errors import LlmclsError
from llmcls.evaluate.decisions import fit_decision
from llmcls.evaluate.metrics import binary_log_loss
from llmcls.evaluate.scoring import PROB_PREFIX, is_labelled, score_splits

FIT = "fit"
GRID = np.round(np.linspace(0, 1, 21), 2)


def read_probabilities(path: Path, frame: pd.DataFrame, labels: LabelSet) -> np.ndarray:
    """The output columns of a predictions CSV (probabilities, or a regression's predicted score), in the
    split's row order (matched by id)."""
    table = pd.read_csv(path, dtype={"id": str}).set_index("id")
    ids = frame["id"].astype(str)
    missing = sorted(set(ids) - set(table.index))
    columns = ["predicted"] if labels.task == REGRESSION else [f"{PROB_PREFIX}{name}" for name in labels.names]
    absent = [c for c in columns if c not in table.columns]
    if missing or absent:
        raise LlmclsError(f"{path}: does not match the split: missing ids {missing[:5]}, missing columns {absent}")
    probs = table.loc[ids, columns].to_numpy(dtype=np.float64)
    if labels.task != "single_label":  # label probabilities are independent, scores are not probabilities
        return probs
    # The CSV holds float32 softmax outputs as text: rows sum to 1 only within ~1e-7. Renormalise, so the
    # blend is a distribution and log loss is computed on one.
    return probs / probs.sum(axis=1, keepdims=True)


def blend_loss(task: str, y: np.ndarray, blend: np.ndarray) -> float:
    """What the weight minimises: log loss, mean binary log loss (label sets), squared error (scores)."""
    if task == MULTI_LABEL:
        return binary_log_loss(y, blend)
    if task == REGRESSION:
        return float(mean_squared_error(y, blend[:, 0]))
    return float(log_loss(y, blend, labels=list(range(blend.shape[1]))))


def fit_weight(llm: np.ndarray, baseline: np.ndarray, y: np.ndarray, task: str = "single_label") -> float:
    """The LLM weight on GRID with the lowest loss of the blend on (validation) labels ``y``."""
    losses = [blend_loss(task, y, w * llm + (1 - w) * baseline) for w in GRID]
    return float(GRID[int(np.argmin(losses))])


def run_ensemble(
    llm_dir: Path, baseline_dir: Path, split_dir: Path, llm_weight: float | str, thresholds: str | float = "tuned"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """Blend the two models' val / test predictions: (summary metrics, full report, predictions)."""
    split = SplitFolder(split_dir)
    labels = split.labels
    frames = split.frames()
    llm = {s: read_probabilities(llm_dir / f"{s}.csv", frames[s], labels) for s in SCORED_SPLITS}
    base = {s: read_probabilities(baseline_dir / f"{s}.csv", frames[s], labels) for s in SCORED_SPLITS}
    if llm_weight == FIT:
        val = frames["val"]
        if not is_labelled(val):
            raise LlmclsError("ensemble.llm_weight: 'fit' needs a labelled validation split")
        weight = fit_weight(llm["val"], base["val"], targets(val, labels), labels.task)
    else:
        weight = float(llm_weight)
    blend = {s: weight * llm[s] + (1 - weight) * base[s] for s in SCORED_SPLITS}
    val = frames["val"]
    decision = fit_decision(labels, targets(val, labels), blend["val"], thresholds) if is_labelled(val) else None
    summary, report, predictions = score_splits(frames, blend, labels, decision)
    summary |= {"llm_weight": weight, "fitted": llm_weight == FIT}
    report["llm_weight"] = weight
    return summary, report, predictions
