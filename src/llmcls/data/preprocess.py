"""The preprocess stage's logic: raw splits -> canonical (id, fields, label) rows -> prompt token ids.

Every row problem (empty or NaN text, a malformed JSON-list cell, a label outside the label set, duplicate
ids) is collected and reported in one error that names the source file, row number and column.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.config.catalog import DatasetSpec
from llmcls.config.params import PreprocessParams
from llmcls.core.errors import fail_on
from llmcls.core.outputs import read_json, staged_dir, write_json
from llmcls.data.prompt import PromptEncoder, compose_template

MAX_LISTED = 20  # row problems listed in one error; the count of the rest follows
PROMPT = "prompt.json"  # the prompt record (prompt_record), beside the data and every trained model


@dataclass(frozen=True)
class LabelSet:
    """Class names in model order; label2id / id2label derive from it."""

    names: tuple[str, ...]

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def to_json(self) -> dict[str, Any]:
        return {"labels": list(self.names), "label2id": self.label2id, "id2label": self.id2label}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelSet:
        return cls(tuple(data["labels"]))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _join_json_list(cell: Any) -> str:
    """A Kaggle-style JSON list of strings (turns), joined; None turns count as empty."""
    turns = json.loads(cell) if isinstance(cell, str) else None
    if not isinstance(turns, list) or not all(t is None or isinstance(t, str) for t in turns):
        raise ValueError("not a JSON list of strings")
    return "\n\n".join(t for t in turns if t)


def _raw_label(spec: DatasetSpec, row: dict[str, Any]) -> Any:
    # The row as a dict, not a Series: a Series of a NaN text and an int label is all float (label 0 -> 0.0).
    if spec.label_column:
        return row[spec.label_column]
    hot = [c for c in spec.label_onehot if row[c] == 1]
    if len(hot) != 1 or any(row[c] not in (0, 1) for c in spec.label_onehot):
        raise ValueError(f"expected exactly one of {list(spec.label_onehot)} to be 1")
    return hot[0]


def _label_name(spec: DatasetSpec, raw: Any) -> str:
    if spec.label_pattern:
        match = re.search(spec.label_pattern, str(raw))
        if match is None or match.group(1) is None:
            raise ValueError(f"label {raw!r} does not match label_pattern {spec.label_pattern!r}")
        raw = match.group(1)
    if not spec.label_names:
        return str(raw)
    for code, name in spec.label_names.items():
        if str(code) == str(raw):
            return name
    raise ValueError(f"label {raw!r} is not in the label set {list(spec.label_names)}")


def has_labels(spec: DatasetSpec, frame: pd.DataFrame) -> bool:
    return all(c in frame.columns for c in (spec.raw_columns[len(spec.fields) :]))


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be used as it is, and why (the file, the 1-based row, the id)."""

    origin: str
    row: int
    id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.origin} row {self.row} (id {self.id}): {self.problem}"


def _drop_or_fail(table: pd.DataFrame, bad: list[BadRow], origin: str, collect: list[BadRow] | None) -> pd.DataFrame:
    """Without ``collect``: one error listing the bad rows. With it: they join ``collect`` and leave the table."""
    if not bad:
        return table
    if collect is None:
        problems = [str(b) for b in bad]
        extra = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        fail_on(
            problems[:MAX_LISTED],
            f"{origin}: {len(problems)} bad row(s) (preprocess.bad_rows: skip drops them)" + extra,
        )
    collect.extend(bad)
    rows = {b.row - 1 for b in bad}
    return table[[i not in rows for i in range(len(table))]].reset_index(drop=True)


