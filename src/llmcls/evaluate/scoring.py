"""Scoring a model's outputs and writing them: what the evaluate, baseline and ensemble stages share. Outputs
are class probabilities (single-label), label probabilities (multi-label) or scores (regression, one column);
a decision (decisions.py) turns them into predicted labels, sets or grades.

Torch-free on purpose, so the classical stages start in a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SCORED_SPLITS, LabelSet, is_labelled, targets
from llmcls.core.outputs import Transaction, json_text
from llmcls.evaluate.decisions import decide, decided_labels, rounded_grades
from llmcls.evaluate.metrics import full_report, multilabel_report, quadratic_kappa, regression_metrics

PROB_PREFIX = "prob_"
LABEL_JOIN = "; "  # between the labels of a multi-label row in prediction tables
GRADE = "grade"  # the prediction column of an integer score's tuned grade


def label_text(value: Any, labels: LabelSet) -> Any:
    """A label as a table cell: a multi-label row's names joined in label order, other labels as they are."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return LABEL_JOIN.join(n for n in labels.names if n in set(value))
    return value


def prediction_table(
    frame: pd.DataFrame, outputs: np.ndarray, labels: LabelSet, decision: dict[str, Any] | None = None
) -> pd.DataFrame:
    """One row per example: id, true label (empty when unlabelled), the prediction, and the outputs: one
    probability per class or label, or the score (and its grade where cut-points exist)."""
    table = pd.DataFrame({"id": frame["id"].to_numpy(), "label": [label_text(x, labels) for x in frame["label"]]})
    if labels.task == REGRESSION:
        table["predicted"] = outputs[:, 0]
        if decision and "cut_points" in decision:
            table[GRADE] = decide(labels, outputs, decision)
        return table
    table["predicted"] = [label_text(x, labels) for x in decided_labels(labels, decide(labels, outputs, decision))]
    for i, name in enumerate(labels.names):
        table[f"{PROB_PREFIX}{name}"] = outputs[:, i]
    return table


def score_report(y: np.ndarray, outputs: np.ndarray, labels: LabelSet, decision: dict[str, Any] | None) -> dict:
    """The full report of one labelled split's outputs for its task."""
    if labels.task == MULTI_LABEL:
        return multilabel_report(y, outputs, decide(labels, outputs, decision), labels.names)
    if labels.task == REGRESSION:
        report: dict[str, Any] = regression_metrics(y, outputs[:, 0]) | {"n": int(len(y))}
        if decision and "cut_points" in decision:
            # QWK of the tuned cut-points beside plain rounding, the baseline the tuning must beat
            report["qwk"] = quadratic_kappa(y, decide(labels, outputs, decision))
            report["qwk_rounded"] = quadratic_kappa(y, rounded_grades(outputs[:, 0], *decision["grades"]))
        return report
    return full_report(y, outputs, labels.names)


def score_split(
    frame: pd.DataFrame, outputs: np.ndarray, labels: LabelSet, decision: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(summary, full report) of one split's outputs; the metrics are left out for unlabelled rows."""
    summary: dict[str, Any] = {"n": len(frame)}
    if not is_labelled(frame):
        return summary, None
    full = score_report(targets(frame, labels), outputs, labels, decision)
    summary |= {k: v for k, v in full.items() if isinstance(v, float)}
    if "per_class" in full:
        summary["f1_per_class"] = {name: full["per_class"][name]["f1-score"] for name in labels.names}
    return summary, full


def score_splits(
    frames: dict[str, pd.DataFrame],
    outputs: dict[str, np.ndarray],
    labels: LabelSet,
    decision: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """(summary metrics, full report, predictions) of every split's outputs, as the stages write them."""
    summary: dict[str, Any] = {}
    report: dict[str, Any] = {"task": labels.task, "labels": list(labels.names)}
    if decision is not None:
        report["decision"] = decision
    predictions = {}
    for split, frame in frames.items():
        predictions[split] = prediction_table(frame, outputs[split], labels, decision)
        summary[split], full = score_split(frame, outputs[split], labels, decision)
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
    """Write the per-example predictions, the full report and the summary metrics (the file DVC compares), as
    one set: a kill leaves the old set or the new one, never a mix. The predictions folder is staged whole (a
    declared output even with no tables to hold), so no temporary ever lands inside it."""
    with Transaction("scores") as out:
        folder = out.folder(predictions_dir)
        for split, table in tables.items():
            table.to_csv(folder / f"{split}.csv", index=False)
        out.file(report_path).write_text(json_text(report), encoding="utf-8")
        out.file(metrics_path).write_text(json_text(summary), encoding="utf-8")


def shown_metrics(summary: dict[str, Any]) -> str:
    """One line per split of the headline numbers, for a stage's log."""
    return "\n".join(
        f"{split}: " + str({k: round(v, 4) for k, v in summary[split].items() if isinstance(v, float)})
        for split in SCORED_SPLITS
        if split in summary
    )
