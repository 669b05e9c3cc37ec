"""pydantic's validation errors as params.yaml problems: one line each, 'key.path: what is wrong', in words a
user of the file reads (the value, the choices, the bound), with a did-you-mean for an unknown key."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError


def _field_path(loc: tuple, root: type[BaseModel]) -> tuple[list[str], Any, tuple]:
    """An error location's key path, the annotation of the field it ends at, and what is left of the location
    (a union member tried, then list indices or mapping keys inside it)."""
    model: Any = root
    path: list[str] = []
    for i, part in enumerate(loc):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return path, model, loc[i:]
        path.append(str(part))
        model = fields[part].annotation
    return path, model, ()


def _kinds(annotation: Any) -> list[str]:
    """A union's member types in words: "a list", "'all-linear'", "null"..."""
    if typing.get_origin(annotation) is Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [word for member in typing.get_args(annotation) for word in _kinds(member)]
    if typing.get_origin(annotation) is Literal:
        return [repr(value) for value in typing.get_args(annotation)]
    words = {dict: "a mapping", tuple: "a list", int: "an int", float: "a number", str: "a string", bool: "true/false"}
    return [words.get(typing.get_origin(annotation) or annotation, "null" if annotation is type(None) else "a section")]


def _described(error: dict[str, Any]) -> str:
    """What is wrong with one value (the key path is added by the caller)."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx['expected']}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        return f"{value!r} must be {bounds[kind]} {next(iter(ctx.values()))}"
    if kind.endswith("_type"):
        return f"{value!r} is not of type {kind.removesuffix('_type').replace('model', 'mapping')}"
    return f"{value!r}: {error['msg'][0].lower()}{error['msg'][1:]}"


def describe(err: ValidationError, root: type[BaseModel]) -> list[str]:
    """Every problem of a validation error as 'key.path: what is wrong'. A value that fits none of a union's
    types gets one line: the member's own complaint where it came close, else the types it could have been."""
    lines: list[str] = []
    unions: dict[str, list[dict[str, Any]]] = {}
    for error in err.errors():
        path, annotation, rest = _field_path(error["loc"], root)
        key = ".".join(path)
        if error["type"] == "llmcls":  # a section's own checks: each problem names its key inside the section
            lines += [f"{key}.{problem}" if key else problem for problem in error["ctx"]["problems"]]
        elif error["type"] == "missing":
            lines.append(f"{key}: missing")
        elif error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(rest[0]), list(getattr(annotation, "model_fields", {})), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"{'.'.join([*path, str(rest[0])])}: unknown key{hint}")
        elif rest and isinstance(rest[0], str):  # one member of a union
            unions.setdefault(key, []).append(error | {"annotation": annotation, "inner": rest[1:]})
        else:
            lines.append(f"{'.'.join([key, *map(str, rest)])}: {_described(error)}")
    for key, errors in unions.items():
        close = [e for e in errors if not e["type"].endswith("_type") and e["type"] != "literal_error"]
        if close:
            lines += [f"{'.'.join([key, *map(str, e['inner'])])}: {_described(e)}" for e in close]
        else:
            lines.append(f"{key}: {errors[0]['input']!r} is not {' or '.join(_kinds(errors[0]['annotation']))}")
    return lines
