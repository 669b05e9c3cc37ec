"""`llmcls tune`: the search space, the ask-run-tell loop over an Optuna study (with fake runs), pruning inside
the train stage, heartbeats between two drivers, and 2 + 1 real trials of the tiny model as DVC experiments."""

import json
import subprocess
import time
from types import SimpleNamespace

import optuna
import pytest
from conftest import BIN, ROOT, run, shared_remotes

from llmcls.core.errors import LlmclsError
from llmcls.experiments import tune as tuning
from llmcls.experiments.sweep import flat_params
from llmcls.train.pruning import PRUNED_AT, OptunaPruning

REFERENCE = flat_params((ROOT / "params.yaml").read_text())


def test_search_space_from_yaml_and_the_command_line():
    text = (
        "train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}\n"
        "train.epochs: {type: int, low: 1, high: 3}\n"
    )
    spaces = tuning.search_space(text, ["train.lora.r=choice:4,8,16", "train.epochs=int:1:2"], REFERENCE)
    assert spaces["train.learning_rate"] == tuning.FloatSpace(type="float", low=1e-5, high=1e-3, log=True)
    assert spaces["train.lora.r"].choices == [4, 8, 16]
    assert spaces["train.epochs"].high == 2  # the command line wins over the file


def test_a_bad_search_space_is_one_error_naming_every_key():
    with pytest.raises(LlmclsError) as error:
        tuning.search_space(
            "train.lr: {type: float, low: 0.1, high: 0.2}\ntrain.epochs: {type: int, low: 3, high: 1}\n",
            ["train.learning_rate=float:0:1:log"],
            REFERENCE,
        )
    message = str(error.value)
    assert "train.lr: not a params.yaml key" in message
    assert "train.epochs" in message and "train.learning_rate" in message
    with pytest.raises(LlmclsError, match="KEY=float:LOW:HIGH"):
        tuning.parse_param("train.learning_rate=uniform(0,1)")


