"""dvc.yaml declares, for every stage, each library module its script imports (directly or through other
modules): otherwise DVC would skip a stage whose code changed."""

import ast
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def llmcls_imports(path: Path) -> set[str]:
    """Module names under llmcls that ``path`` imports, at any depth in the file (lazy imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "llmcls":
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "llmcls")
    return names


def module_files(name: str) -> list[str]:
    """The files Python runs to import module ``name``: each package's __init__.py on the way, then the module."""
    parts = name.split(".")
    files = ["src/" + "/".join(parts[:i]) + "/__init__.py" for i in range(1, len(parts) + 1)]
    return [f for f in files[:-1] if (ROOT / f).is_file()] + [
        f for f in (files[-1], "src/" + "/".join(parts) + ".py") if (ROOT / f).is_file()
    ]


def library_files(script: Path) -> set[str]:
    """The src/llmcls files ``script`` loads, transitively (catalog.py brings its catalog.yaml)."""
    seen: set[str] = set()
    todo = [script]
    while todo:
        for name in llmcls_imports(todo.pop()):
            for rel in module_files(name):
                if rel not in seen:
                    seen.add(rel)
                    todo.append(ROOT / rel)
    if "src/llmcls/config/catalog.py" in seen:
        seen.add("src/llmcls/config/catalog.yaml")
    return seen


def command_files(cmd: str) -> set[str]:
    """The library files a stage command runs: its script's imports, and a `python -m llmcls...` launcher's."""
    words = cmd.split()
    script = next(word for word in words if word.startswith("stages/"))
    files = library_files(ROOT / script)
    for before, word in zip(words, words[1:], strict=False):
        if before == "-m" and word.startswith("llmcls."):
            launcher = module_files(word)
            files |= set(launcher) | library_files(ROOT / launcher[-1])
    return files


@pytest.mark.parametrize("name", sorted(PIPELINE))
def test_stage_declares_the_modules_it_imports(name):
    stage = PIPELINE[name]
    script = next(word for word in stage["cmd"].split() if word.startswith("stages/"))
    deps = {d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]}
    assert script in deps
    missing = command_files(stage["cmd"]) - deps
    assert not missing, f"stage {name}: add {sorted(missing)} to its deps"
    unused = {d for d in deps if d.startswith("src/")} - command_files(stage["cmd"])
    assert not unused, f"stage {name}: {sorted(unused)} are declared but never imported"


@pytest.mark.parametrize("name", sorted(PIPELINE))
def test_stage_imports_the_library_of_its_own_tree(name):
    """A queued experiment runs in a copy of the repo: its stages must read that copy's src/, not the
    workspace's (where the editable install points), which may have changed since it was queued."""
    assert PIPELINE[name]["cmd"].startswith("PYTHONPATH=src ")


@pytest.mark.dvc
def test_pythonpath_src_wins_over_the_editable_install(project_copy):
    import subprocess

    probe = "import llmcls, pathlib; print(pathlib.Path(llmcls.__file__).resolve())"
    found = subprocess.run(
        f"PYTHONPATH=src python -c '{probe}'", shell=True, cwd=project_copy, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == str((project_copy / "src" / "llmcls" / "__init__.py").resolve())
