"""Reading tabular files of any common format into pandas, with errors that name the file."""

from __future__ import annotations

import csv
import difflib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.core.errors import LlmclsError

READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".xlsx": "excel",
    ".xls": "excel",
    ".label": "lines",  # one record a line (TREC's `COARSE:fine question`), split by a `pattern` option
}
# Reader options that describe a file's layout, and the kinds of file they apply to.
LAYOUT_OPTIONS = {"sep": ("csv", "tsv"), "header": ("csv", "tsv", "excel"), "names": ("csv", "tsv", "excel")}


def read_lines(path: Path, pattern: str | None, encoding: str) -> pd.DataFrame:
    """One row per non-empty line: column `text`, or with ``pattern`` one column per named regex group."""
    lines = [line for line in path.read_text(encoding=encoding).splitlines() if line.strip()]
    if pattern is None:
        return pd.DataFrame({"text": lines})
    table = pd.Series(lines, dtype=object).str.extract(pattern)
    unmatched = table.index[table.isna().all(axis=1)].tolist()
    if unmatched:
        shown = ", ".join(f"line {i + 1}: {lines[i][:60]!r}" for i in unmatched[:5])
        raise LlmclsError(f"{path}: {len(unmatched)} line(s) do not match the pattern {pattern!r} ({shown})")
    return table


def read_table(path: str | Path, options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read CSV / TSV / JSON / JSONL / Parquet / Excel / line files by extension; ``options`` go to pandas,
    except ``pattern``: a regex whose named groups split each line of a line file into columns."""
    path = Path(path)
    options = dict(options or {})
    pattern = options.pop("pattern", None)
    if not path.is_file():
        raise LlmclsError(f"{path}: file not found")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise LlmclsError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(READERS)}")
    misplaced = sorted(k for k, kinds in LAYOUT_OPTIONS.items() if k in options and kind not in kinds)
    if misplaced:
        raise LlmclsError(f"{path}: the reader options {misplaced} do not apply to a {kind} file")
    if kind in ("parquet", "excel"):
        options.pop("encoding", None)  # binary formats carry their own
    elif options.get("encoding", "utf-8").lower().replace("_", "-") in ("utf-8", "utf8"):
        # Windows tools start UTF-8 files with a byte-order mark; pandas' JSON reader would choke on it.
        options["encoding"] = "utf-8-sig"
    try:
        if kind == "lines":
            return read_lines(path, pattern, options.get("encoding", "utf-8"))
        if kind in ("csv", "tsv"):
            if kind == "tsv":
                options.setdefault("sep", "\t")
            if options.get("sep") == "\t":
                # Sentences carry bare quotes; TSV files here are not quoted.
                options.setdefault("quoting", csv.QUOTE_NONE)
            return pd.read_csv(path, **options)
        if kind == "json":
            return pd.read_json(path, **options)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, **options)
        if kind == "parquet":
            return pd.read_parquet(path, **options)
        return pd.read_excel(path, **options)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError, ImportError) as err:
        raise LlmclsError(f"{path}: cannot read as {kind}: {err}") from err


def missing_columns(frame: pd.DataFrame, required: list[str], where: str) -> list[str]:
    """One problem line per missing column, with the closest existing name as a hint."""
    have = [str(c) for c in frame.columns]
    problems = []
    for column in required:
        if column not in frame.columns:
            close = difflib.get_close_matches(str(column), have, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}: missing column {column!r}{hint}; columns are {have}")
    return problems


def _as_text(value: Any) -> Any:
    """A cell of a mixed column as the text a CSV would have held (lists and mappings as JSON)."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)
    if hasattr(value, "tolist"):  # numpy arrays and scalars from Parquet / JSON
        return _as_text(value.tolist())
    return str(value)


def storable(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """``frame`` as Parquet can store it: column names as text (one error naming the file for duplicates), and a
    column Arrow cannot type (0 in one JSON row and "pos" in the next, a list beside a string) as text, which is
    how a CSV would have read it; what the cells mean is decided later, per row, with errors naming the row."""
    import pyarrow as pa

    frame = frame.rename(columns=str)
    doubled = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if doubled:
        raise LlmclsError(f"{where}: duplicated column name(s) {doubled}")
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        try:
            pa.array(frame[column], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            frame[column] = frame[column].map(lambda v: v if _missing_cell(v) else _as_text(v))
    return frame


def _missing_cell(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
