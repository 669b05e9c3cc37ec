"""The library's shape: modules and functions small enough to read at once (the layers themselves are
import-linter's contracts in pyproject.toml, run by `make lint` and `make test`)."""

import ast

import pytest
from conftest import ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SOURCES = sorted([*(ROOT / "src" / "llmcls").rglob("*.py"), *(ROOT / "stages").glob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path}: split it by what its parts do"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path}: {long}"


def test_every_stage_is_one_short_click_command_named_by_its_dvc_line():
    for path in sorted((ROOT / "stages").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and doc.startswith(f"dvc repro {path.stem} "), path
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 80, path
