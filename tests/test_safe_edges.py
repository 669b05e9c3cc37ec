"""Where llmcls meets the user's own files, code, credentials and concurrent use: outputs replace only what
llmcls wrote, all or nothing; a model folder's Python never runs unasked; a storage password is shown nowhere;
names never escape; two writers or drivers end cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, sentiment_frame

from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import MARKER, Transaction, UnsafeOutput, staged_dir, staged_file


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones and .git included) with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def git_repo(folder: Path) -> Path:
    """A git repository with a tracked src/ file and a committed README."""
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "code.py").write_text("print('mine')\n")
    (folder / "README.md").write_text("mine\n")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=folder, check=True)
    return folder


def test_a_folder_is_replaced_only_when_new_empty_or_this_writers_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"irreplaceable")
    refused = pytest.raises(UnsafeOutput, match="photos: refusing to replace this folder: it is not empty")
    with refused, staged_dir(mine, "export") as tmp:
        (tmp / "model.safetensors").write_bytes(b"x")
    assert snapshot(mine) == {"holiday.jpg": hashlib.sha256(b"irreplaceable").hexdigest()}
    (tmp_path / "empty").mkdir()
    for target in ("new", "empty", "new"):  # new, empty, then this writer's own earlier output
        with staged_dir(tmp_path / target, "export") as tmp:
            (tmp / "a.txt").write_text(target)
    assert json.loads((tmp_path / "new" / MARKER).read_text()) == {"written_by": "export"}
    with pytest.raises(UnsafeOutput, match="not written .* as 'report'"), staged_dir(tmp_path / "new", "report"):
        pass
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(UnsafeOutput, match="it is a file"), staged_dir(tmp_path / "afile", "export"):
        pass
    assert (tmp_path / "afile").read_text() == "mine" and (tmp_path / "new" / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "new", "photos"]  # no temporaries


def test_the_repository_its_parents_and_tracked_folders_are_always_refused(tmp_path, monkeypatch):
    repo = git_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    before = snapshot(tmp_path)
    for target in (".", "src", "..", str(tmp_path), str(Path.home())):
        with pytest.raises(UnsafeOutput, match="refusing to replace"), staged_dir(target, "export"):
            pass
    # A tracked folder is refused even when it carries another writer's marker...
    (repo / "src" / MARKER).write_text(json.dumps({"written_by": "export"}))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    with pytest.raises(UnsafeOutput, match="tracked by git"), staged_dir(repo / "src", "report"):
        pass
    # ...and an earlier export that a user has since made a repository of (to push it, say).
    (tmp_path / "holder").mkdir()
    (tmp_path / "holder" / MARKER).write_text(json.dumps({"written_by": "export"}))
    shutil.copytree(repo, tmp_path / "holder" / "inner")
    with pytest.raises(UnsafeOutput, match="holds a git repository"), staged_dir(tmp_path / "holder", "export"):
        pass
    (repo / "src" / MARKER).unlink()
    shutil.rmtree(tmp_path / "holder")

    def work_tree(files):
        return {k: v for k, v in files.items() if not k.startswith("repo/.git/")}

    assert work_tree(snapshot(tmp_path)) == work_tree(before)


def test_a_committed_folder_of_the_same_writer_is_regenerated(tmp_path, monkeypatch):
    """llmcls report's figures are committed: its own marked folder is replaced, tracked or not."""
    repo = git_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    figures = repo / "metrics" / "report"
    with staged_dir(figures, "report") as tmp:
        (tmp / "old.png").write_bytes(b"old")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    with staged_dir(figures, "report") as tmp:
        (tmp / "new.png").write_bytes(b"new")
    assert sorted(p.name for p in figures.iterdir()) == [MARKER, "new.png"]


def dead_owner_token() -> str:
    """The owner token of a process that has ended."""
    from llmcls.core.processes import Owner, start_time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    owner = Owner(Owner.me().host, child.pid, start_time(child.pid) or 0)
    child.wait()
    return owner.token()


