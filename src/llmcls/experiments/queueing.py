"""Queueing a sweep point without risking the user's workspace when the sweep is killed half-way.

`dvc exp run --queue` stashes the workspace's changes (git stash), detaches HEAD, applies the -S overrides,
commits them to DVC's queue stash and then puts everything back. SIGKILLed inside that (the OOM killer, a closed
SSH session, `kill -9`), it leaves HEAD detached with params.yaml holding a point's overrides, and any uncommitted
changes of the user's on git's stash (a kill at a random moment of a sweep lands there often: docs/reliability.md).
A commit made there would land on no branch, with one point's settings.

So each call runs inside ``guarded``: the branch, the stash depth and whether tracked files had changes are
written to a marker first and removed after. A marker found at the next sweep means a call was killed; ``repair``
then puts back what DVC would have: HEAD on its branch, the workspace as the sweep found it (the user's changes
popped from the stash, or DVC's half-applied overrides undone, saved as a patch first).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import staged_file
from llmcls.core.processes import runs_in

MARKER = Path(".dvc/tmp/llmcls-queueing.json")


def _git(project: Path, *args: str, check: bool = False) -> str:
    result = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise LlmclsError(f"`git {' '.join(args)}` failed in {project}: {result.stderr.strip()}")
    return result.stdout.strip()


def _stale_git_locks(project: Path) -> list[Path]:
    """Git's lock files (index.lock, HEAD.lock, a ref's .lock) that a git killed inside `dvc exp run --queue`
    left behind: every later git command refuses to touch what they lock. Stale only while no git runs in
    the project (a live one may hold them)."""
    git_dir = project / ".git"
    locks = [*git_dir.glob("*.lock"), *git_dir.glob("refs/**/*.lock")]
    return [] if not locks or runs_in(project, "git") else locks


def _state(project: Path) -> dict:
    return {
        "head": _git(project, "symbolic-ref", "-q", "HEAD") or _git(project, "rev-parse", "HEAD"),
        "commit": _git(project, "rev-parse", "HEAD"),
        "stashes": len(_git(project, "stash", "list").splitlines()),
        "clean": not _git(project, "status", "--porcelain", "--untracked-files=no"),
    }


@contextmanager
def guarded(project: Path) -> Iterator[None]:
    """Around one `dvc exp run --queue`: the marker ``repair`` reads if this process dies inside."""
    marker = project / MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(marker) as tmp:
        tmp.write_text(json.dumps(_state(project)), encoding="utf-8")
    try:
        yield
    finally:  # dvc ended (in success or in an error it handled itself): nothing to repair
        marker.unlink(missing_ok=True)


def repair(project: Path, dry_run: bool = False) -> list[str]:
    """Undo what a killed `dvc exp run --queue` left (see the module docstring); a line for each thing done."""
    marker = project / MARKER
    if not marker.is_file():
        return []
    was, now = json.loads(marker.read_text(encoding="utf-8")), _state(project)
    detached = now["head"] != was["head"] and now["commit"] == was["commit"]
    popped = now["stashes"] == was["stashes"] + 1
    undo = detached and was["clean"] and not now["clean"]
    if dry_run:
        return ["a sweep was killed while queueing a point; a real run puts the workspace back"]
    lines = []
    for lock in _stale_git_locks(project):
        lock.unlink(missing_ok=True)
        lines.append(f"{lock.relative_to(project)}, left by a git killed with it, removed")
    if detached:
        if was["head"].startswith("refs/"):
            _git(project, "symbolic-ref", "HEAD", was["head"], check=True)
        _git(project, "reset", "-q", check=True)  # the index as HEAD's, the files untouched: what DVC does
        lines.append(f"HEAD was left detached by a killed `dvc exp run --queue`: back on {was['head']}")
    if (popped or undo) and (changes := _git(project, "diff", "HEAD")):
        patch = project / ".dvc" / "tmp" / f"llmcls-queueing-{time.strftime('%Y%m%d-%H%M%S')}.patch"
        patch.write_text(changes + "\n", encoding="utf-8")
        _git(project, "reset", "-q", "--hard", check=True)
        lines.append(f"its half-applied overrides undone (saved as {patch.relative_to(project)})")
    if popped:
        _git(project, "stash", "pop", "-q", "--index", check=True)
        lines.append("your uncommitted changes, which it had stashed, are back (git stash pop)")
    marker.unlink()
    return lines
