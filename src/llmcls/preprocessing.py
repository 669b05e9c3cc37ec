"""The preprocess stage's logic: raw splits -> canonical (id, fields, label) rows -> prompt token ids.

Every row problem (empty or NaN text, a malformed JSON-list cell, a label outside the label set, duplicate
ids) is collected and reported in one error that names the source file, row number and column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.catalog import DatasetSpec
from llmcls.errors import fail_on
from llmcls.outputs import read_json, staged_dir, write_json
from llmcls.params import PreprocessParams
from llmcls.prompts import PromptEncoder, compose_template

MAX_LISTED = 20  # row problems listed in one error; the count of the rest follows


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


def _raw_label(spec: DatasetSpec, row: pd.Series) -> Any:
    if spec.label_column:
        return row[spec.label_column]
    hot = [c for c in spec.label_onehot if row[c] == 1]
    if len(hot) != 1 or any(row[c] not in (0, 1) for c in spec.label_onehot):
        raise ValueError(f"expected exactly one of {list(spec.label_onehot)} to be 1")
    return hot[0]


def _label_name(spec: DatasetSpec, raw: Any) -> str:
    if not spec.label_names:
        return str(raw)
    for code, name in spec.label_names.items():
        if str(code) == str(raw):
            return name
    raise ValueError(f"label {raw!r} is not in the label set {list(spec.label_names)}")


def has_labels(spec: DatasetSpec, frame: pd.DataFrame) -> bool:
    return all(c in frame.columns for c in (spec.raw_columns[len(spec.fields) :]))


def canonical_rows(spec: DatasetSpec, frame: pd.DataFrame, split: str, origin: str) -> pd.DataFrame:
    """Map a raw split onto columns id, label (None when unlabelled) and one column per text field."""
    labelled = has_labels(spec, frame)
    problems: list[str] = []
    records = []
    for index, row in enumerate(frame.to_dict("records")):
        where = f"{origin} row {index + 1}"
        rid = str(row[spec.id_column]) if spec.id_column else f"{split}-{index}"
        record: dict[str, Any] = {"id": rid}
        for field, column in spec.fields.items():
            cell = row[column]
            if _missing(cell):
                problems.append(f"{where} (id {rid}): column {column!r} is empty (NaN)")
                continue
            if field in spec.json_list_fields:
                try:
                    cell = _join_json_list(cell)
                except ValueError as err:
                    problems.append(f"{where} (id {rid}): column {column!r} is a malformed JSON list: {err}")
                    continue
            record[field] = str(cell)
        if len(record) == len(spec.fields) + 1 and not any(record[f].strip() for f in spec.fields):
            problems.append(f"{where} (id {rid}): empty text in {list(spec.fields.values())}")
        record["label"] = None
        if labelled:
            try:
                raw = _raw_label(spec, pd.Series(row))
                if _missing(raw):
                    raise ValueError(f"label column {spec.label_column!r} is empty")
                record["label"] = _label_name(spec, raw)
            except ValueError as err:
                problems.append(f"{where} (id {rid}): {err}")
        records.append(record)
    table = pd.DataFrame.from_records(records, columns=["id", *spec.fields, "label"])
    duplicated = table["id"][table["id"].duplicated()].unique().tolist()
    if duplicated:
        problems.append(f"{origin}: duplicate ids {duplicated[:10]} in column {spec.id_column!r}")
    extra = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    fail_on(problems[:MAX_LISTED], f"{origin}: {len(problems)} bad row(s)" + extra if problems else "")
    return table


def label_set(spec: DatasetSpec, train: pd.DataFrame) -> LabelSet:
    """Class order: the spec's declared order (renamed codes or one-hot columns), else sorted from the data."""
    seen = set(train["label"])
    if spec.label_names:
        return LabelSet(tuple(n for n in spec.label_names.values() if n in seen))
    if spec.label_onehot:
        return LabelSet(tuple(spec.label_onehot))
    return LabelSet(tuple(sorted(seen)))


def check_labels(table: pd.DataFrame, labels: LabelSet, origin: str) -> None:
    """Every label of ``table`` must be in the label set learned from the train split."""
    bad = table[table["label"].notna() & ~table["label"].isin(labels.names)]
    problems = [
        f"{origin} row {i + 1} (id {r.id}): label {r.label!r} is not in the label set {list(labels.names)}"
        for i, r in zip(bad.index, bad.itertuples(), strict=True)
    ]
    fail_on(problems[:MAX_LISTED], f"{origin}: labels outside the train split's label set")


def swap_permutation(spec: DatasetSpec, labels: LabelSet) -> list[int] | None:
    """For a pairwise dataset: entry i is the class that class i becomes when the two swapped fields trade
    places (A wins <-> B wins, tie stays); None for other datasets."""
    if not spec.swap:
        return None
    first, second = spec.swap["labels"]
    trade = {first: second, second: first}
    return [labels.label2id[trade.get(name, name)] for name in labels.names]


def swapped_fields(table: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """``table`` with the two fields of ``spec.swap`` exchanged (response B shown as A and A as B)."""
    first, second = spec.swap["fields"]
    return table.assign(**{first: table[second], second: table[first]})


def encode_prompts(
    table: pd.DataFrame,
    spec: DatasetSpec,
    labels: LabelSet,
    tokenizer,
    wrapper: str | None,
    max_length: int,
    truncation_side: str,
) -> pd.DataFrame:
    """Add input_ids / length / truncated columns (the prompt, tokenised once for train and evaluate); a
    pairwise dataset also gets input_ids_swapped, its prompts with the two responses traded (for TTA)."""
    shown = [spec.class_labels.get(n, n) for n in labels.names]
    encoder = PromptEncoder(tokenizer, compose_template(wrapper, spec.text, shown), max_length, truncation_side)
    encoded = encoder.encode_batch({f: table[f].tolist() for f in encoder.fields})
    out = table.assign(
        label_id=[labels.label2id.get(x, -1) if x is not None else -1 for x in table["label"]],
        input_ids=[e.input_ids for e in encoded],
        length=[len(e.input_ids) for e in encoded],
        truncated=[e.truncated for e in encoded],
    )
    if spec.swap:
        traded = swapped_fields(table, spec)
        out["input_ids_swapped"] = [
            e.input_ids for e in encoder.encode_batch({f: traded[f].tolist() for f in encoder.fields})
        ]
    return out


def preprocess_dataset(
    spec: DatasetSpec, params: PreprocessParams, raw_dir: Path, tokenizer, out_dir: Path
) -> dict[str, Any]:
    """Canonicalise and tokenise every raw split in ``raw_dir``; write them with labels.json to ``out_dir``."""
    files = read_json(raw_dir / "source.json")["files"]
    tables = {}
    for split in ("train", "test"):
        path = raw_dir / f"{split}.parquet"
        if path.is_file():
            origin = files.get(split, str(path))
            tables[split] = canonical_rows(spec, pd.read_parquet(path), split, origin)
    labels = label_set(spec, tables["train"])
    if "test" in tables:
        check_labels(tables["test"], labels, files.get("test", "test split"))
    wrapper = params.template if params.prompt_wrapping else None
    stats: dict[str, Any] = {"labels": list(labels.names)}
    with staged_dir(out_dir) as tmp:
        for split, table in tables.items():
            encoded = encode_prompts(table, spec, labels, tokenizer, wrapper, params.max_length, params.truncation_side)
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
    return stats
