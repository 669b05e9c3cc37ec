"""Shared fixtures: a tiny randomly initialised Llama with a tiny trained tokenizer, and tiny datasets."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
BIN = str(Path(sys.executable).parent)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never wait on the hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Two xdist workers each start stage processes that use every core: idle OpenMP threads that spin for their
# next task then steal the core from the other worker's process. Sleeping at once costs a tiny model nothing.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

POSITIVE = [
    "a great and moving film",
    "wonderful acting and a sharp script",
    "i loved every minute of it",
    "funny , warm and smart",
    "a delight from start to finish",
    "brilliant and beautifully shot",
]
NEGATIVE = [
    "a dull and tedious mess",
    "the plot makes no sense at all",
    "i was bored the whole time",
    "awful dialogue and flat acting",
    "a waste of two hours",
    "clumsy , loud and empty",
]


# The pipeline's stages as click commands with dvc.yaml's paths, relative to a project folder, in order
# (fetch reads data/custom); a test runs a prefix of them or all.
STAGE_STEPS = [
    ("fetch", "--data", "data/custom", "--out", "data/raw"),
    ("fetch_model", "--out", "models/base"),
    ("preprocess", "--raw", "data/raw", "--base", "models/base", "--out", "data/processed"),
    ("split", "--processed", "data/processed", "--out", "data/split"),
    ("probe", "--split", "data/split", "--base", "models/base", "--out", "data/probe"),
    (
        "train",
        *("--split", "data/split", "--base", "models/base", "--out", "models/classifier"),
        *("--live", "metrics/train", "--checkpoints", "models/checkpoints", "--probe", "data/probe"),
    ),
    (
        "evaluate",
        *("--split", "data/split", "--base", "models/base", "--model", "models/classifier"),
        *("--metrics", "metrics/eval.json", "--report", "metrics/report.json", "--predictions", "metrics/predictions"),
    ),
    (
        "baseline",
        *("--split", "data/split", "--metrics", "metrics/baseline/eval.json"),
        *("--report", "metrics/baseline/report.json", "--predictions", "metrics/baseline/predictions"),
    ),
    (
        "ensemble",
        *("--split", "data/split", "--llm", "metrics/predictions", "--baseline", "metrics/baseline/predictions"),
        *("--metrics", "metrics/ensemble/eval.json", "--report", "metrics/ensemble/report.json"),
        *("--predictions", "metrics/ensemble/predictions"),
    ),
    (
        "submit",
        *("--split", "data/split", "--llm", "metrics/predictions/test.csv"),
        *("--baseline", "metrics/baseline/predictions/test.csv"),
        *("--ensemble", "metrics/ensemble/predictions/test.csv", "--out", "data/submission.csv"),
    ),
]


def pytest_collection_modifyitems(config, items):
    """The slow end-to-end tests first: under `make test`'s two workers the longest start early instead of
    finishing the run alone while the other worker idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def warm_kernels():
    """Tests count forwards and compare in-process runs: the process's one throwaway CPU forward
    (model/inference.warm_up) counts as done; test_inference resets it to test it."""
    from llmcls.model import inference

    inference._WARM["cpu"] = True


def stage(name: str):
    """The click command of stages/<name>.py (stages are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def train_tiny_project(root: Path, model_dir: Path) -> Path:
    """A project folder after fetch..train of the tiny model on a custom CSV (text, label): a LoRA adapter in
    models/classifier beside models/base, what predict and export read."""
    from click.testing import CliRunner

    (root / "data" / "custom").mkdir(parents=True)
    sentiment_frame(12).rename(columns={"sentence": "text"}).to_csv(root / "data/custom/train.csv", index=False)
    overrides = tiny_train_overrides(model_dir) | {"dataset": "custom"}
    overrides["custom.train_path"] = "data/custom/train.csv"
    params = str(write_params(root, **overrides))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name, *args in STAGE_STEPS[:6]:  # up to train
            result = CliRunner().invoke(stage(name), ["--params", params, *args], catch_exceptions=False)
            assert result.exit_code == 0, f"{name}: {result.output}"
    return root


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, tiny_model_dir) -> Path:
    return built_once(tmp_path_factory, "trained-tiny", lambda root: train_tiny_project(root, tiny_model_dir))


def custom_params(**settings):
    """params.yaml's `custom` section with ``settings`` over it (the file holds the only defaults)."""

    from llmcls.config.params import load_params

    return load_params(ROOT / "params.yaml").custom.replace(**settings)


def sentiment_frame(n_per_class: int = 30) -> pd.DataFrame:
    """A small separable two-class table: column `sentence`, label 0/1 (SST-2's raw layout)."""
    rows = []
    for i in range(n_per_class):
        rows.append((f"{POSITIVE[i % len(POSITIVE)]} number {i}", 1))
        rows.append((f"{NEGATIVE[i % len(NEGATIVE)]} number {i}", 0))
    return pd.DataFrame(rows, columns=["sentence", "label"])


def build_tiny_model(folder: Path) -> Path:
    """Save a 2-layer Llama (random weights) and a byte-level BPE tokenizer trained on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = (
        POSITIVE + NEGATIVE + ["Please carefully read the following reference text and determine categories answer"]
    )
    tokenizer.train_from_iterator(corpus * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def session_root(tmp_path_factory) -> Path:
    """The temporary folder of this whole pytest run: shared by its xdist workers (each has a subfolder)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``root/name``, built by ``build`` once per pytest run: the first worker to ask builds it under a file lock,
    the others wait and share it (every worker building its own doubled the suite's costliest setups)."""
    from filelock import FileLock

    root = session_root(tmp_path_factory)
    folder, done = root / name, root / f"{name}.built"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another worker starts over
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "tiny-llama", build_tiny_model)


