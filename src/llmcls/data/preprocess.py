"""The preprocess stage's logic: raw splits -> canonical rows (data/rows.py) -> prompt token ids (data/prompt.py),
written with the label set and the prompt record."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.config.catalog import DatasetSpec
from llmcls.config.params import PreprocessParams
from llmcls.core.artifacts import LABELS, PROMPT, REGRESSION
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import Transaction, json_text, read_json, write_json
from llmcls.data.prompt import class_list_fits, encode_table, prompt_encoder, prompt_record, shown_class_names
from llmcls.data.rows import BadRow, canonical_rows, label_set, swap_permutation, with_label_ids


def preprocess_dataset(
    spec: DatasetSpec,
    params: PreprocessParams,
    raw_dir: Path,
    tokenizer,
    out_dir: Path,
    bad_rows: Path | None = None,
) -> tuple[dict[str, Any], list[BadRow]]:
    """Canonicalise and tokenise every raw split in ``raw_dir``; write them with labels.json and prompt.json
    to ``out_dir``, and the report of dropped rows to ``bad_rows`` (one set: both or neither replaced).
    Returns the stats and the rows dropped under ``bad_rows: skip``."""
    source = read_json(raw_dir / "source.json")
    files = source["files"]
    if "label_names" in source:  # a label-names file, read by fetch (which depends on it)
        # Line i names label i: keep the file's order (JSON stores the keys sorted as text: "10" before "2").
        names = dict(sorted(source["label_names"].items(), key=lambda item: int(item[0])))
        spec = dataclasses.replace(spec, label_names=names)
    skipped: list[BadRow] | None = [] if params.bad_rows == "skip" else None
    tables = {
        "train": canonical_rows(spec, pd.read_parquet(raw_dir / "train.parquet"), "train", files["train"], skipped)
    }
    if tables["train"].empty:
        raise LlmclsError(f"{files['train']}: no rows left after skipping {len(skipped or [])} bad row(s)")
    labels = label_set(spec, tables["train"])
    if labels.task == REGRESSION and labels.score_range[0] == labels.score_range[1]:
        raise LlmclsError(f"{files['train']}: every score is {labels.score_range[0]}: there is nothing to learn")
    if labels.task != REGRESSION and len(labels.names) < 2:
        raise LlmclsError(f"{files['train']}: one class only ({list(labels.names)}): a classifier needs two or more")
    if (raw_dir / "test.parquet").is_file():
        test = pd.read_parquet(raw_dir / "test.parquet")
        tables["test"] = canonical_rows(spec, test, "test", files.get("test", "test split"), skipped, labels)
    wrapper = params.template if params.prompt_wrapping else None
    listed = class_list_fits(tokenizer, shown_class_names(spec, labels), params.class_labels_max_tokens)
    record = prompt_record(
        spec, labels, wrapper, params.max_length, params.truncation_side, params.min_text_tokens, listed
    )
    encoder = prompt_encoder(record, tokenizer)
    stats: dict[str, Any] = {
        "task": labels.task,
        "labels": list(labels.names),
        "skipped_rows": len(skipped or []),
        "class_labels_listed": listed,
        "template_tokens": encoder.fixed,
        "max_prompt_tokens": encoder.max_length,
    }
    with Transaction("preprocess") as out:
        tmp = out.folder(out_dir)
        write_json(tmp / PROMPT, record)
        for split, table in tables.items():
            encoded = with_label_ids(encode_table(table, record, tokenizer), labels)
            encoded.to_parquet(tmp / f"{split}.parquet", index=False)
            stats[split] = {
                "rows": len(encoded),
                "mean_tokens": float(encoded["length"].mean()),
                "max_tokens": int(encoded["length"].max()),
                "truncated_fraction": float(encoded["truncated"].mean()),
            }
        permutation = swap_permutation(spec, labels)
        write_json(tmp / LABELS, labels.to_json() | ({"swap_permutation": permutation} if permutation else {}))
        write_json(tmp / "stats.json", stats)
        if bad_rows is not None:
            out.file(bad_rows).write_text(json_text(bad_rows_report(skipped or [], params.bad_rows)), encoding="utf-8")
    return stats, skipped or []


def bad_rows_report(skipped: list[BadRow], policy: str) -> dict[str, Any]:
    """What preprocess.bad_rows dropped, per file: the count and every row (file, row, id, problem)."""
    counts: dict[str, int] = {}
    for bad in skipped:
        counts[bad.origin] = counts.get(bad.origin, 0) + 1
    return {
        "policy": policy,
        "skipped": len(skipped),
        "per_file": counts,
        "rows": [dataclasses.asdict(b) for b in skipped],
    }
