"""What llmcls lets in: weights as safetensors only (no pickle is ever loaded), remote code only when asked for,
custom files only from data/custom/, an exported folder whose only code is the project's own modeling file,
and predict writing its --out and nothing else."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, sentiment_frame, stage, write_params

from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import MARKER

# Loaders that unpickle, by their full dotted name. torch's are safe with weights_only=True, numpy's unless
# allow_pickle is set.
PICKLE_LOADERS = {
    *(f"{module}.{fn}" for module in ("pickle", "_pickle", "cloudpickle", "dill") for fn in ("load", "loads")),
    "pickle.Unpickler",
    "joblib.load",
    "pandas.read_pickle",
    "shelve.open",
    "numpy.load",
    "torch.load",
    "torch.serialization.load",
}


def imported_names(tree: ast.AST) -> dict[str, str]:
    """Each name a module binds by import -> the dotted name it stands for (`pk` -> `pickle`, `load` ->
    `torch.load`, `np` -> `numpy`)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                names[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    """`pk.loads` -> `pickle.loads`, through the module's imports; None for a call that is not a name chain."""
    attributes = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([names.get(node.id, node.id), *reversed(attributes)])


def keyword(call: ast.Call, name: str) -> object:
    """A call's keyword argument: its constant, "set" for an expression, None when absent."""
    value = next((k.value for k in call.keywords if k.arg == name), None)
    return None if value is None else value.value if isinstance(value, ast.Constant) else "set"


def calls_loading_pickles(path: Path, ours: bool = True) -> list[str]:
    """Calls in one source file that can unpickle, under any name they were imported as. In our code torch's
    loads must say weights_only=True; in a library (``ours`` False) they may rely on torch's default (True since
    torch 2.6) and are flagged only when they turn it off."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (name := dotted(node.func, names)) not in PICKLE_LOADERS:
            continue
        if name in ("torch.load", "torch.serialization.load"):
            weights_only = keyword(node, "weights_only")
            if weights_only is True or (not ours and weights_only in (None, "set")):
                continue
        if name == "numpy.load" and keyword(node, "allow_pickle") in (None, False):
            continue
        found.append(f"{path}:{node.lineno}: {name}")
    return found


def resume_sources() -> list[Path]:
    """The library code every strategy resumes a checkpoint through: the Trainer (single process, DDP),
    accelerate's state loading (FSDP, its scaler and RNG states), peft's adapter loading and, where installed,
    DeepSpeed's engine."""
    import importlib.util

    modules = [
        "transformers.trainer",
        "transformers.trainer_pt_utils",
        "accelerate.accelerator",
        "accelerate.checkpointing",
        "accelerate.utils.fsdp_utils",
        "peft.utils.save_and_load",
        "deepspeed.runtime.engine",
        "deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine",
    ]
    found = []
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # deepspeed: not installed on CPU hosts
            spec = None
        if spec and spec.origin:
            found.append(Path(spec.origin))
    return found


def test_no_pickle_is_loaded_by_our_code_or_the_code_we_resume_with():
    ours = [p for folder in ("src", "stages", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    assert [hit for p in ours for hit in calls_loading_pickles(p)] == []
    import torch
    from packaging.version import Version

    assert Version(torch.__version__) >= Version("2.6")  # torch.load's weights_only defaults to True
    libraries = resume_sources()
    assert {p.name for p in libraries} >= {"trainer.py", "checkpointing.py", "fsdp_utils.py", "save_and_load.py"}
    assert [hit for p in libraries for hit in calls_loading_pickles(p, ours=False)] == []


def test_the_checker_finds_an_unsafe_load_under_any_name(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text(
        "import torch\nimport pickle as pk\nimport numpy as np\nimport pandas as pd\n"
        "from torch import load\nfrom torch.serialization import load as tload\n"
        "a = torch.load('w.pt')\n"  # 7
        "b = torch.load('w.pt', weights_only=True)\n"
        "c = load('w.pt')\n"  # 9
        "d = pk.loads(b'')\n"  # 10
        "e = torch.serialization.load('w.pt')\n"  # 11
        "f = tload('w.pt', weights_only=False)\n"  # 12
        "g = pd.read_pickle('x.pkl')\n"  # 13
        "h = np.load('x.npy')\n"
        "i = np.load('x.npy', allow_pickle=True)\n"  # 15
    )
    assert [hit.split(": ")[-1] + f"@{hit.split(':')[-2]}" for hit in calls_loading_pickles(source)] == [
        "torch.load@7",
        "torch.load@9",
        "pickle.loads@10",
        "torch.serialization.load@11",
        "torch.serialization.load@12",
        "pandas.read_pickle@13",
        "numpy.load@15",
    ]
    # A library may rely on torch's default; turning it off is still found.
    assert [h.split(": ")[-1] for h in calls_loading_pickles(source, ours=False)] == [
        "pickle.loads",
        "torch.serialization.load",
        "pandas.read_pickle",
        "numpy.load",
    ]


def pickled_copy(model_dir: Path, dest: Path) -> Path:
    """``model_dir`` with its safetensors weights replaced by a pickled state dict (an old-style checkpoint)."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(model_dir, dest)
    for weights in dest.glob("*.safetensors"):
        name = "pytorch_model.bin" if weights.name == "model.safetensors" else weights.with_suffix(".bin").name
        torch.save(load_file(weights), dest / name)
        weights.unlink()
    return dest


@pytest.mark.model
def test_a_base_model_with_pickled_weights_is_refused(tiny_model_dir, tmp_path):
    from llmcls.config.catalog import model_spec
    from llmcls.model.base import materialize

    folder = pickled_copy(tiny_model_dir, tmp_path / "old-model")
    with pytest.raises(LlmclsError, match=r"pickle files \['pytorch_model.bin'\].*safetensors only"):
        materialize(model_spec(str(folder)), ("local",), tmp_path / "base")
    assert not (tmp_path / "base").exists()


@pytest.mark.model
def test_a_trained_model_with_pickled_weights_is_refused(trained_tiny, tmp_path):
    from llmcls.model.store import load_trained_model

    folder = pickled_copy(trained_tiny / "models" / "classifier", tmp_path / "classifier")
    with pytest.raises(LlmclsError, match=r"adapter_model.bin.*safetensors only"):
        load_trained_model(folder, trained_tiny / "models" / "base")


@pytest.mark.model
def test_remote_code_stays_off_unless_set(tiny_model_dir, tmp_path, monkeypatch):
    import transformers

    from llmcls.config.catalog import model_spec
    from llmcls.config.params import load_params
    from llmcls.model.base import load_tokenizer, materialize, weights_location

    assert load_params(ROOT / "params.yaml").model.trust_remote_code is False
    record = materialize(model_spec(str(tiny_model_dir)), ("local",), tmp_path / "base")
    assert record["trust_remote_code"] is False
    _, kwargs = weights_location(tmp_path / "base")
    assert kwargs["trust_remote_code"] is False and kwargs["use_safetensors"] is True
    seen = []
    original = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(
        transformers.AutoTokenizer,
        "from_pretrained",
        lambda *a, **k: seen.append(k.get("trust_remote_code")) or original(*a, **k),
    )
    load_tokenizer(tmp_path / "base")
    assert seen == [False]
    trusted = materialize(model_spec(str(tiny_model_dir)), ("local",), tmp_path / "trusted", trust_remote_code=True)
    assert trusted["trust_remote_code"] is True
    # The folder's record asks for remote code; only the caller can grant it (params / --trust-remote-code).
    with pytest.raises(LlmclsError, match="--trust-remote-code"):
        weights_location(tmp_path / "trusted")
    with pytest.raises(LlmclsError, match="--trust-remote-code"):
        load_tokenizer(tmp_path / "trusted")
    assert weights_location(tmp_path / "trusted", trust_remote_code=True)[1]["trust_remote_code"] is True


@pytest.mark.parametrize("escape", ["dotdot", "symlink", "symlinked-folder", "absolute"])
def test_custom_files_cannot_escape_data_custom(escape, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    custom = tmp_path / "data" / "custom"
    custom.mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    sentiment_frame(5).to_csv(outside / "train.csv", index=False)
    path = {
        "dotdot": "data/custom/../../secret/train.csv",
        "symlink": "data/custom/link.csv",
        "symlinked-folder": "data/custom/linked/train.csv",
        "absolute": str(outside / "train.csv"),
    }[escape]
    if escape == "symlink":
        (custom / "link.csv").symlink_to(outside / "train.csv")
    if escape == "symlinked-folder":
        (custom / "linked").symlink_to(outside, target_is_directory=True)
    params = write_params(
        tmp_path, dataset="custom", **{"custom.train_path": path, "custom.text_columns": ["sentence"]}
    )
    result = CliRunner().invoke(stage("fetch"), ["--params", str(params), "--data", "data/custom", "--out", "raw"])
    assert result.exit_code == 1 and "lies outside data/custom" in result.output, result.output
    assert not (tmp_path / "raw").exists()


@pytest.mark.model
def test_an_exported_folder_holds_no_code_but_the_projects_modeling_file(trained_tiny, tmp_path, monkeypatch):
    from llmcls.cli.main import main as llmcls_main

    monkeypatch.chdir(trained_tiny)
    result = CliRunner().invoke(llmcls_main, ["export", "--out", str(tmp_path / "export")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    export = tmp_path / "export"
    files = {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()}
    code = {f for f in files if not f.endswith((".json", ".safetensors", ".md", ".txt", ".model", ".jinja", MARKER))}
    assert code == {"modeling_llmcls.py"}, files
    assert (export / "modeling_llmcls.py").read_bytes() == (ROOT / "src/llmcls/model/modeling_llmcls.py").read_bytes()
    auto_map = json.loads((export / "config.json").read_text())["auto_map"]
    assert {v.split(".")[0] for v in auto_map.values()} == {"modeling_llmcls"}, auto_map


@pytest.mark.model
def test_predict_writes_its_out_and_nothing_else(trained_tiny, tmp_path, monkeypatch):
    from llmcls.cli.main import main as llmcls_main

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rows = sentiment_frame(2).rename(columns={"sentence": "text"})
    rows["text"] = ["../../evil.csv", "/tmp/x", "good film", "a\\..\\b"]  # path-like texts
    rows.insert(0, "id", ["../../../etc/passwd", "/abs/id", "..", "out.csv"])  # path-like ids
    rows.to_csv(work / "in.csv", index=False)
    watched = [work, tmp_path, trained_tiny]
    before = {str(p) for folder in watched for p in folder.rglob("*")}
    args = ["predict", "--model", str(trained_tiny / "models/classifier"), "--input", "in.csv"]
    result = CliRunner().invoke(llmcls_main, [*args, "--id-column", "id", "--out", "preds/p.csv"])
    assert result.exit_code == 0, result.output
    after = {str(p) for folder in watched for p in folder.rglob("*")}
    assert after - before == {str(work / "preds"), str(work / "preds" / "p.csv")}
    # A refused run (an --out of a kind predict cannot write) leaves nothing either.
    result = CliRunner().invoke(llmcls_main, [*args, "--out", "preds/p.exe"])
    assert result.exit_code == 1 and {str(p) for folder in watched for p in folder.rglob("*")} == after
