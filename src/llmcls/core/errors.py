"""The one exception type that stages turn into a clean, single-message failure."""


class LlmclsError(Exception):
    """A user-facing problem: bad params, bad input data, a missing source.

    The message names the file, row or key at fault; stages print it without a traceback.
    """


def fail_on(problems: list[str], what: str) -> None:
    """Raise one error listing every problem found, or return if there are none."""
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise LlmclsError(f"{what}:\n{listed}")


class SourceUnavailable(Exception):
    """One source (local folder, package, hub, Kaggle) cannot serve a dataset or model; the reason is shown
    only if no source can."""
