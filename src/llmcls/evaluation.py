"""The evaluate stage's logic: class probabilities for val and test, metrics, per-example predictions."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.devices import enable_fast_matmul, process_state
from llmcls.inference import predict_proba_parallel
from llmcls.metrics import full_report
from llmcls.modeling import load_classifier
from llmcls.preprocessing import LabelSet

PROB_PREFIX = "prob_"
SPLITS = ("val", "test")


def prediction_table(frame: pd.DataFrame, probs, labels: LabelSet) -> pd.DataFrame:
    """One row per example: id, true label (empty when unlabelled), predicted label, one probability per class."""
    table = pd.DataFrame({"id": frame["id"].to_numpy(), "label": frame["label"].to_numpy()})
    table["predicted"] = [labels.names[i] for i in probs.argmax(axis=1)]
    for i, name in enumerate(labels.names):
        table[f"{PROB_PREFIX}{name}"] = probs[:, i]
    return table


def evaluate_classifier(
    model_dir: Path, base_dir: Path, split_dir: Path, batch_size: int, quantize: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """Return (summary metrics, full report, predictions) for the val and test splits. Under
    `accelerate launch` with several processes, the rows are shared out and every process gets the result."""
    enable_fast_matmul()
    model, labels, meta = load_classifier(model_dir, base_dir, quantize)
    if not quantize:  # a quantised model was placed on its device when loaded
        model.to(process_state().device)
    summary: dict[str, Any] = {}
    report: dict[str, Any] = {"labels": list(labels.names)}
    predictions = {}
    for split in SPLITS:
        frame = pd.read_parquet(split_dir / f"{split}.parquet")
        start = time.perf_counter()
        sequences = frame["input_ids"].tolist()
        probs = predict_proba_parallel(model, sequences, meta["pad_token_id"], batch_size, meta["precision"])
        seconds = time.perf_counter() - start
        predictions[split] = prediction_table(frame, probs, labels)
        split_summary: dict[str, Any] = {"n": len(frame), "samples_per_second": len(frame) / max(seconds, 1e-9)}
        if len(frame) and frame["label_id"].ge(0).all():
            full = full_report(frame["label_id"].to_numpy(), probs, labels.names)
            report[split] = full
            split_summary |= {k: v for k, v in full.items() if isinstance(v, float)}
            split_summary["f1_per_class"] = {name: full["per_class"][name]["f1-score"] for name in labels.names}
        summary[split] = split_summary
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return summary, report, predictions
