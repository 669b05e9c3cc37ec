"""Seed ensembles: one configuration's test probabilities averaged over the seeds it ran, and scored.

A sweep over seeds 0/42/123 already trains three models that differ only in their seed; the mean of their
class probabilities is an ensemble that costs no training beyond those runs. `llmcls report` lists it beside
each configuration's mean and writes the averaged predictions in the evaluate stage's format (id, label,
predicted, prob_<class>).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmcls.evaluate.metrics import summary_metrics
from llmcls.evaluate.scoring import PROB_PREFIX
from llmcls.experiments.aggregate import Group
from llmcls.experiments.runs import Run

# The evaluate stage's test predictions (git-tracked): id, label, predicted, one prob_<class> column per class.
PREDICTIONS = "metrics/predictions/test.csv"
MIN_SEEDS = 2


@dataclass(frozen=True)
class SeedEnsemble:
    """A group's seeds averaged: their predictions, and the metrics when the test split is labelled."""

    group: Group
    predictions: pd.DataFrame
    metrics: dict[str, float] | None  # None: the test split has no labels (a Kaggle test set)
    train_seconds: float | None  # the seeds' train time, summed: what the ensemble cost


def read_predictions(text: str, source: str) -> pd.DataFrame:
    """A predictions CSV as text; ids and labels stay strings (an unlabelled row has an empty label)."""
    table = pd.read_csv(io.StringIO(text), dtype={"id": str, "label": str, "predicted": str}, keep_default_na=False)
    if "id" not in table.columns or not any(c.startswith(PROB_PREFIX) for c in table.columns):
        raise ValueError(f"{source}: not a predictions table (needs id and {PROB_PREFIX}<class> columns)")
    return table


def average(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The mean class probabilities of prediction tables over the same rows and classes, in the first table's
    row order, with the predicted class recomputed. Raises ValueError when the tables do not match."""
    first = tables[0]
    columns = [c for c in first.columns if c.startswith(PROB_PREFIX)]
    ids = first["id"]
    if ids.duplicated().any():
        raise ValueError("duplicate ids in a predictions table")
    probs = []
    for i, table in enumerate(tables):
        if [c for c in table.columns if c.startswith(PROB_PREFIX)] != columns:
            raise ValueError(f"seed {i + 1} scores other classes: {columns} vs {list(table.columns)}")
        if len(table) != len(first) or set(table["id"]) != set(ids):
            raise ValueError(f"seed {i + 1} predicts other rows than seed 1 (a different split?)")
        p = table.set_index("id").loc[ids, columns].to_numpy(dtype=np.float64)
        probs.append(p / p.sum(axis=1, keepdims=True))  # float32 text sums to 1 only within ~1e-7
    mean = np.mean(probs, axis=0)
    names = [c[len(PROB_PREFIX) :] for c in columns]
    out = pd.DataFrame({"id": ids.to_numpy(), "label": first["label"].to_numpy()})
    out["predicted"] = [names[i] for i in mean.argmax(axis=1)]
    for j, column in enumerate(columns):
        out[column] = mean[:, j]
    return out


def labelled_probabilities(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(probabilities, label ids) of a predictions table; None when any row has no (known) label."""
    names = [c[len(PROB_PREFIX) :] for c in table.columns if c.startswith(PROB_PREFIX)]
    index = {name: i for i, name in enumerate(names)}
    if not len(table) or not table["label"].isin(index).all():
        return None
    return table[[PROB_PREFIX + n for n in names]].to_numpy(dtype=np.float64), table["label"].map(index).to_numpy()


def score(table: pd.DataFrame) -> dict[str, float] | None:
    """Accuracy, macro F1, log loss... of averaged predictions; None when any row has no (known) label."""
    labelled = labelled_probabilities(table)
    if labelled is None:
        return None
    probs, label_ids = labelled
    return summary_metrics(label_ids, probs) | {"n": int(len(table))}


def seed_ensemble(group: Group, read_file: Callable[[Run, str], str | None]) -> SeedEnsemble | str | None:
    """The seed ensemble of an LLM group with two or more seeds; a reason (str) when its predictions cannot be
    averaged; None when there is nothing to average (another system, or one seed)."""
    if group.system != "llm" or len(group.entries) < MIN_SEEDS:
        return None
    if group.metric() != "accuracy":  # a multi-label or score task (aggregate.task_metric)
        return (
            "seed averaging covers single-label runs: label probabilities and scores need their thresholds or "
            "cut-points tuned again on validation, which test predictions do not carry"
        )
    chosen = sorted(group.entries, key=lambda e: str(e.seed))
    tables = []
    for entry in chosen:
        text = read_file(entry.run, PREDICTIONS)
        if text is None:
            return f"no {PREDICTIONS} in `{entry.run.label}`"
        try:
            tables.append(read_predictions(text, f"{entry.run.label}:{PREDICTIONS}"))
        except (ValueError, pd.errors.ParserError) as err:
            return str(err)
    try:
        averaged = average(tables)
    except ValueError as err:
        return str(err)
    seconds = [e.run.train_seconds for e in chosen]
    total = float(sum(seconds)) if all(seconds) else None
    return SeedEnsemble(group, averaged, score(averaged), total)