def test_the_objective_is_the_validation_metric_train_picks_the_best_checkpoint_by():
    assert tuning.objective_metric(REFERENCE) == ("accuracy", "maximize")
    assert tuning.objective_metric(REFERENCE | {"train.metric_for_best": "log_loss"}) == ("log_loss", "minimize")
    assert tuning.objective_metric(REFERENCE | {"dataset": "stsb"}) == ("pearson", "maximize")


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a").write_text("a")
    for args in (["add", "a"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    return tmp_path


def fake_runs(repo, score, fail=()):
    """A run_batch that records each trial as DVC would (an experiment ref whose metrics/eval.json has a val
    accuracy of ``score(overrides)``), except the names in ``fail``."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    seen = []

    def run_batch(batch):
        out = {}
        for name, overrides, _env in batch:
            seen.append((name, overrides))
            if name in fail:
                out[name] = "boom"
                continue
            metrics = {"val": {"accuracy": score(dict(o.split("=", 1) for o in overrides))}}
            (repo / "metrics").mkdir(exist_ok=True)
            (repo / "metrics" / "eval.json").write_text(json.dumps(metrics))
            git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
            subprocess.run([*git, "add", "metrics"], cwd=repo, check=True)
            subprocess.run([*git, "commit", "-qm", name], cwd=repo, check=True)
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
            subprocess.run(["git", "reset", "-q", "--hard", commit], cwd=repo, check=True)
            subprocess.run(["git", "update-ref", f"refs/exps/{commit[:2]}/{commit[2:]}/{name}", sha.strip()], cwd=repo)
            out[name] = ""
        return out

    return run_batch, seen


def test_the_loop_asks_runs_tells_resumes_and_counts_failed_trials_out(repo):
    storage = f"sqlite:///{repo}/tune.db"
    spaces = tuning.search_space(
        None, ["train.learning_rate=float:0.0001:0.01:log", "train.lora.r=choice:4,8"], REFERENCE
    )
    score = lambda o: 1 - abs(float(o["train.learning_rate"]) - 0.001)  # noqa: E731
    lines = []
    study = tuning.open_study("s", storage, "maximize", "accuracy", 0, False)
    batch, seen = fake_runs(repo, score, fail={"s-1"})
    tuning.tune(repo, study, spaces, {"train.seed": 3}, 3, "accuracy", storage, False, batch, 2, lines.append)
    assert [name for name, _ in seen] == ["s-0", "s-1", "s-2", "s-3"]  # s-1 failed: one more trial
    assert all("train.seed=3" in overrides for _, overrides in seen)
    assert any("s-1) FAILED: boom" in line for line in lines)
    again = tuning.open_study("s", storage, "maximize", "accuracy", 0, False)
    batch, seen = fake_runs(repo, score)
    tuning.tune(repo, again, spaces, {}, 5, "accuracy", storage, False, batch, 1, lines.append)
    assert [name for name, _ in seen] == ["s-4", "s-5"]  # continued to 5 finished trials
    states = [t.state.name for t in again.trials]
    assert states.count("COMPLETE") == 5 and states.count("FAIL") == 1
    with pytest.raises(LlmclsError, match="optimises val accuracy"):
        tuning.open_study("s", storage, "minimize", "log_loss", 0, False)


def test_a_study_whose_trials_all_fail_stops_with_the_reason(repo):
    storage = f"sqlite:///{repo}/tune.db"
    spaces = tuning.search_space(None, ["train.lora.r=choice:4,8"], REFERENCE)
    study = tuning.open_study("f", storage, "maximize", "accuracy", 0, False)
    batch, seen = fake_runs(repo, lambda o: 0.5, fail={"f-0", "f-1", "f-2"})
    with pytest.raises(LlmclsError, match="2 trial\\(s\\) failed and 0 finished in this run; the last: boom"):
        tuning.tune(repo, study, spaces, {}, 5, "accuracy", storage, False, batch, 2, lambda line: None)
    assert len(seen) == 2  # stopped after the first batch


def test_a_trial_behind_the_median_is_pruned_inside_training(tmp_path):
    storage = f"sqlite:///{tmp_path}/tune.db"
    study = tuning.open_study("p", storage, "maximize", "accuracy", 0, True)
    for good in (0.9, 0.8):  # two finished trials with curves: the median pruner's start
        trial = study.ask()
        trial.report(good, 4)
        study.tell(trial, good)
    state = SimpleNamespace(is_world_process_zero=True, global_step=4)
    fine = OptunaPruning(optuna.trial.Trial(study, study.ask()._trial_id), "accuracy")
    fine.on_evaluate(None, state, None, metrics={"eval_accuracy": 0.95})  # ahead: trains on
    behind = study.ask()
    callback = OptunaPruning(optuna.trial.Trial(study, behind._trial_id), "accuracy")
    with pytest.raises(LlmclsError, match="pruned by llmcls tune at step 4"):
        callback.on_evaluate(None, state, None, metrics={"eval_accuracy": 0.5})
    assert study.trials[behind.number].user_attrs[PRUNED_AT] == 4


def test_a_trial_whose_driver_beats_is_left_alone_and_a_silent_one_is_failed(tmp_path, monkeypatch):
    """Two tune drivers of one study: the stale-trial check another driver runs at its start fails only a trial
    whose heartbeat stopped (its driver died), never one whose driver is alive and beating."""
    monkeypatch.setattr(tuning, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(tuning, "GRACE_S", 1)
    study = tuning.open_study("h", f"sqlite:///{tmp_path}/tune.db", "maximize", "accuracy", 0, False)
    live, dead = tuning._ask(study, 2)
    study._storage.record_heartbeat(dead._trial_id)  # its driver beat once, then died
    with tuning.heartbeats(study, [live]):
        time.sleep(2.2)  # SQLite keeps heartbeats in whole seconds: 2 s past a 1 s grace
        optuna.storages.fail_stale_trials(study)
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {live.number: optuna.trial.TrialState.RUNNING, dead.number: optuna.trial.TrialState.FAIL}


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.model
def test_tune_runs_trials_as_experiments_resumes_and_reports_the_best(reproduced_copy, tmp_path):
    """2 trials as jobs (at once, each in its own clone, pushed and collected), then the study continues here
    to 3: both backends, one study."""
    project, llmcls = reproduced_copy, BIN + "/llmcls"
    shared_remotes(project, tmp_path)
    tune = [llmcls, "tune", "--study", "t", "--param", "train.learning_rate=float:0.001:0.05:log"]
    tune += ["--param", "train.lora.r=choice:2,4"]
    first = run([*tune, "--trials", "2", "--backend", "submitit-local", "-j", "2"], project)
    assert first.stdout.count("): val accuracy ") == 2 and "# best: trial " in first.stdout
    assert first.stdout.count("# collected ") == 2
    assert "ExperimentalWarning" not in first.stderr and "Heartbeat of storage" not in first.stderr, first.stderr
    assert sorted(run(["dvc", "exp", "list", "--name-only"], project).stdout.split()) == ["t-0", "t-1"]
    again = run([*tune, "--trials", "3"], project).stdout
    assert "trial 2 (t-2)" in again and "trial 1 " not in again
    assert len(run(["dvc", "exp", "list", "--name-only"], project).stdout.split()) == 3
    best = again.split("# best: trial ")[1].split()[0]
    run([llmcls, "report", "--study", "t"], project)
    report = (project / "metrics" / "report.md").read_text()
    assert f"**Best: trial {best}** (`dvc exp apply t-{best}`)" in report
    assert "3 complete" in report and (project / "metrics" / "report" / "tune_history_t.png").is_file()
    assert (
        subprocess.run(["git", "status", "--porcelain", "params.yaml"], cwd=project, capture_output=True).stdout == b""
    )
