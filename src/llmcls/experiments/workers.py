"""Queued experiments whose worker died: found, marked failed through DVC, and cleared so a sweep queues them again.

DVC's queue records an experiment as running when a worker takes it and as done when the same worker collects
it. A worker killed in between (SIGKILL, the OOM killer, a reboot) leaves the task "running" for good: `dvc queue
status` and `dvc exp show` keep listing it, nothing ever collects it, and a sweep that skips running points would
never finish it. Its experiment is not half-recorded (DVC writes the experiment's ref only when it collects), but
its temporary copy of the project stays under .dvc/tmp/exps.

A running entry whose `dvc exp exec-run` process is gone is handed to `dvc queue kill`: for a process that no
longer exists DVC marks the task failed, unless a live worker still holds it (collecting a finished run), in which
case it refuses and the entry is left alone. Marked entries are then removed (`dvc queue remove`) with their
temporary copy, so the point can be queued again under its name.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from llmcls.core.processes import alive_running
from llmcls.experiments.runs import Run


def orphaned(runs: Iterable[Run]) -> list[Run]:
    """Running experiments whose run process is not alive (or was never started, or whose pid a later process
    reuses: DVC records only the pid, so the live process must also be a `dvc exp exec-run`): candidates for
    release. Killing a live one is never asked of DVC, so `dvc queue kill` only ever marks."""
    return [r for r in runs if r.state == "running" and (r.pid is None or not alive_running(r.pid, b"exec-run"))]


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True)


def release(run: Run, project: Path) -> str | None:
    """Mark ``run`` failed, remove it from the queue and delete its temporary copy; a one-line account of what was
    done, or None when DVC says a live worker still holds it (then nothing is touched)."""
    ref = run.name or run.rev
    if _dvc(["queue", "kill", ref], project).returncode != 0:
        return None
    _dvc(["queue", "remove", ref], project)
    gone = "its worker is gone" + (f" (process {run.pid} ended without a result)" if run.pid else "")
    temporary = Path(run.root) if run.root else None
    exps = (project / ".dvc" / "tmp" / "exps").resolve()
    if temporary and temporary.resolve().parent == exps and temporary.is_dir():
        shutil.rmtree(temporary, ignore_errors=True)
    return f"{ref}: {gone}; marked failed and removed from the queue"


def recover(runs: list[Run], project: Path, dry_run: bool = False) -> tuple[list[Run], list[str]]:
    """The runs without those released (their points are free to queue again), and a line for each. A dry run
    releases nothing and says what a real one would do."""
    lines, gone = [], set()
    for run in orphaned(runs):
        if dry_run:
            lines.append(f"{run.name or run.rev}: its worker is gone; a real run marks it failed and queues it again")
        elif (line := release(run, project)) is None:
            continue
        else:
            lines.append(line)
        gone.add(run.rev)
    return [r for r in runs if r.rev not in gone], lines
