"""Canonical rows: a raw table mapped onto (id, one column per text field, label), with every bad row (empty
or NaN text, a malformed JSON-list cell, a label outside the label set, a score that is not a number, a
repeated id) collected and reported in one error that names the source file, row number and column.

A label is a class name (single_label), a list of class names (multi_label: a delimited cell, 0/1 columns,
or label ids named by a file) or a float (regression)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llmcls.config.catalog import DatasetSpec
from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SCORE, LabelSet
from llmcls.core.errors import fail_on

MAX_LISTED = 20  # row problems listed in one error; the count of the rest follows
ANY_SEPARATOR = r"[,;|]"  # between the labels of a multi-label cell when the spec names no separator


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


def _whole(value: Any) -> Any:
    """A float that is a whole number as an int: a code column with an empty cell is read as floats (2.0)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _label_name(spec: DatasetSpec, raw: Any) -> str:
    raw = _whole(raw)
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


def _drop_or_fail(
    table: pd.DataFrame, bad: list[BadRow], origin: str, collect: list[BadRow] | None, skip_with: str
) -> pd.DataFrame:
    """Without ``collect``: one error listing the bad rows (and ``skip_with``, the setting that drops them
    instead). With it: they join ``collect`` and leave the table."""
    if not bad:
        return table
    if collect is None:
        problems = [str(b) for b in bad]
        extra = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        fail_on(
            problems[:MAX_LISTED],
            f"{origin}: {len(problems)} bad row(s) ({skip_with} drops them)" + extra,
        )
    collect.extend(bad)
    rows = {b.row - 1 for b in bad}
    return table[[i not in rows for i in range(len(table))]].reset_index(drop=True)


