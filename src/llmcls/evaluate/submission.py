"""The submit stage's logic: a Kaggle-style probability submission, checked before it is written."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmcls.core.errors import fail_on
from llmcls.evaluate.scoring import PROB_PREFIX

TOLERANCE = 1e-6


def build_submission(predictions: pd.DataFrame, class_names: list[str], id_column: str) -> pd.DataFrame:
    """``id_column`` then one probability column per class (the dataset's submission format)."""
    table = pd.DataFrame({id_column: predictions["id"].to_numpy()})
    for name in class_names:
        table[name] = predictions[f"{PROB_PREFIX}{name}"].to_numpy(dtype=np.float64)
    return table


def check_submission(table: pd.DataFrame, expected_ids: list[str], id_column: str) -> None:
    """Every test id exactly once, every probability in [0, 1], each row summing to 1."""
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
    if np.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        problems.append("probabilities outside [0, 1] or NaN")
    sums = probs.sum(axis=1)
    if len(sums) and np.abs(sums - 1).max() > TOLERANCE:
        problems.append(f"row probabilities sum to {sums.min():.6f}..{sums.max():.6f}, not 1")
    fail_on(problems, "submission is invalid, nothing written")