@pytest.fixture(scope="session")
def tiny_base_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model materialised the way fetch_model does it (a local-folder copy)."""
    from llmcls.config.catalog import model_spec
    from llmcls.model.base import materialize

    out = tmp_path_factory.mktemp("base") / "base"
    materialize(model_spec(str(tiny_model_dir)), ("local",), out)
    return out


def default_params(**overrides) -> dict:
    """The committed params.yaml as a mapping, with dotted-key overrides (as `dvc exp run -S` would)."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


def write_params(folder: Path, **overrides) -> Path:
    """Write params.yaml: the committed one with dotted-key overrides."""
    data = default_params(**overrides)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def tiny_train_overrides(model_dir: Path) -> dict:
    """Settings that train the tiny model in seconds."""
    return {
        "model.name": str(model_dir),
        "preprocess.max_length": 128,
        "train.max_steps": 6,
        "train.eval_steps": 3,
        "train.batch_size": 8,
        "train.learning_rate": 0.01,
        "train.precision": "fp32",
        "train.lora.r": 4,
        "evaluate.batch_size": 16,
    }


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command with the test environment's bin folder (dvc, accelerate, python) first on PATH."""
    full_env = os.environ | {"PATH": BIN + os.pathsep + os.environ["PATH"]} | (env or {})
    result = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def queue_status(project: Path) -> str:
    """`dvc queue status`, read again when it fails on a task file its worker is writing at that moment (DVC
    reads them without a lock: "unexpected error - Expecting value: line 1 column 1")."""
    for _ in range(5):
        result = run(["dvc", "queue", "status"], project, check=False)
        if result.returncode == 0 or "Expecting value" not in result.stderr:
            break
        time.sleep(0.5)
    if result.returncode != 0:
        raise AssertionError(f"dvc queue status failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait_for_queue(project, limit_s: float = 600) -> str:
    """Poll `dvc queue status` until nothing is queued or running; return the last status."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        status = queue_status(project)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(1)
    return status


def new_project(dest: Path, scratch: Path) -> Path:
    """The project's tracked files copied into a fresh git repo at ``dest`` (as a clone would have them)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    for path in (dest / "metrics").glob("*"):  # committed results of the default run are not this run's
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (dest / "dvc.lock").unlink(missing_ok=True)
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "test@llmcls"], dest)
    run(["git", "config", "user.name", "test"], dest)
    # This machine's datasets folder, as `llmcls setup` pins it (an empty one where ../shared is absent).
    datasets = SHARED if SHARED.is_dir() else scratch / "no-datasets"
    datasets.mkdir(exist_ok=True)
    run(["dvc", "remote", "add", "--local", "-f", "datasets", str(datasets)], dest)
    return dest


@pytest.fixture
def project_copy(tmp_path) -> Path:
    return new_project(tmp_path / "project", tmp_path)


def tiny_custom_project(project: Path, model_dir: Path) -> Path:
    """``project`` set up to train the tiny model on a custom CSV under data/custom/, committed."""
    data = sentiment_frame(30).rename(columns={"sentence": "review"})
    data.to_csv(project / "data" / "custom" / "reviews.csv", index=False)
    custom = {"dataset": "custom", "custom.train_path": "data/custom/reviews.csv", "custom.text_columns": ["review"]}
    write_params(project, **tiny_train_overrides(model_dir), **custom)
    commit_all(project)
    return project


@dataclass(frozen=True)
class Reproduced:
    """A tiny custom-data project after `dvc repro`, committed: what its first run printed, and where it is."""

    path: Path
    first_run: str


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory, tiny_model_dir) -> Reproduced:
    """One reproduced project for the whole session: the end-to-end tests copy it (reproduced_copy) instead of
    each running its own `dvc repro` from nothing."""

    def build(scratch: Path) -> None:
        project = tiny_custom_project(new_project(scratch / "project", scratch), tiny_model_dir)
        (scratch / "first_run.txt").write_text(run(["dvc", "repro"], project).stdout)
        commit_all(project, "reproduced")

    scratch = built_once(tmp_path_factory, "reproduced", build)
    return Reproduced(scratch / "project", (scratch / "first_run.txt").read_text())


@pytest.fixture
def reproduced_copy(reproduced, tmp_path) -> Path:
    """A private copy of the reproduced project (git history, DVC cache and outputs included)."""
    dest = tmp_path / "project"
    shutil.copytree(reproduced.path, dest, symlinks=True)
    return dest


def commit_all(repo: Path, message: str = "test") -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


def shared_remotes(project: Path, tmp_path: Path) -> Path:
    """``project`` with a bare git remote `origin` and a directory DVC remote `storage`, both pushed: what the
    nodes of a cluster clone and pull from."""
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], project)
    run(["git", "push", "-q", "-u", "origin", "HEAD"], project)
    run(["dvc", "remote", "add", "--local", "-f", "storage", str(tmp_path / "storage")], project)
    run(["dvc", "push", "-q"], project)
    return origin
