"""Params as an experiment will read them: params.yaml with `dvc exp run -S`-style overrides, validated."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmcls.config.params import Params, parse_params, read_yaml
from llmcls.core.errors import LlmclsError


def params_with(path: str | Path, overrides: Mapping[str, Any], source: str) -> Params:
    """params.yaml with dotted-key overrides applied as `dvc exp run -S` applies them, validated by the same
    models (one error naming ``source``, such as a sweep point, and every problem), before anything runs it."""
    data = read_yaml(Path(path).read_text(encoding="utf-8"))
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise LlmclsError(f"{source}: {dotted}: {key!r} is not a params section")
            node = node[key]
        node[last] = value
    return parse_params(data, source)
