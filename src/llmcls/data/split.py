"""The split stage's logic: stratified test (when missing), few-shot sampling, class quotas, validation.

Stratified by task: single-label rows by their class; multi-label rows by iterative stratification (Sechidis
et al. 2011, the iterative-stratification package), which keeps every label's share, rare ones included;
scores by their quantile bin, so each split spans the whole range."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from llmcls.config.params import SplitParams
from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, LabelSet, targets
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import staged_dir, write_json

SCORE_BINS = 5  # quantile bins a regression's rows are stratified by


def stratified_split(
    frame: pd.DataFrame, size: float | int, seed: int, what: str, singletons: str = "rest", key: str = "label"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``size`` rows (fraction or count) with the class mix kept; returns (rest, taken).

    A class with a single row cannot be stratified (real data has them: a 51-class TREC has one); such rows
    go to the ``singletons`` side ("rest" or "taken") and the others are stratified as usual, so a dataset
    without them splits exactly as before. Where too few rows are taken to hold one of every class, the split
    is a plain shuffle (said on stderr). ``key`` is the column stratified on."""
    counts = frame[key].value_counts()
    alone = frame[key].isin(counts[counts < 2].index)
    stratifiable, single = frame[~alone], frame[alone]
    # sklearn's own rounding of a fractional test_size (ceil), so data without singletons splits as it did
    n_taken = math.ceil(size * len(frame)) if isinstance(size, float) else size
    n_other = n_taken - (len(single) if singletons == "taken" else 0)
    if not 0 < n_other < len(stratifiable):
        raise LlmclsError(f"{what}: cannot split {len(frame)} rows into {n_taken} and the rest: too few rows")
    stratify = stratifiable[key]
    if stratify.nunique() > min(n_other, len(stratifiable) - n_other):
        click.echo(
            f"llmcls: {what}: {n_taken} of {len(frame)} rows cannot hold one of each of {len(counts)} classes; "
            "split unstratified",
            err=True,
        )
        stratify = None
    try:
        rest, taken = train_test_split(
            stratifiable, test_size=size if single.empty else n_other, random_state=seed, stratify=stratify
        )
    except ValueError as err:
        raise LlmclsError(
            f"{what}: cannot stratify {len(frame)} rows with class counts {counts.to_dict()}: {err}"
        ) from err
    if not single.empty and singletons == "taken":
        taken = pd.concat([taken, single])
    elif not single.empty:
        rest = pd.concat([rest, single])
    return rest.sort_index(), taken.sort_index()


def multilabel_split(
    frame: pd.DataFrame, size: float | int, seed: int, what: str, labels: LabelSet
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``size`` rows (fraction or count) with every label's share kept (iterative stratification);
    returns (rest, taken)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n_taken = math.ceil(size * len(frame)) if isinstance(size, float) else size
    if not 0 < n_taken < len(frame):
        raise LlmclsError(f"{what}: cannot split {len(frame)} rows into {n_taken} and the rest: too few rows")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_taken, random_state=seed)
    rest, taken = next(splitter.split(np.zeros(len(frame)), targets(frame, labels)))
    # The algorithm hands out rows label by label and lands near the size asked, not on it (4,665 of 4,706
    # on GoEmotions): rows chosen at random (seeded) move across to make the count exact.
    rng = np.random.default_rng(seed)
    if (short := n_taken - len(taken)) > 0:
        moved = rng.choice(rest, short, replace=False)
        rest, taken = np.setdiff1d(rest, moved), np.concatenate([taken, moved])
    elif short < 0:
        moved = rng.choice(taken, -short, replace=False)
        rest, taken = np.concatenate([rest, moved]), np.setdiff1d(taken, moved)
    return frame.iloc[np.sort(rest)], frame.iloc[np.sort(taken)]


