"""Named fault points, so the fault suite strikes a chosen phase of a chosen command on purpose.

`LLMCLS_FAULT=SCOPE:POINT:N:ACTION` makes the N-th time POINT is reached in a process of SCOPE (a stage's
name, such as `evaluate` or `fetch_model`, or an `llmcls` command's) either kill the process (`kill`: SIGKILL,
as the OOM killer or a power cut would) or fail the write with a full disk (`enospc`). Points today: `write`
(an output staged, before it is flushed) and `rename` (before each rename that swaps one in). With
`LLMCLS_FAULT_LOG=FILE` a fault that lands appends one line there first, so a harness counts only faults that
really struck. Unset (the normal case), a point costs one dictionary look-up.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections import Counter
from pathlib import Path

ENV, LOG_ENV = "LLMCLS_FAULT", "LLMCLS_FAULT_LOG"
ACTIONS = ("kill", "enospc")
_reached: Counter[str] = Counter()
_scope: list[str] = []


def enter(scope: str) -> None:
    """Name the command this process runs (stage decorator, `llmcls` group)."""
    _scope[:] = [scope]


def scope() -> str:
    return _scope[0] if _scope else Path(sys.argv[0]).stem


def parse(spec: str) -> tuple[str, str, int, str]:
    parts = spec.split(":")
    if len(parts) != 4 or not parts[2].isdigit() or parts[3] not in ACTIONS:
        raise ValueError(f"{ENV}={spec!r}: expected SCOPE:POINT:N:{'|'.join(ACTIONS)}")
    return parts[0], parts[1], int(parts[2]), parts[3]


def point(name: str) -> None:
    """A place where a real run can be killed or find the disk full."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    where, which, nth, action = parse(spec)
    if which != name or where != scope():
        return
    _reached[name] += 1
    if _reached[name] != nth:
        return
    if log := os.environ.get(LOG_ENV):
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{where}:{name}:{nth}:{action}\n")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, f"no space left on device (fault point {where}:{name}:{nth})")