def test_only_llmcls_temporaries_of_dead_writers_are_cleaned(tmp_path):
    from llmcls.core.processes import Owner

    target = tmp_path / "p.csv"
    users = [".p.csv.abcd1234", ".p.csv.tmp", "p.csv.bak"]  # a user's files that look like temporaries
    for name in users:
        (tmp_path / name).write_text("user's")
    dead = tmp_path / f".p.csv.llmcls-{dead_owner_token()}-new-abcdef"
    live = tmp_path / f".p.csv.llmcls-{Owner.me().token()}-new-123456"
    reused = tmp_path / f".p.csv.llmcls-{Owner(Owner.me().host, os.getpid(), 1).token()}-new-0a0b0c"  # pid reused
    for leftover in (dead, live, reused):
        leftover.write_text("half")
    with staged_file(target) as tmp:
        tmp.write_text("done")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*users, live.name, "p.csv"]), left


WRITER = """
import sys
from llmcls.core.outputs import Transaction
with Transaction("test") as out:
    out.file(sys.argv[1]).write_text("new a")
    out.file(sys.argv[2]).write_text("new b")
"""


def run_writer(tmp_path: Path, fault: str) -> subprocess.CompletedProcess:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = os.environ | {"LLMCLS_FAULT": fault, "LLMCLS_FAULT_LOG": str(tmp_path / "landed.log")}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out" / "a.json"), str(tmp_path / "out" / "b.json")],
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_kill_between_the_renames_of_a_set_is_finished_by_the_next_write(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text("old a")
    (out / "b.json").write_text("old b")
    result = run_writer(tmp_path, "writer:rename:2:kill")
    assert result.returncode == -9, result.stderr
    assert (tmp_path / "landed.log").read_text() == "writer:rename:2:kill\n"
    # Mid-commit: a is in, b's old file was moved aside and its new one not yet in.
    assert (out / "a.json").read_text() == "new a" and not (out / "b.json").exists()
    with pytest.raises(RuntimeError), Transaction("test") as again:
        again.file(out / "a.json")  # opening the targets finishes the dead writer's commit
        raise RuntimeError("nothing written")
    assert [(out / n).read_text() for n in ("a.json", "b.json")] == ["new a", "new b"]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]