def split_off(
    frame: pd.DataFrame, size: float | int, seed: int, what: str, labels: LabelSet, singletons: str = "rest"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``size`` rows stratified as the task asks (module docstring); returns (rest, taken)."""
    if labels.task == MULTI_LABEL:
        return multilabel_split(frame, size, seed, what, labels)
    if labels.task == REGRESSION:
        # Bins of the score's rank: ties (whole-number grades) still fill every bin.
        bins = min(SCORE_BINS, max(1, len(frame) // 2))
        strata = pd.qcut(frame["label"].rank(method="first"), bins, labels=False)
        rest, taken = stratified_split(frame.assign(_stratum=strata), size, seed, what, singletons, "_stratum")
        return rest.drop(columns="_stratum"), taken.drop(columns="_stratum")
    return stratified_split(frame, size, seed, what, singletons)


def apply_quota(frame: pd.DataFrame, quota: int | dict[str, int] | None, seed: int) -> pd.DataFrame:
    """Keep at most ``quota`` rows per class (an int for all, or per label), sampled with ``seed``."""
    if quota is None:
        return frame
    if isinstance(quota, dict):
        unknown = sorted(set(quota) - set(frame["label"]))
        if unknown:
            raise LlmclsError(
                f"split.class_quota: labels {unknown} are not in the data ({sorted(set(frame['label']))})"
            )
    parts = []
    for label, group in frame.groupby("label", sort=True):
        cap = quota.get(label, len(group)) if isinstance(quota, dict) else quota
        parts.append(group.sample(n=min(cap, len(group)), random_state=seed))
    return pd.concat(parts).sort_index()


def label_counts(frame: pd.DataFrame, labels: LabelSet) -> dict[str, Any]:
    """Rows per class (a multi-label row counts for each of its labels); a regression's score statistics."""
    if labels.task == REGRESSION:
        scores = frame["label"].astype(float)
        return {
            "mean": float(scores.mean()),
            "std": float(scores.std()),
            "min": float(scores.min()),
            "max": float(scores.max()),
        }
    column = frame["label"].explode() if labels.task == MULTI_LABEL else frame["label"]
    return {str(k): int(v) for k, v in column.value_counts().sort_index().items()}


def make_splits(
    train: pd.DataFrame, test: pd.DataFrame | None, params: SplitParams, labels: LabelSet | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Return train / val / test frames and a record of how they were made (``labels``: the task's label set;
    None: single-label)."""
    labels = labels or LabelSet(())
    record: dict[str, Any] = {"test_carved": test is None, "seed": params.seed}
    if test is None:
        # The dataset has no test split of its own: carve one first, so it never overlaps training data.
        what = f"carving the test split (split.test_fraction={params.test_fraction})"
        train, test = split_off(train, params.test_fraction, params.seed, what, labels)
    if params.class_quota is not None and labels.task != "single_label":
        raise LlmclsError(f"params.yaml split.class_quota: applies to single-label data, not {labels.task}")
    pool = apply_quota(train, params.class_quota, params.seed)
    val_size: float | int = params.val_fraction
    if params.train_size is not None:
        # train_size counts the rows trained on; validation is val_fraction of the sampled pool on top.
        pool_size = round(params.train_size / (1 - params.val_fraction))
        if pool_size < len(pool):
            what = f"sampling split.train_size={params.train_size}"
            _, pool = split_off(pool, pool_size, params.seed, what, labels, singletons="taken")
            val_size = pool_size - params.train_size
    what = f"taking the validation split (split.val_fraction={params.val_fraction})"
    fit, val = split_off(pool, val_size, params.seed, what, labels)
    splits = {"train": fit, "val": val, "test": test}
    record["rows"] = {name: len(frame) for name, frame in splits.items()}
    record["class_counts"] = {
        name: label_counts(frame, labels) for name, frame in splits.items() if frame["label"].notna().all()
    }
    return splits, record


def split_dataset(processed_dir: Path, params: SplitParams, out_dir: Path) -> dict[str, Any]:
    """Write train / val / test parquet files, labels.json, prompt.json and split.json (what was done) to
    ``out_dir``."""
    train = pd.read_parquet(processed_dir / "train.parquet")
    test_path = processed_dir / "test.parquet"
    test = pd.read_parquet(test_path) if test_path.is_file() else None
    splits, record = make_splits(train, test, params, LabelSet.read(processed_dir))
    with staged_dir(out_dir, "split") as tmp:
        for name, frame in splits.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        for carried in ("labels.json", "prompt.json"):  # the label set and the prompt travel with the data
            shutil.copy2(processed_dir / carried, tmp / carried)
        write_json(tmp / "split.json", record)
    return record