def row_texts(spec: DatasetSpec, row: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A raw row's text fields as strings (a JSON list of turns joined), and what is wrong with them: a NaN
    cell, a malformed JSON list, or every field empty."""
    texts: dict[str, str] = {}
    problems = []
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
        texts[field] = str(cell)
    if len(texts) == len(spec.fields) and not any(text.strip() for text in texts.values()):
        problems.append(f"empty text in {list(spec.fields.values())}")
    return texts, problems


def _label_list(spec: DatasetSpec, row: dict[str, Any], labels: LabelSet | None) -> list[str]:
    """A multi-label row's class names: the 0/1 columns that are 1, or its label cell split at the separator
    (each part renamed as a single label is)."""
    if spec.label_onehot:
        if any(row[c] not in (0, 1) for c in spec.label_onehot):
            raise ValueError(f"columns {list(spec.label_onehot)} must hold 0 or 1")
        return [c for c in spec.label_onehot if row[c] == 1]
    cell = row[spec.label_column]
    if isinstance(cell, (list, tuple, np.ndarray)):  # JSONL / Parquet hold lists as lists
        parts = [str(x) for x in cell]
    elif _missing(cell):
        raise ValueError(f"label column {spec.label_column!r} is empty")
    elif isinstance(cell, str) and cell.strip().startswith("["):  # a JSON list written into a CSV cell
        try:
            parts = [str(x) for x in json.loads(cell)]
        except (ValueError, TypeError):
            raise ValueError(f"label cell {cell!r} is not a JSON list") from None
    else:
        separator = re.escape(spec.label_separator) if spec.label_separator else ANY_SEPARATOR
        parts = re.split(separator, str(_whole(cell)))
    names = [_label_name(spec, part.strip()) for part in parts if part.strip()]
    if labels is not None and (unknown := [n for n in names if n not in labels.names]):
        raise ValueError(f"labels {unknown} are not in the train split's label set {list(labels.names)}")
    return sorted(set(names), key=names.index)


def _score(spec: DatasetSpec, row: dict[str, Any]) -> float:
    """A regression row's score: a finite number (rounded to a whole one where the spec says so)."""
    raw = row[spec.label_column]
    if _missing(raw):
        raise ValueError(f"label column {spec.label_column!r} is empty")
    if spec.label_pattern:
        raw = _label_name(spec, raw)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"score {raw!r} in column {spec.label_column!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"score {raw!r} in column {spec.label_column!r} is not a finite number")
    return float(round(value)) if spec.round_scores else value


def row_label(spec: DatasetSpec, row: dict[str, Any], labels: LabelSet | None) -> str | list[str] | float:
    """A raw row's label as its task has it (a class name, a list of them, a score); a ValueError says what is
    wrong with it (empty, unknown, outside ``labels``, the train split's label set, not a number)."""
    if spec.task == MULTI_LABEL:
        return _label_list(spec, row, labels)
    if spec.task == REGRESSION:
        return _score(spec, row)
    raw = _raw_label(spec, row)
    if _missing(raw):
        raise ValueError(f"label column {spec.label_column!r} is empty")
    name = _label_name(spec, raw)
    if labels is not None and name not in labels.names:
        raise ValueError(f"label {name!r} is not in the train split's label set {list(labels.names)}")
    return name


def canonical_rows(
    spec: DatasetSpec,
    frame: pd.DataFrame,
    split: str,
    origin: str,
    skipped: list[BadRow] | None = None,
    labels: LabelSet | None = None,
    skip_with: str = "preprocess.bad_rows: skip",
) -> pd.DataFrame:
    """Map a raw split onto columns id, label (None when unlabelled) and one column per text field.

    Bad rows (empty text, a malformed JSON-list cell, a bad label or one outside ``labels``, the train split's
    label set, a repeated id) raise one error that lists them all and names ``skip_with``, the setting that
    drops them; given a ``skipped`` list, they are dropped and appended to it."""
    labelled = has_labels(spec, frame)
    bad: list[BadRow] = []
    records = []
    seen: set[str] = set()
    for index, row in enumerate(frame.to_dict("records")):
        rid = str(row[spec.id_column]) if spec.id_column else f"{split}-{index}"
        problems = [f"duplicate id in column {spec.id_column!r}"] if rid in seen else []
        seen.add(rid)
        texts, text_problems = row_texts(spec, row)
        problems += text_problems
        label = None
        if labelled:
            try:
                label = row_label(spec, row, labels)
            except ValueError as err:
                problems.append(str(err))
        if problems:
            bad.append(BadRow(origin, index + 1, rid, "; ".join(problems)))
        records.append({"id": rid, **texts, "label": label})
    table = pd.DataFrame.from_records(records, columns=["id", *spec.fields, "label"])
    return _drop_or_fail(table, bad, origin, skipped, skip_with)


def label_set(spec: DatasetSpec, train: pd.DataFrame) -> LabelSet:
    """Class order: the spec's declared order (renamed codes or one-hot columns), else sorted from the data.
    A regression's one output is the score, with the training scores' range."""
    if spec.task == REGRESSION:
        scores = train["label"].to_numpy(dtype=float)
        whole = bool(len(scores)) and bool((scores == scores.round()).all())
        return LabelSet((SCORE,), REGRESSION, whole, (float(scores.min()), float(scores.max())))
    seen = {n for names in train["label"] for n in names} if spec.task == MULTI_LABEL else set(train["label"])
    if spec.label_names:
        names = tuple(n for n in spec.label_names.values() if n in seen)
    elif spec.label_onehot:
        names = tuple(spec.label_onehot)
    else:
        names = tuple(sorted(seen))
    return LabelSet(names, spec.task)


def swap_permutation(spec: DatasetSpec, labels: LabelSet) -> list[int] | None:
    """For a pairwise dataset: entry i is the class that class i becomes when the two swapped fields trade
    places (A wins <-> B wins, tie stays); None for other datasets."""
    if not spec.swap:
        return None
    first, second = spec.swap["labels"]
    trade = {first: second, second: first}
    return [labels.label2id[trade.get(name, name)] for name in labels.names]


def with_label_ids(encoded: pd.DataFrame, labels: LabelSet) -> pd.DataFrame:
    """``encoded`` with a label_id column after its label: the class id (-1 for an unlabelled row), a
    multi-label row's list of ids (None unlabelled); a regression has none (its label is the score)."""
    if labels.task == REGRESSION:
        return encoded
    if labels.task == MULTI_LABEL:
        ids = [None if x is None else sorted(labels.label2id[n] for n in x) for x in encoded["label"]]
    else:
        ids = [labels.label2id.get(x, -1) if x is not None else -1 for x in encoded["label"]]
    out = encoded.copy(deep=False)
    out.insert(list(encoded.columns).index("label") + 1, "label_id", ids)
    return out
