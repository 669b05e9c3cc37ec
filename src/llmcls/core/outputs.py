"""Write outputs all-or-nothing, and never over what llmcls did not write.

Every output is written to a temporary sibling named for its writing process (`.<name>.llmcls-<owner>-<random>`),
flushed to disk, and renamed over the target only when the whole set is complete: a stage's several outputs form
one `Transaction`, committed through a journal beside the first target, so a kill in the middle of the renames is
finished (rolled forward) by the next write of those targets, and a kill before the journal leaves the old set
whole. Leftover temporaries are removed only when their owner process is gone (core/processes.py), so two
commands writing one path never delete each other's work: the last to commit wins, whole.

A folder is replaced only when it is absent, empty, or carries the marker (`.llmcls-output`) of the same writer;
the current directory, a git repository (or a folder above one), the home folder and a folder holding files
tracked by git are refused (unless it is the writer's own marked folder, like `llmcls report`'s committed
figures). Fault points (core/faults.py) are named at each phase, so the fault suite hits them on purpose.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.core import faults
from llmcls.core.errors import LlmclsError
from llmcls.core.processes import Owner

MARKER = ".llmcls-output"  # in every folder llmcls writes whole: {"written_by": <writer>}
_TEMP = re.compile(r"\.(?P<name>.+)\.llmcls-(?P<owner>[0-9a-f]{6}-\d+-\d+)-(?P<kind>new|old)-[0-9a-f]{6}")
_JOURNAL = ".{name}.llmcls-journal"


class UnsafeOutput(LlmclsError):
    """An output path llmcls refuses to replace."""


def _temp_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.llmcls-{Owner.me().token()}-{kind}-{secrets.token_hex(3)}"


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def drop_leftovers(target: Path) -> None:
    """Remove llmcls's own temporaries beside ``target`` whose writing process is gone (killed mid-write).
    A live writer's, another host's, and any file not named by llmcls are left alone."""
    if not target.parent.is_dir():
        return
    for sibling in target.parent.iterdir():
        found = _TEMP.fullmatch(sibling.name)
        if found and found["name"] == target.name:
            owner = Owner.parse(found["owner"])
            if owner is not None and not owner.alive():
                _delete(sibling)


def _git_root(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _tracked(folder: Path, root: Path) -> bool:
    """Whether git tracks a file under ``folder`` (False where git cannot say)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", str(folder.relative_to(root))],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and bool(listed.stdout)


def written_by(folder: Path) -> str | None:
    """The writer named by a folder's marker, if it has a readable one."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("written_by")
    except (OSError, ValueError, AttributeError):
        return None


def check_replaceable(target: Path, writer: str) -> None:
    """Refuse, with one error, a folder target that is not this writer's to replace."""
    resolved = target.resolve()
    here = Path.cwd().resolve()
    why = None
    if resolved == here or resolved in here.parents:
        why = "it is the current directory or a folder above it"
    elif resolved == Path.home().resolve() or resolved == Path(resolved.anchor):
        why = "it is the home folder or the filesystem root"
    elif (resolved / ".git").exists():
        why = "it is a git repository"
    elif target.exists() and not target.is_dir():
        why = "it is a file, not a folder"
    elif target.is_dir() and any(target.iterdir()):
        owner = written_by(target)
        if owner == writer and any(resolved.rglob(".git")):  # e.g. an export a user made a hub repo of
            why = "it holds a git repository"
        elif owner != writer and (root := _git_root(resolved)) is not None and _tracked(resolved, root):
            why = "it holds files tracked by git"
        elif owner != writer:
            what = f"by {owner!r}" if owner else "by llmcls"
            why = f"it is not empty and was not written {what} as {writer!r} (no {MARKER} of {writer!r} in it)"
    if why:
        raise UnsafeOutput(
            f"{target}: refusing to replace this folder: {why}. Nothing was changed; choose a new or empty folder."
        )


def check_file_target(target: Path) -> None:
    if target.is_dir():
        raise UnsafeOutput(f"{target}: is a folder; give a file path. Nothing was changed.")


def fsync_tree(path: Path) -> None:
    """Flush a file, or a folder's files and the folder entries themselves, to the disk."""
    if path.is_dir():
        for child in path.iterdir():
            fsync_tree(child)
    if not path.is_symlink():
        fsync_entry(path)


def fsync_entry(path: Path) -> None:
    """Flush one file, or one folder's entries (the renames in it) without its files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(folders: list[Path]) -> Iterator[None]:
    """Exclusive locks on the parent folders (sorted, so two writers never wait on each other in a cycle):
    the renames of one commit never interleave with another llmcls writer's in the same folders."""
    fds = []
    try:
        for folder in sorted({f.resolve() for f in folders}):
            fd = os.open(folder, os.O_RDONLY)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in reversed(fds):
            os.close(fd)  # closing releases the lock


