"""`llmcls sweep`: a grid of seeds x datasets x models x modes x train sizes, queued as DVC experiments.

Each grid point becomes `dvc exp run --queue -n <readable name> -S key=value ...`. A point whose
configuration already ran (or is queued or running) in any commit's experiments is skipped, so re-running a
sweep only queues what is missing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from llmcls.config.params import read_yaml
from llmcls.experiments.runs import Run, normalise_params, same_config

# Grid axes in naming order: (params key, short name prefix).
AXES = (("dataset", ""), ("model.name", ""), ("train.mode", ""), ("split.train_size", "n"), ("train.seed", "s"))


@dataclass(frozen=True)
class Planned:
    """One grid point: its experiment name, its -S overrides, and why it is skipped (None: queue it)."""

    name: str
    overrides: tuple[tuple[str, Any], ...]
    skipped: str | None = None

    def command(self) -> list[str]:
        sets = [arg for key, value in self.overrides for arg in ("-S", f"{key}={override_value(value)}")]
        return ["dvc", "exp", "run", "--queue", "-n", self.name, *sets]


# Strings `-S` reads back unquoted as themselves: sst2, all-linear, Qwen/Qwen3-1.7B.
_PLAIN = re.compile(r"[A-Za-z_][\w./-]*", re.ASCII)
# In a quoted override, Hydra reads \' as a quote, \${ as a literal ${ (else an interpolation), and a
# backslash run as escaped only before those or at the end; elsewhere backslashes stay as they are.
_HYDRA_ESCAPES = re.compile(r"(\\*)('|\$\{|$)")


def override_value(value: Any) -> str:
    """A value as `dvc exp run -S` (Hydra's override grammar) reads it back: null, true, 0.0005, [a, b], and
    strings quoted where they need it (a template with quotes, braces or non-ASCII text)."""
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
            return value
        escaped = _HYDRA_ESCAPES.sub(lambda m: m.group(1) * 2 + (m.group(2) and "\\" + m.group(2)), value)
        return f"'{escaped}'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(override_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {override_value(item)}" for key, item in value.items()) + "}"
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def parse_value(text: str) -> Any:
    """A command-line value read as YAML, as `-S` would read it ("all" means every row: null)."""
    return None if text == "all" else read_yaml(text)


def grid(axes: Mapping[str, Sequence[Any]], extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (in AXES order), each with the ``extra`` settings added."""
    keys = [key for key, _ in AXES if key in axes]
    points = []
    for values in itertools.product(*(axes[k] for k in keys)):
        point = dict(zip(keys, values, strict=True)) | dict(extra)
        if point not in points:
            points.append(point)
    return points


def _short_hash(settings: Mapping[str, Any]) -> str:
    """Six hex digits that tell settings apart in an experiment name."""
    return hashlib.sha1(repr(sorted(settings.items(), key=lambda kv: kv[0])).encode()).hexdigest()[:6]


def experiment_name(point: Mapping[str, Any], extra: Mapping[str, Any]) -> str:
    """E.g. sst2-smollm2-135m-lora-n2000-s42; extra settings add a short hash so names stay unique.
    Only characters git allows in a ref name are kept."""
    parts = [f"{prefix}{'all' if point[key] is None else point[key]}" for key, prefix in AXES if key in point]
    name = "-".join(parts)
    if extra:
        name += f"-x{_short_hash(extra)}"
    return re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", name)).strip("-.")


def plan(
    points: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    reference: Mapping[str, Any],
    runs: Sequence[Run],
) -> list[Planned]:
    """Name each point and skip those whose configuration matches a run that is done, queued or running.
    ``reference`` is the current params.yaml (flattened); the points override it."""
    live = [
        r for r in runs if r.state in ("done", "queued", "running") and (r.state != "done" or r.test_metrics("llm"))
    ]
    taken = {r.name for r in runs if r.name}
    planned = []
    for point in points:
        params = dict(reference) | normalise_params(dict(point))
        name = experiment_name(point, extra)
        match = next((r for r in live if same_config(params, r.params)), None)
        if match is None and name in taken:
            # The name is used by a different configuration (params.yaml changed since): keep both.
            name = f"{name}-{_short_hash(params)}"
        skipped = (
            None if match is None else f"{'already ran' if match.state == 'done' else match.state} as {match.label}"
        )
        overrides = tuple((key, point[key]) for key in point)
        planned.append(Planned(name, overrides, skipped))
    return planned


def flat_params(text: str) -> dict[str, Any]:
    """params.yaml text, flattened to dotted keys."""
    return normalise_params(read_yaml(text))
