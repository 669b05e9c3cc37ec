"""Generated hostile inputs (hypothesis strategies) and how a command's answer to one is judged.

Shared by the property tests (tests/test_hostile_inputs.py), which assert that no example gets a traceback, and
by benchmarks/reliability.py, which counts the outcomes for docs/reliability.md. An example is a table written as
a real file, with the oddities real files have: a BOM, CRLF line ends, another encoding than the one declared,
unquoted cells with quotes, tabs, NULs and newlines, a header missing or doubled, one row or none, 100k-character
texts, emoji and right-to-left scripts, labels that are numbers in one row and strings in the next, NaN / inf.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import strategies as st

ODD_TEXTS = [
    "",
    " ",
    "😀🎉 great 👍🏽",
    "مرحبا بالعالم، هذا رائع",
    "שלום עולם",
    "a\nb",
    "line one\r\nline two",
    'she said "hi',
    'a "quoted" word, and a comma',
    "tab\tinside",
    "nul\x00inside",
    "\ufeffstarts with a BOM",
    "x" * 100_000,
    "1e-4",
    "nan",
    "None",
]
TEXTS = st.one_of(
    st.sampled_from(ODD_TEXTS),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from(["good film", "bad film", "loved it", "hated it", "fine"]),
)
LABELS = st.one_of(
    st.sampled_from([0, 1, 2, "pos", "neg", "1", "2,0", "pos;neg", "", None]),
    st.integers(-2, 5),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.text(max_size=6),
)
FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
HEADERS = ("normal", "missing", "duplicated", "none")  # none: header-less file, named by params / --names


@dataclass
class TableFile:
    """One generated input file and the reader settings that go with it."""

    fmt: str
    rows: list[tuple[str, Any]]
    header: str = "normal"
    raw_cells: bool = False  # csv / tsv: cells written as they are, no quoting
    bom: bool = False
    crlf: bool = False
    written_as: str = "utf-8"
    declared: str = "utf-8"
    task: str = "single_label"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"table.{self.fmt}"

    def columns(self) -> list[str]:
        return {"duplicated": ["text", "text"], "missing": []}.get(self.header, ["text", "label"])

    def _delimited(self) -> str:
        sep = "," if self.fmt == "csv" else "\t"
        end = "\r\n" if self.crlf else "\n"
        cells = [[text, "" if label is None else str(label)] for text, label in self.rows]
        if self.header in ("normal", "duplicated"):
            cells.insert(0, self.columns())
        if self.raw_cells:
            return "".join(sep.join(row) + end for row in cells)
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=sep, lineterminator=end, quoting=csv.QUOTE_MINIMAL)
        writer.writerows(cells)
        return buffer.getvalue()

    def _json(self) -> str:
        key = "label" if self.header != "missing" else "labels"
        records = [
            {"text": t, key: None if isinstance(lab, float) and math.isnan(lab) else lab} for t, lab in self.rows
        ]
        if self.fmt == "jsonl":
            end = "\r\n" if self.crlf else "\n"
            return "".join(json.dumps(r, ensure_ascii=False) + end for r in records)
        return json.dumps(records, ensure_ascii=False)

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        if self.fmt == "parquet":
            frame = (
                pd.DataFrame(self.rows, columns=["text", "label"])
                if self.rows
                else pd.DataFrame({"text": [], "label": []})
            )
            if frame["label"].map(type).nunique() > 1:
                frame["label"] = frame["label"].map(lambda v: None if v is None else str(v))  # parquet: one type
            if self.header == "missing":
                frame = frame.rename(columns={"label": "labels"})
            frame.to_parquet(path, index=False)
            return path
        text = self._delimited() if self.fmt in ("csv", "tsv") else self._json()
        if self.bom:
            text = "\ufeff" + text
        path.write_bytes(text.encode(self.written_as, errors="replace"))
        return path

    def custom_params(self, folder: str) -> dict[str, Any]:
        """The params overrides that point dataset `custom` at this file."""
        params = {
            "dataset": "custom",
            "task": self.task,
            "custom.train_path": f"{folder}/{self.name}",
            "custom.text_columns": ["text"],
            "custom.label_column": "label",
            "custom.encoding": self.declared,
        }
        if self.header == "none" and self.fmt in ("csv", "tsv"):
            params |= {"custom.header": False, "custom.names": ["text", "label"]}
        return params | self.extra


@st.composite
def table_files(draw, formats: tuple[str, ...] = FORMATS, max_rows: int = 12) -> TableFile:
    fmt = draw(st.sampled_from(formats))
    rows = draw(st.lists(st.tuples(TEXTS, LABELS), max_size=max_rows))
    if draw(st.booleans()):  # half the examples: enough rows of two labels for the later stages to run
        rows = rows + [(f"good film number {i}", i % 2) for i in range(draw(st.integers(4, 20)))]
    encodings = st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1", "gbk"])
    return TableFile(
        fmt=fmt,
        rows=rows,
        header=draw(st.sampled_from(HEADERS)),
        raw_cells=draw(st.booleans()),
        bom=draw(st.booleans()),
        crlf=draw(st.booleans()),
        written_as=draw(encodings),
        declared=draw(encodings),
        task=draw(st.sampled_from(["single_label", "single_label", "multi_label", "regression"])),
        extra={"preprocess.bad_rows": draw(st.sampled_from(["error", "skip"]))},
    )


OK, REJECTED, TRACEBACK = "ok", "rejected cleanly", "traceback"


def outcome(result, names: list[str]) -> tuple[str, str]:
    """How a click command answered: ok (exit 0), rejected cleanly (exit 1 with one `llmcls: error:` message
    that names one of ``names`` — a file, a key — or a row number), or traceback (any other exception or exit,
    or a message that names none of them)."""
    if result.exit_code == 0 and result.exception is None:
        return OK, ""
    text = result.output
    clean = isinstance(result.exception, SystemExit) and result.exit_code == 1 and "llmcls: error:" in text
    if clean and "Traceback" not in text:
        message = text.split("llmcls: error:", 1)[1]
        if any(n in message for n in names) or re.search(r"\brow \d+", message):
            return REJECTED, message.strip()
        return TRACEBACK, f"the message names no file, row or key: {message.strip()[:300]}"
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        import traceback

        return TRACEBACK, "".join(traceback.format_exception(*result.exc_info))[-1500:]
    return TRACEBACK, text[-1500:]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()
