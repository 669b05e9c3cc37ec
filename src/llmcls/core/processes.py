"""Who owns a file or a job: a process named so that a reused process id never reads as the owner still alive.

A bare pid is not an identity: the kernel hands a dead process's id to a new one, so "process 4711 runs" can be
a stranger. The pid's start time (field 22 of /proc/<pid>/stat, clock ticks since boot) with the host name makes
an id that no later process repeats on that host.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from llmcls.core.errors import LlmclsError


@cache
def host_tag() -> str:
    """A short, file-name-safe tag of this host (a shared filesystem sees several)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None when there is no such process
    or no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(") ", 1)[-1].split()


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None without /proc."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def process_age() -> float:
    """Seconds since this process started (its interpreter and imports included); 0 without /proc."""
    ticks = start_time(os.getpid())
    try:
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, StopIteration):
        return 0.0
    if ticks is None:
        return 0.0
    return max(time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK")), 0.0)


def runs_in(folder: Path, command: str) -> bool:
    """Whether a process named ``command`` (its /proc comm) runs with its working folder inside ``folder``
    (another user's processes cannot be seen and do not count)."""
    inside = str(Path(folder).resolve())
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != command:
                continue
            cwd = os.readlink(comm.parent / "cwd")
        except OSError:  # ended meanwhile, or not ours
            continue
        if cwd == inside or cwd.startswith(inside + os.sep):
            return True
    return False


@dataclass(frozen=True)
class Owner:
    """A process on a host: its id and its start time (0 where the system has no /proc)."""

    host: str
    pid: int
    started: int

    @classmethod
    def me(cls) -> Owner:
        return cls(host_tag(), os.getpid(), start_time(os.getpid()) or 0)

    def token(self) -> str:
        return f"{self.host}-{self.pid}-{self.started}"

    @classmethod
    def parse(cls, token: str) -> Owner | None:
        found = re.fullmatch(r"([0-9a-f]{6})-(\d+)-(\d+)", token)
        return cls(found[1], int(found[2]), int(found[3])) if found else None

    def alive(self) -> bool:
        """Whether this very process still runs. One on another host cannot be seen from here: it counts as
        alive, so what it owns is never touched from here."""
        if self.host != host_tag():
            return True
        return alive(self.pid, self.started or None)


def alive(pid: int, started: int | None = None) -> bool:
    """Whether a process with this id runs, and (given ``started``) is the one that started then, not a later
    process that reuses its id. A zombie (ended, not yet waited for) no longer runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    fields = _stat(pid)
    if fields is None:  # no /proc on this system: signal 0 said it exists
        return True
    if fields[0] == "Z":
        return False
    return started is None or int(fields[19]) == started


def alive_running(pid: int, words: bytes) -> bool:
    """Whether process ``pid`` runs and its command line holds ``words``: where only a bare pid was recorded
    (DVC's queue records no start time), a later process that reuses the id runs another command."""
    if not alive(pid):
        return False
    try:
        return words in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc on this system: signal 0 said it exists
    except OSError:  # another user's process: it exists, its command line is hidden
        return True


@contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` while ``what`` runs; a second command that wants it stops at once with
    one error naming the holder. The kernel drops the lock when the holder dies, so a killed command never
    leaves it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(encoding="utf-8").strip() or "another llmcls command"
            raise LlmclsError(
                f"{what}: {holder} is running in this project ({path} is locked); wait for it to end"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{what} (process {os.getpid()})\n".encode())
        yield
    finally:
        os.close(fd)
