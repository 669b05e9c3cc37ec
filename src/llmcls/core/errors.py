"""The one exception type for what a user can fix, shown as a clean, single message by every command."""

from __future__ import annotations

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


class SourceUnavailable(Exception):
    """One source (local folder, package, hub, Kaggle) cannot serve a dataset or model; the reason is shown
    only if no source can."""
