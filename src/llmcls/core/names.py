"""Names a user or a params value gives that become paths, git refs or URLs shown: checked or masked first."""

from __future__ import annotations

import re

from llmcls.core.errors import LlmclsError

# A study, sweep point or experiment name: it becomes a folder (a job's clone, a figure) and a git ref
# (refs/exps/...), so no separators, no "..", no leading dot or dash.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")


def check_name(name: str, what: str) -> str:
    """``name`` if it is safe as one path component and a git ref name; else one error naming ``what``."""
    if not _NAME.fullmatch(name) or ".." in name or name.endswith((".lock", ".")):
        raise LlmclsError(
            f"{what} {name!r}: use 1-100 letters, digits and . _ + - (starting with a letter or digit, no '..'), "
            "so it stays one folder and one git ref name"
        )
    return name


# scheme://user:password@host → the password masked (SQLAlchemy, Redis, HTTP URLs alike).
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]+)@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def has_secret(url: str) -> bool:
    return redact(url) != url
