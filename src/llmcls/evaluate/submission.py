"""The submit stage's logic: a Kaggle-style submission, checked before it is written: one probability per class
(rows summing to 1), one per label (multi-label, as Jigsaw's), or the score (its tuned grade where the scores
are whole numbers, as essay scoring's)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmcls.core.artifacts import REGRESSION, SINGLE_LABEL, LabelSet
from llmcls.core.errors import fail_on
from llmcls.evaluate.scoring import GRADE, PROB_PREFIX

TOLERANCE = 1e-6


def build_submission(predictions: pd.DataFrame, labels: LabelSet, id_column: str) -> pd.DataFrame:
    """``id_column`` then one probability column per class or label, or the score (the grade where there is one)."""
    table = pd.DataFrame({id_column: predictions["id"].to_numpy()})
    if labels.task == REGRESSION:
        table[labels.names[0]] = predictions[GRADE if GRADE in predictions.columns else "predicted"].to_numpy()
        return table
    for name in labels.names:
        table[name] = predictions[f"{PROB_PREFIX}{name}"].to_numpy(dtype=np.float64)
    return table


def check_submission(table: pd.DataFrame, expected_ids: list[str], id_column: str, task: str = SINGLE_LABEL) -> None:
    """Every test id exactly once; every probability in [0, 1], each single-label row summing to 1; every score
    a finite number."""
    problems = []
    ids = table[id_column].astype(str)
    expected = pd.Series(expected_ids, dtype=str)
    if dupes := sorted(set(ids[ids.duplicated()])):
        problems.append(f"ids listed more than once: {dupes[:10]}")
    if missing := sorted(set(expected) - set(ids)):
        problems.append(f"{len(missing)} test ids missing, e.g. {missing[:10]}")
    if extra := sorted(set(ids) - set(expected)):
        problems.append(f"{len(extra)} ids not in the test split, e.g. {extra[:10]}")
    probs = table.drop(columns=[id_column]).to_numpy(dtype=np.float64)
    if task == REGRESSION:
        if not np.isfinite(probs).all():
            problems.append("scores that are NaN or infinite")
    elif np.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        problems.append("probabilities outside [0, 1] or NaN")
    sums = probs.sum(axis=1)
    if task == SINGLE_LABEL and len(sums) and np.abs(sums - 1).max() > TOLERANCE:
        problems.append(f"row probabilities sum to {sums.min():.6f}..{sums.max():.6f}, not 1")
    fail_on(problems, "submission is invalid, nothing written")