def _swap(new: Path, target: Path, old: Path, keep_old: bool = True) -> None:
    """Put ``new`` at ``target``; what was there moves to ``old`` first (deleted after the whole set is in), so
    a failed commit can put it back. A lone file (``keep_old`` False) is replaced in one atomic rename."""
    if new.exists():
        if (target.exists() or target.is_symlink()) and (keep_old or target.is_dir()):
            os.replace(target, old)
        faults.point("rename")
        os.replace(new, target)


def _roll_back(moves: list[tuple[Path, Path, Path]]) -> None:
    """Undo the renames of a commit that failed (a full disk, a permission) before its last: each old output
    goes back; a new one already in goes back to its temporary, which the caller discards."""
    for new, target, old in reversed(moves):
        if old.exists() or old.is_symlink():
            if target.exists() or target.is_symlink():
                os.replace(target, new)
            os.replace(old, target)


def _roll_forward(journal: Path) -> None:
    """Finish a commit whose writer died between its journal and its last rename; then drop the journal."""
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
        owner = Owner.parse(record["owner"])
        moves = [(Path(m["new"]), Path(m["target"]), Path(m["old"])) for m in record["moves"]]
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)  # torn before it was complete: the commit never began
        return
    if owner is not None and owner.alive():
        return  # that commit is in progress
    for new, target, old in moves:
        _swap(new, target, old)
    for _new, _target, old in moves:
        _delete(old)
    journal.unlink(missing_ok=True)


class Transaction:
    """A set of outputs written to temporaries and swapped in together.

        with Transaction("evaluate") as out:
            out.file(metrics).write_text(...)
            table.to_csv(out.file(predictions / "test.csv"))

    ``folder(target)`` gives a fresh temporary folder (checked first: see `check_replaceable`), ``file(target)`` a
    temporary path. Leaving the block with an exception deletes the temporaries and keeps the old outputs.
    """

    def __init__(self, writer: str) -> None:
        self.writer = writer
        self.moves: list[tuple[Path, Path]] = []  # (temporary, target)

    def _prepare(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        journal = target.parent / _JOURNAL.format(name=target.name)
        if journal.exists():
            with _locked([target.parent]):
                _roll_forward(journal)
        drop_leftovers(target)

    def folder(self, target: str | Path) -> Path:
        target = Path(target)
        check_replaceable(target, self.writer)
        self._prepare(target)
        tmp = _temp_name(target, "new")
        tmp.mkdir()
        self.moves.append((tmp, target))
        return tmp

    def file(self, target: str | Path) -> Path:
        target = Path(target)
        check_file_target(target)
        self._prepare(target)
        tmp = _temp_name(target, "new")
        self.moves.append((tmp, target))
        return tmp

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self._discard()
            return
        try:
            self.commit()
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        for tmp, _target in self.moves:
            _delete(tmp)

    def commit(self) -> None:
        for tmp, _target in self.moves:
            if tmp.is_dir():
                (tmp / MARKER).write_text(json.dumps({"written_by": self.writer}) + "\n", encoding="utf-8")
                tmp.chmod(0o755)
            elif tmp.exists():
                tmp.chmod(0o644)
            faults.point("write")
            fsync_tree(tmp)
        if not self.moves:
            return
        parents = [target.parent for _tmp, target in self.moves]
        moves = [(tmp, target, _temp_name(target, "old")) for tmp, target in self.moves]
        first = self.moves[0][1]
        journal = first.parent / _JOURNAL.format(name=first.name)
        with _locked(parents):
            several = len(moves) > 1  # one rename is atomic by itself; several need the journal to finish together
            if several:
                record = {
                    "owner": Owner.me().token(),
                    "moves": [{"new": str(n), "target": str(t), "old": str(o)} for n, t, o in moves],
                }
                tmp_journal = _temp_name(journal, "new")
                tmp_journal.write_text(json.dumps(record), encoding="utf-8")
                fsync_tree(tmp_journal)
                os.replace(tmp_journal, journal)
            try:
                for new, target, old in moves:
                    _swap(new, target, old, keep_old=several)
            except BaseException:
                _roll_back(moves)
                journal.unlink(missing_ok=True)
                raise
            for parent in set(parents):
                fsync_entry(parent)
            journal.unlink(missing_ok=True)
        for _new, _target, old in moves:
            _delete(old)


@contextmanager
def staged_dir(target: str | Path, writer: str) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``target`` only if the block succeeds (one-output
    `Transaction`)."""
    with Transaction(writer) as out:
        yield out.folder(target)


@contextmanager
def staged_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; it becomes ``target`` only if the block succeeds."""
    with Transaction("file") as out:
        yield out.file(target)


def json_text(data: Any) -> str:
    """Pretty, key-sorted JSON, as every llmcls JSON output is written."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | Path, data: Any) -> None:
    """Write pretty, key-sorted JSON atomically."""
    with staged_file(path) as tmp:
        tmp.write_text(json_text(data), encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a CSV atomically."""
    with staged_file(path) as tmp:
        frame.to_csv(tmp, index=False)


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
