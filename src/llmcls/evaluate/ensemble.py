"""The ensemble stage's logic: a weighted average of the LLM's and the baseline's class probabilities.

The LLM's weight is a param, or fitted on the validation split (the weight with the lowest validation log
loss on a 0.05 grid); test rows never choose it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from llmcls.core.artifacts import SCORED_SPLITS, LabelSet, SplitFolder
from llmcls.core.errors import LlmclsError
from llmcls.evaluate.scoring import PROB_PREFIX, is_labelled, score_splits

FIT = "fit"
GRID = np.round(np.linspace(0, 1, 21), 2)


def read_probabilities(path: Path, frame: pd.DataFrame, labels: LabelSet) -> np.ndarray:
    """The probability columns of a predictions CSV, in the split's row order (matched by id)."""
    table = pd.read_csv(path, dtype={"id": str}).set_index("id")
    ids = frame["id"].astype(str)
    missing = sorted(set(ids) - set(table.index))
    columns = [f"{PROB_PREFIX}{name}" for name in labels.names]
    absent = [c for c in columns if c not in table.columns]
    if missing or absent:
        raise LlmclsError(f"{path}: does not match the split: missing ids {missing[:5]}, missing columns {absent}")
    probs = table.loc[ids, columns].to_numpy(dtype=np.float64)
    # The CSV holds float32 softmax outputs as text: rows sum to 1 only within ~1e-7. Renormalise, so the
    # blend is a distribution and log loss is computed on one.
    return probs / probs.sum(axis=1, keepdims=True)


def fit_weight(llm: np.ndarray, baseline: np.ndarray, y: np.ndarray) -> float:
    """The LLM weight on GRID with the lowest log loss of the blend on (validation) labels ``y``."""
    classes = list(range(llm.shape[1]))
    losses = [log_loss(y, w * llm + (1 - w) * baseline, labels=classes) for w in GRID]
    return float(GRID[int(np.argmin(losses))])


def run_ensemble(
    llm_dir: Path, baseline_dir: Path, split_dir: Path, llm_weight: float | str
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
        weight = fit_weight(llm["val"], base["val"], val["label_id"].to_numpy())
    else:
        weight = float(llm_weight)
    blend = {s: weight * llm[s] + (1 - weight) * base[s] for s in SCORED_SPLITS}
    summary, report, predictions = score_splits(frames, blend, labels)
    summary |= {"llm_weight": weight, "fitted": llm_weight == FIT}
    report["llm_weight"] = weight
    return summary, report, predictions