def canonical_rows(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    split: str,
    origin: str,
    skipped: list[BadRow] | None = None,
    labels: LabelSet | None = None,
) -> pd.DataFrame:
    """Map a raw split onto columns id, label (None when unlabelled) and one column per text field.

    Bad rows (empty text, a malformed JSON-list cell, a bad label or one outside ``labels``, the train split's
    label set, a repeated id) raise one error that lists them all, or, given a ``skipped`` list, are dropped
    and appended to it."""
    labelled = has_labels(spec, frame)
    bad: list[BadRow] = []
    records = []
    seen: set[str] = set()
    for index, row in enumerate(frame.to_dict("records")):
        rid = str(row[spec.id_column]) if spec.id_column else f"{split}-{index}"
        problems = [f"duplicate id in column {spec.id_column!r}"] if rid in seen else []
        seen.add(rid)
        record: dict[str, Any] = {"id": rid}
        for field, column in spec.fields.items():
            cell = row[column]
            if _missing(cell):
                problems.append(f"column {column!r} is empty (NaN)")
                continue
            if field in spec.json_list_fields:
                try:
                    cell = _join_json_list(cell)
                except ValueError as err:
                    problems.append(f"column {column!r} is a malformed JSON list: {err}")
                    continue
            record[field] = str(cell)
        if len(record) == len(spec.fields) + 1 and not any(record[f].strip() for f in spec.fields):
            problems.append(f"empty text in {list(spec.fields.values())}")
        record["label"] = None
        if labelled:
            try:
                raw = _raw_label(spec, row)
                if _missing(raw):
                    raise ValueError(f"label column {spec.label_column!r} is empty")
                record["label"] = _label_name(spec, raw)
                if labels is not None and record["label"] not in labels.names:
                    raise ValueError(
                        f"label {record['label']!r} is not in the train split's label set {list(labels.names)}"
                    )
            except ValueError as err:
                problems.append(str(err))
        if problems:
            bad.append(BadRow(origin, index + 1, rid, "; ".join(problems)))
        records.append(record)
    table = pd.DataFrame.from_records(records, columns=["id", *spec.fields, "label"])
    return _drop_or_fail(table, bad, origin, skipped)


def label_set(spec: DatasetSpec, train: pd.DataFrame) -> LabelSet:
    """Class order: the spec's declared order (renamed codes or one-hot columns), else sorted from the data."""
    seen = set(train["label"])
    if spec.label_names:
        return LabelSet(tuple(n for n in spec.label_names.values() if n in seen))
    if spec.label_onehot:
        return LabelSet(tuple(spec.label_onehot))
    return LabelSet(tuple(sorted(seen)))


def swap_permutation(spec: DatasetSpec, labels: LabelSet) -> list[int] | None:
    """For a pairwise dataset: entry i is the class that class i becomes when the two swapped fields trade
    places (A wins <-> B wins, tie stays); None for other datasets."""
    if not spec.swap:
        return None
    first, second = spec.swap["labels"]
    trade = {first: second, second: first}
    return [labels.label2id[trade.get(name, name)] for name in labels.names]


def swapped_fields(table: pd.DataFrame, swap: dict[str, Any]) -> pd.DataFrame:
    """``table`` with the two fields of a spec's ``swap`` exchanged (response B shown as A and A as B)."""
    first, second = swap["fields"]
    return table.assign(**{first: table[second], second: table[first]})


def shown_class_names(spec: DatasetSpec, labels: LabelSet) -> list[str]:
    """The class names as prompts and answers show them (the catalog's readable names where it has them)."""
    return [spec.class_labels.get(n, n) for n in labels.names]


def class_list_fits(tokenizer, texts: list[str], max_tokens: int | None) -> bool:
    """Whether the class names, listed, take at most ``max_tokens`` (None: no limit). A long list between a text and the
    `answer:` cue buries the text for the last-token head and multiplies every row's length: 51-class TREC
    (276 tokens of names, 1,000 rows) measured 0.6226 test accuracy with it and 0.7006 without, in 1/7 of the
    train time."""
    return max_tokens is None or len(tokenizer(", ".join(texts), add_special_tokens=False)["input_ids"]) <= max_tokens


def prompt_record(
    spec: DatasetSpec,
    labels: LabelSet,
    wrapper: str | None,
    max_length: int,
    truncation_side: str,
    min_text_tokens: int = 0,
    list_labels: bool = True,
) -> dict[str, Any]:
    """Everything that turns a raw row into the model's input: the composed template, its truncation, and how
    rows are read. Saved as prompt.json with the data and beside every trained model, so `llmcls predict`
    encodes new texts exactly as training did without params.yaml or the catalog. ``list_labels`` false
    leaves {class_labels} empty (see class_list_fits)."""
    shown = shown_class_names(spec, labels)
    return {
        "template": compose_template(wrapper, spec.text, shown if list_labels else []),
        "class_labels_listed": list_labels,
        "max_length": max_length,
        "min_text_tokens": min_text_tokens,
        "truncation_side": truncation_side,
        "label_texts": shown,
        "reader": {
            "fields": dict(spec.fields),
            "json_list_fields": list(spec.json_list_fields),
            "id_column": spec.id_column,
            "label_column": spec.label_column,
            "label_onehot": list(spec.label_onehot),
            "label_names": {str(k): v for k, v in spec.label_names.items()},
            "label_pattern": spec.label_pattern,
            "swap": dict(spec.swap),
        },
    }