@pytest.mark.parametrize(
    "fault", ["writer:write:1:enospc", "writer:write:2:enospc", "writer:write:2:kill", "writer:rename:2:enospc"]
)
def test_a_full_disk_or_a_kill_before_the_commit_keeps_the_old_set_whole(tmp_path, fault):
    """Before the renames, or a rename that fails (the renames done are undone)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text("old a")
    (out / "b.json").write_text("old b")
    result = run_writer(tmp_path, fault)
    assert result.returncode != 0 and (tmp_path / "landed.log").read_text() == fault + "\n"
    if fault.endswith("enospc"):
        assert "No space left on device" in result.stderr or "no space left" in result.stderr
    assert [(out / n).read_text() for n in ("a.json", "b.json")] == ["old a", "old b"]
    if fault.endswith("enospc"):  # cleaned by the failing writer; a killed one's are cleaned by the next
        assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]


def test_two_writers_of_one_file_end_whole_with_no_traceback(tmp_path):
    target = tmp_path / "preds.csv"
    loop = textwrap.dedent(
        """
        import sys
        from llmcls.core.outputs import staged_file
        for i in range(150):
            with staged_file(sys.argv[1]) as tmp:
                tmp.write_text(sys.argv[2] * 20000)
        """
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", loop, str(target), tag], stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    errors = [w.communicate(timeout=300)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert target.read_text() in ("a" * 20000, "b" * 20000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]


def test_a_run_killed_while_writing_its_fingerprint_starts_clean(tmp_path):
    """The checkpoint folder holds only the temporary of a fingerprint whose writer was killed: not a stranger's
    folder (refused), a fresh start; the temporary is gone."""
    from llmcls.train.checkpoints import FINGERPRINT, resumable_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / f".{FINGERPRINT}.llmcls-{dead_owner_token()}-new-abcdef").write_text('{"fing')
    assert resumable_checkpoint(folder, "f") is None and not any(folder.iterdir())


def test_checkpoints_resume_only_from_a_complete_good_one(tmp_path):
    from llmcls.train.checkpoints import COMPLETE, FINGERPRINT, checkpoint_problem, resumable_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / FINGERPRINT).write_text(json.dumps({"fingerprint": "f"}))
    for step in (10, 20, 30):
        ckpt = folder / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{}")
        (ckpt / "adapter_model.safetensors").write_bytes(b"w" * step)
        files = {p.name: p.stat().st_size for p in ckpt.iterdir()}
        if step != 30:  # 30 was cut short before its marker (the weight averager's files came after the state)
            (ckpt / COMPLETE).write_text(json.dumps({"step": step, "files": files}))
    (folder / "checkpoint-20" / "adapter_model.safetensors").write_bytes(b"torn")  # damaged on disk
    assert checkpoint_problem(folder / "checkpoint-30").startswith("incomplete")
    assert checkpoint_problem(folder / "checkpoint-20").startswith("damaged")
    said = []
    assert resumable_checkpoint(folder, "f", say=lambda *a, **k: said.append(a[0])) == str(folder / "checkpoint-10")
    assert said == [
        "llmcls: skipping checkpoint checkpoint-30: incomplete (cut short while it was written)",
        "llmcls: skipping checkpoint checkpoint-20: damaged (adapter_model.safetensors is missing or changed size)",
    ]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(LlmclsError, match="did not write"):
        resumable_checkpoint(foreign, "f")
    assert (foreign / "notes.txt").read_text() == "mine"


def test_the_checkpoint_fingerprint_covers_precision_processes_and_declared_params(tmp_path):
    from llmcls.config.params import load_params
    from llmcls.train.checkpoints import fingerprint

    params = load_params(ROOT / "params.yaml")
    (tmp_path / "split").mkdir()
    (tmp_path / "base").mkdir()
    stamp = fingerprint(params, tmp_path / "split", tmp_path / "base", "fp32", 1)
    changed = [
        fingerprint(params, tmp_path / "split", tmp_path / "base", "bf16", 1),
        fingerprint(params, tmp_path / "split", tmp_path / "base", "fp32", 2),
        fingerprint(
            params.replace(evaluate=params.evaluate.replace(batch_size=3)),
            tmp_path / "split",
            tmp_path / "base",
            "fp32",
            1,
        ),
    ]
    assert stamp not in changed and len(set(changed)) == 3


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "x..y", "-rf", "a b", "refs.lock", ""])
def test_names_that_become_paths_or_refs_are_refused(name):
    from llmcls.core.names import check_name

    with pytest.raises(LlmclsError, match="one folder and one git ref"):
        check_name(name, "--study")
    assert check_name("sst2-gemma3-270m-lora-n2000-s42", "x") == "sst2-gemma3-270m-lora-n2000-s42"


def test_storage_passwords_are_masked():
    from llmcls.core.names import redact

    assert redact("postgresql://me:s3cr%40t@db:5432/optuna failed") == "postgresql://me:***@db:5432/optuna failed"
    assert redact("sqlite:////abs/tune.db") == "sqlite:////abs/tune.db"


def test_tune_with_a_password_in_storage_shows_and_hands_it_nowhere(tmp_path, monkeypatch):
    """The URL goes to trials through the environment only; the console, errors and the trial's own settings
    never hold the password."""
    import optuna

    from llmcls.cli.main import main as llmcls_main
    from llmcls.experiments import tune as tuning
    from llmcls.train.pruning import STORAGE_ENV, TRIAL_ENV

    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".venv", ".git", "data", "models", "metrics"))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    monkeypatch.chdir(project)
    url = "postgresql://llmcls:s3cret@db.internal:5432/optuna"
    monkeypatch.setattr(tuning, "_storage", lambda u: optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/t.db"))
    seen = []

    def fake_run(project, name, overrides, env):
        seen.append((os.environ.get(STORAGE_ENV), env))
        return "boom"

    monkeypatch.setattr(tuning, "run_local", fake_run)
    args = ["tune", "--storage", url, "--param", "train.learning_rate=float:1e-4:1e-3", "--trials", "1", "--prune"]
    result = CliRunner().invoke(llmcls_main, args)
    assert result.exit_code == 1 and "boom" in result.output, result.output
    assert "s3cret" not in result.output and "llmcls:***@db.internal" in result.output
    assert seen and all(storage == url and "s3cret" not in json.dumps(env) for storage, env in seen)
    assert TRIAL_ENV in seen[0][1]
    bad = CliRunner().invoke(llmcls_main, ["tune", "--study", "../../x", "--storage", url])
    assert bad.exit_code != 0 and "one folder and one git ref" in bad.output


def test_each_sweep_point_is_validated_before_anything_is_queued(tmp_path, monkeypatch):
    from llmcls.cli.main import main as llmcls_main

    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".venv", ".git", "data", "models", "metrics"))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    monkeypatch.chdir(project)
    monkeypatch.setattr("llmcls.cli.experiments.exp_show", lambda scope: [])
    queued = []
    monkeypatch.setattr("llmcls.cli.experiments._run_dvc", queued.append)
    result = CliRunner().invoke(llmcls_main, ["sweep", "--seeds", "0,1", "--set", "train.learning_rate=-1"])
    assert result.exit_code == 1 and "train.learning_rate" in result.output, result.output
    assert queued == []


def test_stage_commands_hold_no_params_values_and_run_without_a_shell():
    import yaml

    from llmcls.cli.experiments import command_words

    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        assert "${" not in stage["cmd"], name
        argv, env = command_words(stage["cmd"])
        assert env == {"PYTHONPATH": "src"} and argv[0] == "python", name
    with pytest.raises(LlmclsError, match="without a shell"):
        command_words("python x.py; rm -rf ~")


def test_a_queueing_killed_with_gits_index_lock_is_put_right(tmp_path):
    """A sweep killed inside `dvc exp run --queue` while git held its index lock: the next sweep's repair removes
    the stale lock (no git runs there) and puts HEAD back on its branch, instead of failing on git's refusal."""
    from llmcls.experiments.queueing import MARKER as QUEUEING
    from llmcls.experiments.queueing import _state, repair

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    subprocess.run([*git, "add", "params.yaml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], cwd=tmp_path, check=True)
    (tmp_path / QUEUEING).parent.mkdir(parents=True)
    (tmp_path / QUEUEING).write_text(json.dumps(_state(tmp_path)))  # what guarded() writes before dvc runs
    subprocess.run(["git", "checkout", "-q", "--detach"], cwd=tmp_path, check=True)  # DVC, then killed...
    (tmp_path / ".git" / "index.lock").write_text("")  # ...with git inside its index update
    lines = repair(tmp_path)
    assert any(".git/index.lock" in line and "removed" in line for line in lines), lines
    head = subprocess.run(["git", "symbolic-ref", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert head.strip() == "refs/heads/main" and not (tmp_path / QUEUEING).exists()


def test_a_second_sweep_in_one_project_stops_with_a_clear_error(tmp_path, monkeypatch):
    from llmcls.cli.experiments import EXPERIMENTS_LOCK
    from llmcls.core.processes import exclusive

    monkeypatch.chdir(tmp_path)
    with exclusive(EXPERIMENTS_LOCK, "llmcls sweep"):
        code = "from llmcls.cli.main import main; main(['sweep', '--dry-run'])"
        other = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert f"llmcls sweep (process {os.getpid()}) is running in this project" in other.stderr


def test_generation_backs_off_when_a_batch_runs_out_of_memory():
    import torch

    from llmcls.evaluate.generation import generate_all

    sizes = []

    class Tokenizer:
        pad_token_id, eos_token_id = 0, 1

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(str(int(i)) for i in ids)

    class LM:
        def generate(self, input_ids, attention_mask, max_new_tokens, **settings):
            sizes.append(len(input_ids))
            if len(input_ids) > 3:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return torch.cat([input_ids, input_ids[:, -1:] + 100], dim=1)  # left-padded: last is real

    prompts = [[i + 2] * (1 + i % 3) for i in range(10)]
    answers: dict[int, str] = {}
    generate_all(LM(), prompts, Tokenizer(), 1, 8, list(range(10)), answers, torch.device("cpu"))
    assert answers == {i: str(i + 102) for i in range(10)}
    assert sizes[0] == 8 and sizes[-1] <= 3 and sizes == sorted(sizes, reverse=True)


# --- with a trained tiny model ---------------------------------------------------------------------------------


@pytest.mark.model
def test_export_refuses_the_repository_and_its_tracked_folders_and_deletes_nothing(trained_tiny, tmp_path, monkeypatch):
    from llmcls.cli.main import main as llmcls_main

    repo = git_repo(tmp_path / "repo")
    shutil.copytree(trained_tiny / "models", repo / "models")
    monkeypatch.chdir(repo)
    before = snapshot(repo)
    for out in (".", "src", "..", "models/classifier"):
        result = CliRunner().invoke(llmcls_main, ["export", "--out", out])
        assert result.exit_code == 1 and "refusing to replace this folder" in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(repo) == before
    # An export of its own may be replaced by the next one.
    for _ in range(2):
        assert CliRunner().invoke(llmcls_main, ["export", "--out", "exports/m"]).exit_code == 0
    assert json.loads((repo / "exports/m" / MARKER).read_text()) == {"written_by": "export"}


def evil_folder(export: Path, dest: Path) -> Path:
    """An exported model folder rewritten by a stranger: its config maps to its own .py, which writes a file
    when imported, and its record claims remote code is trusted."""
    shutil.copytree(export, dest)
    config = json.loads((dest / "config.json").read_text())
    config["model_type"] = "llmcls_stranger"  # no class of transformers' own: only the folder's code builds it
    config["auto_map"] = {
        "AutoConfig": "stranger.StrangerConfig",
        "AutoModelForSequenceClassification": "stranger.StrangerModel",
    }
    (dest / "config.json").write_text(json.dumps(config))
    (dest / "stranger.py").write_text(
        f"from pathlib import Path\nPath({str(dest.parent / 'PWNED')!r}).write_text('ran')\n"
        "from transformers import PretrainedConfig, PreTrainedModel\n"
        "class StrangerConfig(PretrainedConfig):\n    model_type = 'llmcls_stranger'\n"
        "class StrangerModel(PreTrainedModel):\n    config_class = StrangerConfig\n"
    )
    meta = json.loads((dest / "llmcls.json").read_text())
    meta["base_model"]["trust_remote_code"] = True
    (dest / "llmcls.json").write_text(json.dumps(meta))
    return dest


@pytest.fixture(scope="module")
def exported_tiny(trained_tiny, tmp_path_factory) -> Path:
    from llmcls.serve.export import export_model

    out = tmp_path_factory.mktemp("exported") / "export"
    export_model(trained_tiny / "models/classifier", trained_tiny / "models/base", out)
    return out


@pytest.mark.model
def test_a_model_folders_own_code_never_runs_unasked(exported_tiny, tmp_path):
    from llmcls.cli.main import main as llmcls_main
    from llmcls.serve import load_classifier

    folder = evil_folder(exported_tiny, tmp_path / "stranger" / "model")
    pwned = tmp_path / "stranger" / "PWNED"
    sentiment_frame(1).rename(columns={"sentence": "text"}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(LlmclsError, match="--trust-remote-code"):
        load_classifier(folder)
    for args in (
        ["predict", "--model", str(folder), "--input", str(tmp_path / "in.csv"), "--out", str(tmp_path / "p.csv")],
        ["export", "--model", str(folder), "--out", str(tmp_path / "again")],
    ):
        result = CliRunner().invoke(llmcls_main, args)
        assert result.exit_code == 1 and "--trust-remote-code" in result.output, result.output
    # The folder no longer claims trust, but still maps to its code: transformers is told not to run it.
    meta = json.loads((folder / "llmcls.json").read_text())
    meta["base_model"]["trust_remote_code"] = False
    (folder / "llmcls.json").write_text(json.dumps(meta))
    with pytest.raises(LlmclsError, match="--trust-remote-code"):
        load_classifier(folder)
    assert not pwned.exists()
    # The flag is the one way in (so the check above can fail): asked, the folder's code runs.
    with pytest.raises(Exception):  # noqa: B017 - the stranger's model is no classifier; that it ran is the point
        load_classifier(folder, trust_remote_code=True)
    assert pwned.read_text() == "ran"


@pytest.mark.model
def test_two_predicts_to_one_out_leave_a_whole_file_and_no_traceback(trained_tiny, tmp_path):
    rows = sentiment_frame(20).rename(columns={"sentence": "text"})
    rows.to_csv(tmp_path / "in.csv", index=False)
    command = [
        str(Path(sys.executable).parent / "llmcls"),
        "predict",
        "--model",
        str(trained_tiny / "models/classifier"),
        "--input",
        str(tmp_path / "in.csv"),
        "--out",
        str(tmp_path / "p.csv"),
    ]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert not any("Traceback" in err for _out, err in outputs)
    import pandas as pd

    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == len(rows) and table["predicted"].notna().all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "p.csv"]
