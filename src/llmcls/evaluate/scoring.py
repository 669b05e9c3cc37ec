"""Scoring class probabilities and writing them: what the evaluate, baseline and ensemble stages share.

Torch-free on purpose, so the classical stages start in a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmcls.core.artifacts import SCORED_SPLITS, LabelSet
from llmcls.core.outputs import write_csv, write_json
from llmcls.evaluate.metrics import full_report

PROB_PREFIX = "prob_"


def prediction_table(frame: pd.DataFrame, probs, labels: LabelSet) -> pd.DataFrame:
    """One row per example: id, true label (empty when unlabelled), predicted label, one probability per class."""
    table = pd.DataFrame({"id": frame["id"].to_numpy(), "label": frame["label"].to_numpy()})
    table["predicted"] = [labels.names[i] for i in probs.argmax(axis=1)]
    for i, name in enumerate(labels.names):
        table[f"{PROB_PREFIX}{name}"] = probs[:, i]
    return table


def is_labelled(frame: pd.DataFrame) -> bool:
    """Whether a split has rows and every row has a label (a Kaggle test split has none)."""
    return bool(len(frame)) and bool(frame["label_id"].ge(0).all())


def score_split(
    frame: pd.DataFrame, probs: np.ndarray, labels: LabelSet
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(summary, full report) of one split's probabilities; the metrics are left out for unlabelled rows."""
    summary: dict[str, Any] = {"n": len(frame)}
    if not is_labelled(frame):
        return summary, None
    full = full_report(frame["label_id"].to_numpy(), probs, labels.names)
    summary |= {k: v for k, v in full.items() if isinstance(v, float)}
    summary["f1_per_class"] = {name: full["per_class"][name]["f1-score"] for name in labels.names}
    return summary, full


def score_splits(
    frames: dict[str, pd.DataFrame], probs: dict[str, np.ndarray], labels: LabelSet
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """(summary metrics, full report, predictions) of every split's probabilities, as the stages write them."""
    summary: dict[str, Any] = {}
    report: dict[str, Any] = {"labels": list(labels.names)}
    predictions = {}
    for split, frame in frames.items():
        predictions[split] = prediction_table(frame, probs[split], labels)
        summary[split], full = score_split(frame, probs[split], labels)
        if full is not None:
            report[split] = full
    return summary, report, predictions


def write_evaluation(
    summary: dict[str, Any],
    report: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    metrics_path: Path,
    report_path: Path,
    predictions_dir: Path,
) -> None:
    """Write the per-example predictions, the full report and the summary metrics (the file DVC compares)."""
    for split, table in tables.items():
        write_csv(predictions_dir / f"{split}.csv", table)
    write_json(report_path, report)
    write_json(metrics_path, summary)


def shown_metrics(summary: dict[str, Any]) -> str:
    """One line per split of the headline numbers, for a stage's log."""
    return "\n".join(
        f"{split}: " + str({k: round(v, 4) for k, v in summary[split].items() if isinstance(v, float)})
        for split in SCORED_SPLITS
        if split in summary
    )