def reader_spec(record: dict[str, Any], name: str = "saved") -> DatasetSpec:
    """The row-reading part of a DatasetSpec, back from a prompt record (what canonical_rows needs)."""
    reader = dict(record["reader"])
    for key in ("json_list_fields", "label_onehot"):
        reader[key] = tuple(reader[key])
    return DatasetSpec(name=name, description="from prompt.json", text=record["template"], **reader)


def prompt_encoder(record: dict[str, Any], tokenizer) -> PromptEncoder:
    """The encoder of a prompt record (a record written before min_text_tokens existed had no floor)."""
    return PromptEncoder(
        tokenizer,
        record["template"],
        record["max_length"],
        record["truncation_side"],
        record.get("min_text_tokens", 0),
    )


def encode_table(table: pd.DataFrame, record: dict[str, Any], tokenizer) -> pd.DataFrame:
    """Add input_ids / length / truncated columns for a prompt record; a pairwise dataset also gets
    input_ids_swapped, its prompts with the two responses traded (for TTA)."""
    encoder = prompt_encoder(record, tokenizer)
    encoded = encoder.encode_batch({f: table[f].tolist() for f in encoder.fields})
    out = table.assign(
        input_ids=[e.input_ids for e in encoded],
        length=[len(e.input_ids) for e in encoded],
        truncated=[e.truncated for e in encoded],
    )
    if swap := record["reader"]["swap"]:
        traded = swapped_fields(table, swap)
        out["input_ids_swapped"] = [
            e.input_ids for e in encoder.encode_batch({f: traded[f].tolist() for f in encoder.fields})
        ]
    return out


def encode_prompts(
    table: pd.DataFrame,
    spec: DatasetSpec,
    labels: LabelSet,
    tokenizer,
    wrapper: str | None,
    max_length: int,
    truncation_side: str,
) -> pd.DataFrame:
    """Add label_id and the prompt's input_ids / length / truncated columns (tokenised once for train and
    evaluate); see encode_table."""
    return with_label_ids(
        encode_table(table, prompt_record(spec, labels, wrapper, max_length, truncation_side), tokenizer), labels
    )


def with_label_ids(encoded: pd.DataFrame, labels: LabelSet) -> pd.DataFrame:
    """``encoded`` with a label_id column after its label (-1 for an unlabelled row)."""
    ids = [labels.label2id.get(x, -1) if x is not None else -1 for x in encoded["label"]]
    out = encoded.copy(deep=False)
    out.insert(list(encoded.columns).index("label") + 1, "label_id", ids)
    return out


def preprocess_dataset(
    spec: DatasetSpec, params: PreprocessParams, raw_dir: Path, tokenizer, out_dir: Path
) -> tuple[dict[str, Any], list[BadRow]]:
    """Canonicalise and tokenise every raw split in ``raw_dir``; write them with labels.json and prompt.json
    to ``out_dir``. Returns the stats and the rows dropped under ``bad_rows: skip``."""
    source = read_json(raw_dir / "source.json")
    files = source["files"]
    if "label_names" in source:  # a custom label-names file, read by fetch (which depends on it)
        spec = dataclasses.replace(spec, label_names=source["label_names"])
    skipped: list[BadRow] | None = [] if params.bad_rows == "skip" else None
    tables = {
        "train": canonical_rows(spec, pd.read_parquet(raw_dir / "train.parquet"), "train", files["train"], skipped)
    }
    labels = label_set(spec, tables["train"])
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
        "labels": list(labels.names),
        "skipped_rows": len(skipped or []),
        "class_labels_listed": listed,
        "template_tokens": encoder.fixed,
        "max_prompt_tokens": encoder.max_length,
    }
    with staged_dir(out_dir) as tmp:
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
        write_json(tmp / "labels.json", labels.to_json() | ({"swap_permutation": permutation} if permutation else {}))
        write_json(tmp / "stats.json", stats)
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
