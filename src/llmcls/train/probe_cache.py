"""The linear probe's features as a stage output: the frozen base's last-token states of the train rows, computed
once per base, split and precision, and read by every train run that shares them.

The probe's forward pass over every train row is the costliest part of a short run after the training loop
itself (7.5 of 53 minutes of the default run on a 2-core AVX2 host), and it does not depend on the seed, the
learning rate or the adapter. As the `probe` stage's output, DVC keys it on what it does depend on (the split,
the base model, the precision and base settings, evaluate.batch_size): a seed sweep, tune trials or a LoRA rank
change re-run train and read the same features, and every process of a multi-process run reads them instead of
each running the pass. A train run without the folder, or with one made for other rows or another precision,
computes them itself, as before, and says why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmcls.config.params import Params
from llmcls.core.artifacts import SplitFolder
from llmcls.core.devices import enable_fast_matmul, process_state, resolve_precision
from llmcls.core.outputs import read_json, staged_dir, write_json
from llmcls.core.progress import phase
from llmcls.model.base import load_tokenizer
from llmcls.model.build import base_classifier, frozen_base_dtype, quantization_config
from llmcls.model.heads import head_attribute
from llmcls.train.head_init import pooled_features

FEATURES, RECORD = "features.safetensors", "probe.json"


def probe_skipped(params: Params) -> str | None:
    """Why a run of these params starts its head without a probe (None: it fits one)."""
    if params.train.objective != "head":
        return f"train.objective is {params.train.objective}: no classification head"
    if params.train.head_init != "linear_probe":
        return f"train.head_init is {params.train.head_init}"
    if params.model.head != "linear":
        return f"model.head is {params.model.head}: only a linear head starts from a probe"
    return None


def rows_digest(sequences: Sequence[Sequence[int]]) -> str:
    """Which rows, in which order: features are one row each, read back in the train split's order."""
    digest = hashlib.sha256()
    for sequence in sequences:
        digest.update(json.dumps([int(token) for token in sequence]).encode() + b"\n")
    return digest.hexdigest()


def compute_probe_features(params: Params, split_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The probe stage: the train rows' features as train's warm start would compute them (the same classifier,
    dtype, precision and batches), written to ``out_dir`` with a record; a run that fits no probe gets a record
    saying why. Returns the record."""
    if why := probe_skipped(params):
        record: dict[str, Any] = {"skipped": why}
        with staged_dir(out_dir, "probe") as tmp:
            write_json(tmp / RECORD, record)
        return record
    from safetensors.numpy import save_file

    enable_fast_matmul()
    t, trust = params.train, params.model.trust_remote_code
    split = SplitFolder(split_dir)
    sequences = split.frame("train")["input_ids"].tolist()
    tokenizer = load_tokenizer(base_dir, trust)
    precision = resolve_precision(t.precision)
    with phase("load"):
        dtype = frozen_base_dtype(t)
        model = base_classifier(
            base_dir, split.labels, tokenizer.pad_token_id, params.model.to_dict(), quantization_config(t), dtype, trust
        )
        if getattr(model, "hf_quantizer", None) is None:
            model.to(process_state().device)
    model.eval()
    with phase("probe"):
        features = pooled_features(
            model,
            getattr(model, head_attribute(model)),
            sequences,
            tokenizer.pad_token_id,
            params.evaluate.batch_size,
            precision,
        )
    record = {
        "rows": len(sequences),
        "hidden": int(features.shape[1]),
        "precision": precision,
        "rows_sha256": rows_digest(sequences),
    }
    with staged_dir(out_dir, "probe") as tmp:
        save_file({"features": np.ascontiguousarray(features, dtype=np.float32)}, str(tmp / FEATURES))
        write_json(tmp / RECORD, record)
    return record


def cached_features(
    probe_dir: Path | None, sequences: Sequence[Sequence[int]], precision: str
) -> tuple[np.ndarray | None, str]:
    """The features the probe stage wrote for exactly these rows in this precision, or None, with where they came
    from or why they are computed here."""
    if probe_dir is None:
        return None, "computed here (no probe folder given)"
    try:
        record = read_json(probe_dir / RECORD)
    except (OSError, ValueError):
        return None, f"computed here ({probe_dir / RECORD} is missing or unreadable)"
    if "skipped" in record:
        return None, f"computed here ({probe_dir} has none: {record['skipped']})"
    if record.get("precision") != precision:
        return None, f"computed here ({probe_dir} holds {record.get('precision')} features, this run is {precision})"
    if record.get("rows_sha256") != rows_digest(sequences):
        return None, f"computed here ({probe_dir} was made for other train rows)"
    from safetensors.numpy import load_file

    features = load_file(str(probe_dir / FEATURES))["features"]
    if features.shape[0] != len(sequences):
        return None, f"computed here ({probe_dir / FEATURES} holds {features.shape[0]} rows, not {len(sequences)})"
    return features, f"read from {probe_dir} (computed once for this base, split and precision)"
