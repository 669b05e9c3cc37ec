"""Time you can see: a long phase says how far it is, how fast it goes and when it will end, and every phase's
wall time is kept for the stage's run log, so a slow run says where its time went.

    with phase("probe"), Progress("probe", total=len(rows), unit="rows") as seen:
        for batch in batches:
            ...
            seen.update(len(batch))

On a terminal the line is redrawn in place (at most twice a second); in a log file (stderr not a TTY: DVC,
SLURM, CI) one plain line is written every ``LLMCLS_PROGRESS_S`` seconds (default 30), and always a last one
with the total time. Only the main process of a multi-process run prints. tqdm is not used: outside a terminal
it either prints nothing (``disable=None``) or fills the log with carriage returns.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

EVERY_ENV = "LLMCLS_PROGRESS_S"
_phases: dict[str, float] = {}
_running: list[str] = []  # the phases now running, innermost last


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the block's wall time to phase ``name`` (a phase run twice, such as validation, adds up). Batched
    model loops inside it (model/inference.map_batches) report their progress under this name."""
    started = time.perf_counter()
    _running.append(name)
    try:
        yield
    finally:
        _running.pop()
        _phases[name] = _phases.get(name, 0.0) + time.perf_counter() - started


def current_phase() -> str | None:
    return _running[-1] if _running else None


def add_phase_time(name: str, seconds: float) -> None:
    """Time measured elsewhere (the Trainer's validations, from its callbacks)."""
    _phases[name] = _phases.get(name, 0.0) + seconds


def phase_times() -> dict[str, float]:
    """Seconds per phase of this process, in the order the phases first ran, rounded for the run log."""
    return {name: round(seconds, 2) for name, seconds in _phases.items()}


def duration(seconds: float) -> str:
    """45s, 7m30s, 1h02m."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


class Progress:
    """Progress of one phase of ``total`` units on stderr: count, percent, rate, elapsed and ETA; ``note`` adds
    words such as the running loss. ``initial`` units were done before (a resumed run): they count towards the
    total, not the rate."""

    def __init__(
        self, what: str, total: int, unit: str = "rows", stream: TextIO | None = None, initial: int = 0
    ) -> None:
        self.what, self.total, self.unit = what, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.done = self.initial = initial
        self.note = ""
        self.live = self.stream.isatty()
        self.every = 0.5 if self.live else float(os.environ.get(EVERY_ENV, "30"))
        self.quiet = not _main_process() or self.every < 0
        self.started = self.shown = time.perf_counter()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rate(self, elapsed: float) -> float:
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def line(self, now: float) -> str:
        elapsed = now - self.started
        rate = self.rate(elapsed)
        text = f"{self.what}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.1f} {self.unit}/s, {duration(elapsed)}"
        if 0 < self.done < self.total and rate > 0:
            text += f", ETA {duration((self.total - self.done) / rate)}"
        return text + (f", {self.note}" if self.note else "")

    def _write(self, text: str, end: str) -> None:
        if self.live:
            self.stream.write("\r\x1b[K" + text + end)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        now = time.perf_counter()
        if not self.quiet and now - self.shown >= self.every and self.done < self.total:
            self.shown = now
            self._write(self.line(now), "")

    def close(self) -> float:
        """The last line: what was done, in how long; returns the seconds since the start."""
        elapsed = time.perf_counter() - self.started
        if not self.quiet:
            note = f", {self.note}" if self.note else ""
            rate = f"{self.rate(elapsed):.1f} {self.unit}/s"
            self._write(f"{self.what}: {self.done} {self.unit} in {duration(elapsed)} ({rate}){note}", "\n")
        self.quiet = True
        return elapsed
