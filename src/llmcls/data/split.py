"""The split stage's logic: stratified test (when missing), few-shot sampling, class quotas, validation."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import click
import pandas as pd
from sklearn.model_selection import train_test_split

from llmcls.config.params import SplitParams
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import staged_dir, write_json


def stratified_split(
    frame: pd.DataFrame, size: float | int, seed: int, what: str, singletons: str = "rest"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``size`` rows (fraction or count) with the class mix kept; returns (rest, taken).

    A class with a single row cannot be stratified (real data has them: a 51-class TREC has one); such rows
    go to the ``singletons`` side ("rest" or "taken") and the others are stratified as usual, so a dataset
    without them splits exactly as before. Where too few rows are taken to hold one of every class, the split
    is a plain shuffle (said on stderr)."""
    counts = frame["label"].value_counts()
    alone = frame["label"].isin(counts[counts < 2].index)
    stratifiable, single = frame[~alone], frame[alone]
    # sklearn's own rounding of a fractional test_size (ceil), so data without singletons splits as it did
    n_taken = math.ceil(size * len(frame)) if isinstance(size, float) else size
    n_other = n_taken - (len(single) if singletons == "taken" else 0)
    if not 0 < n_other < len(stratifiable):
        raise LlmclsError(f"{what}: cannot split {len(frame)} rows into {n_taken} and the rest")
    stratify = stratifiable["label"]
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


def make_splits(
    train: pd.DataFrame, test: pd.DataFrame | None, params: SplitParams
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Return train / val / test frames and a record of how they were made."""
    record: dict[str, Any] = {"test_carved": test is None, "seed": params.seed}
    if test is None:
        # The dataset has no test split of its own: carve one first, so it never overlaps training data.
        train, test = stratified_split(train, params.test_fraction, params.seed, "carving the test split")
    pool = apply_quota(train, params.class_quota, params.seed)
    val_size: float | int = params.val_fraction
    if params.train_size is not None:
        # train_size counts the rows trained on; validation is val_fraction of the sampled pool on top.
        pool_size = round(params.train_size / (1 - params.val_fraction))
        if pool_size < len(pool):
            _, pool = stratified_split(
                pool, pool_size, params.seed, f"sampling split.train_size={params.train_size}", singletons="taken"
            )
            val_size = pool_size - params.train_size
    fit, val = stratified_split(pool, val_size, params.seed, "taking the validation split")
    splits = {"train": fit, "val": val, "test": test}
    record["rows"] = {name: len(frame) for name, frame in splits.items()}
    record["class_counts"] = {
        name: {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}
        for name, frame in splits.items()
        if frame["label"].notna().all()
    }
    return splits, record


def split_dataset(processed_dir: Path, params: SplitParams, out_dir: Path) -> dict[str, Any]:
    """Write train / val / test parquet files, labels.json, prompt.json and split.json (what was done) to
    ``out_dir``."""
    train = pd.read_parquet(processed_dir / "train.parquet")
    test_path = processed_dir / "test.parquet"
    test = pd.read_parquet(test_path) if test_path.is_file() else None
    splits, record = make_splits(train, test, params)
    with staged_dir(out_dir) as tmp:
        for name, frame in splits.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        for carried in ("labels.json", "prompt.json"):  # the label set and the prompt travel with the data
            shutil.copy2(processed_dir / carried, tmp / carried)
        write_json(tmp / "split.json", record)
    return record
