"""Reading tabular files of any common format into pandas, with errors that name the file."""

from __future__ import annotations

import csv
import difflib
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.errors import LlmclsError

READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".xlsx": "excel",
    ".xls": "excel",
}


def read_table(path: str | Path, options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read CSV / TSV / JSON / JSONL / Parquet / Excel by extension; ``options`` go to pandas."""
    path = Path(path)
    options = dict(options or {})
    if not path.is_file():
        raise LlmclsError(f"{path}: file not found")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise LlmclsError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(READERS)}")
    try:
        if kind in ("csv", "tsv"):
            if kind == "tsv" or options.get("sep") == "\t":
                # Sentences carry bare quotes; TSV files here are not quoted.
                options.setdefault("sep", "\t")
                options.setdefault("quoting", csv.QUOTE_NONE)
            return pd.read_csv(path, **options)
        if kind == "json":
            return pd.read_json(path, **options)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, **options)
        if kind == "parquet":
            return pd.read_parquet(path, **options)
        return pd.read_excel(path, **options)
    except (ValueError, pd.errors.ParserError, OSError, ImportError) as err:
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
