"""The one exception type for what a user can fix, shown as a clean, single message by every command."""

from __future__ import annotations

import contextlib
import errno
import re
import sqlite3
from collections.abc import Iterator

import click


class LlmclsError(click.ClickException):
    """A user-facing problem: bad params, bad input data, a missing source.

    The message names the file, row or key at fault. Raised inside a click command (a stage or `llmcls ...`),
    click prints it without a traceback and exits 1.
    """

    def show(self, file=None) -> None:
        click.echo(f"llmcls: error: {self.format_message()}", err=True, file=file)


def fail_on(problems: list[str], what: str) -> None:
    """Raise one error listing every problem found, or return if there are none."""
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise LlmclsError(f"{what}:\n{listed}")


# Write failures a user fixes by freeing space or raising a limit, not by changing llmcls.
FULL_DISK = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "a file size limit was reached",
    errno.EDQUOT: "the disk quota is used up",
    errno.EIO: "a write to the disk failed (is it full?)",
}
# SQLite (DVC's and DVCLive's caches) reports a failed write in words, without an errno.
SQLITE_DISK = {"database or disk is full": errno.ENOSPC, "disk I/O error": errno.EIO}


def _disk_errno(err: Exception) -> int | None:
    """The errno of a failed write: an OSError's own, SQLite's words for one, or the "(os error N)" that Rust
    writers (safetensors) put in their message."""
    if isinstance(err, OSError):
        return err.errno
    if isinstance(err, sqlite3.OperationalError):
        return next((code for words, code in SQLITE_DISK.items() if words in str(err)), None)
    found = re.search(r"\(os error (\d+)\)", str(err))
    return int(found.group(1)) if found else None


@contextlib.contextmanager
def full_disk_is_an_error() -> Iterator[None]:
    """A full disk (or a file size limit) while writing outputs becomes one clear error. Outputs are written
    to temporary siblings and renamed only when complete (core/outputs.py), so the previous ones stay intact."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as err:
        code = _disk_errno(err)
        if code not in FULL_DISK:
            raise
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        raise LlmclsError(
            f"{where}{FULL_DISK[code]} ({err}); nothing was replaced: the previous outputs are kept. "
            "Free space (or raise the limit) and run again."
        ) from err


class SourceUnavailable(Exception):
    """One source (local folder, package, hub, Kaggle) cannot serve a dataset or model; the reason is shown
    only if no source can."""
