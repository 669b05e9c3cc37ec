"""`llmcls tune`: hyperparameter search with Optuna, each trial a DVC experiment.

Optuna proposes (TPE by default), DVC runs: trial N of study S is the experiment ``S-N`` (`dvc exp show` lists
it, `dvc exp apply S-N` takes the best), run like any sweep point: `dvc exp run --temp` here, or a job of the
sweep backends (experiments/cluster.py). Its value is the validation metric train.metric_for_best picks (never
test). The study lives in a real Optuna storage (a SQLite file by default, an RDB URL on a cluster), so a second
`llmcls tune` with the same study continues it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from llmcls.core.errors import LlmclsError
from llmcls.core.names import redact
from llmcls.evaluate.metrics import GREATER_IS_BETTER, metric_for_best
from llmcls.experiments.runs import LLM_METRICS, exp_ref, file_at, task_of
from llmcls.train.pruning import PRUNED_AT, STORAGE_ENV, TRIAL_ENV

DEFAULT_STORAGE = "sqlite:///tune.db"
LOGS = Path(".dvc/tmp/llmcls-tune")


class _Space(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Range(_Space):
    """A numeric range: low < high, and low > 0 on a log scale."""

    log: bool = False

    @model_validator(mode="after")
    def _check(self):
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"needs low < high{' and low > 0 (log)' if self.log else ''}")
        return self


class FloatSpace(_Range):
    type: Literal["float"]
    low: float
    high: float


class IntSpace(_Range):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1


class ChoiceSpace(_Space):
    type: Literal["choice"]
    choices: Annotated[list[Any], Field(min_length=1)]


Space = Annotated[FloatSpace | IntSpace | ChoiceSpace, Field(discriminator="type")]
_SPACES = TypeAdapter(dict[str, Space])


def parse_param(text: str) -> tuple[str, dict[str, Any]]:
    """``KEY=float:LOW:HIGH[:log]`` | ``KEY=int:LOW:HIGH[:log]`` | ``KEY=choice:A,B,...`` as a space mapping."""
    from llmcls.experiments.sweep import parse_value

    key, sep, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    if not sep or not key.strip() or kind not in ("float", "int", "choice") or not rest:
        raise LlmclsError(
            f"--param {text!r}: expected KEY=float:LOW:HIGH[:log], KEY=int:LOW:HIGH[:log] or KEY=choice:A,B,..."
        )
    if kind == "choice":
        return key.strip(), {"type": "choice", "choices": [parse_value(v.strip()) for v in rest.split(",")]}
    parts = rest.split(":")
    space: dict[str, Any] = {"type": kind, "low": parts[0], "high": parts[1] if len(parts) > 1 else None}
    if parts[2:] == ["log"]:
        space["log"] = True
    elif len(parts) > 2:
        raise LlmclsError(f"--param {text!r}: the only option after LOW:HIGH is :log")
    return key.strip(), space


def search_space(file_text: str | None, params: Sequence[str], known: Mapping[str, Any]) -> dict[str, Any]:
    """The search space of a YAML file ({key: {type, low, high, log} | {type: choice, choices}}) and --param
    options (which win), checked against params.yaml's keys: every problem in one error."""
    from llmcls.config.params import read_yaml

    raw = dict(read_yaml(file_text) or {}) if file_text else {}
    raw |= dict(parse_param(p) for p in params)
    if not raw:
        raise LlmclsError("an empty search space: give --space FILE.yaml or --param KEY=float:LOW:HIGH ...")
    problems = [f"{key}: not a params.yaml key" for key in raw if key not in known]
    try:
        spaces = _SPACES.validate_python(raw)
    except ValidationError as error:
        problems += [f"{'.'.join(str(p) for p in e['loc'][:1])}: {e['msg']}" for e in error.errors()]
        spaces = {}
    if problems:
        raise LlmclsError("search space:\n  " + "\n  ".join(problems))
    return spaces


def suggest(trial: Any, spaces: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's values for each key."""
    values = {}
    for key, space in spaces.items():
        if isinstance(space, FloatSpace):
            values[key] = trial.suggest_float(key, space.low, space.high, log=space.log)
        elif isinstance(space, IntSpace):
            values[key] = trial.suggest_int(key, space.low, space.high, step=space.step, log=space.log)
        else:
            values[key] = trial.suggest_categorical(key, space.choices)
    return values


def objective_metric(reference: Mapping[str, Any]) -> tuple[str, str]:
    """(validation metric, "maximize" | "minimize"): train.metric_for_best for the run's task."""
    metric = metric_for_best(str(reference.get("train.metric_for_best", "auto")), task_of(reference))
    return metric, "maximize" if GREATER_IS_BETTER[metric] else "minimize"


def trial_name(study: str, number: int) -> str:
    return f"{study}-{number}"


def open_study(name: str, storage: str, direction: str, metric: str, seed: int, prune: bool):
    """Create or load the study; a loaded one must optimise the same metric the same way."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage_obj = _storage(storage)
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # batches of parallel trials differ
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0) if prune else optuna.pruners.NopPruner()
    study = optuna.create_study(
        study_name=name, storage=storage_obj, sampler=sampler, pruner=pruner, direction=direction, load_if_exists=True
    )
    stored = study.user_attrs.get("metric")
    if stored is None:
        study.set_user_attr("metric", metric)
    elif stored != metric or study.direction.name.lower() != direction:
        raise LlmclsError(
            f"study {name!r} in {redact(storage)} optimises val {stored} ({study.direction.name.lower()}); this run "
            f"would optimise val {metric} ({direction}): use another --study"
        )
    return study


HEARTBEAT_S, GRACE_S = 30, 120  # a running trial's driver beats every 30 s; 2 min of silence: it is dead


def _ask(study: Any, count: int) -> list[Any]:
    """``count`` new trials. Optuna warns that its heartbeat is meant for Study.optimize: here `heartbeats`
    beats for ask-and-tell trials instead, so the warning is not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)
        return [study.ask() for _ in range(count)]


@contextmanager
def heartbeats(study: Any, trials: Sequence[Any]) -> Iterator[None]:
    """Beat for ``trials`` while their experiments run, so another tune of the same study (another shell,
    another host) fails only trials whose driver really stopped."""
    storage, ids, done = study._storage, [t._trial_id for t in trials], threading.Event()

    def beat() -> None:
        while True:
            for trial_id in ids:
                with contextlib.suppress(Exception):  # a trial told meanwhile, a storage blip: next beat
                    storage.record_heartbeat(trial_id)
            if done.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _storage(url: str):
    """An RDB storage; a SQLite file's folder is created first."""
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        # Heartbeats: a trial whose driver stopped beating for GRACE_S is stale; one still beating is not.
        with warnings.catch_warnings():  # "experimental" since optuna 2.9, and what this needs: not news to users
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as error:  # SQLAlchemy's errors for a bad URL or an unreachable database vary
        raise LlmclsError(f"--storage {redact(url)}: {redact(str(error))}") from None


@dataclass(frozen=True)
class Outcome:
    """A trial's end: its value, or pruned, or failed (with why)."""

    value: float | None = None
    pruned: bool = False
    error: str = ""


def read_value(project: Path, commit: str, name: str, metric: str) -> float | None:
    """The experiment's validation ``metric`` (metrics/eval.json at its ref), None if it has none."""
    text = file_at(exp_ref(commit, name), LLM_METRICS, cwd=str(project))
    if text is None:
        return None
    value = json.loads(text).get("val", {}).get(metric)
    return float(value) if value is not None else None


def run_local(project: Path, name: str, overrides: Sequence[str], env: Mapping[str, str]) -> str:
    """One trial as `dvc exp run --temp` (the workspace is left as it is); its output goes to a log file.
    Returns the last lines of a failure, "" on success."""
    log = project / LOGS / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = ["dvc", "exp", "run", "--temp", "-n", name, *[a for o in overrides for a in ("-S", o)]]
    with log.open("w") as handle:
        handle.write(shlex.join(command) + "\n")
        handle.flush()
        result = subprocess.run(command, cwd=project, stdout=handle, stderr=subprocess.STDOUT, env=os.environ | env)
    if result.returncode == 0:
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f"{lines[-1] if lines else 'failed'} (log: {log})"


def tune(
    project: Path,
    study: Any,
    spaces: Mapping[str, Any],
    extra: Mapping[str, Any],
    trials: int,
    metric: str,
    storage: str,
    prune: bool,
    run_batch: Callable[[list[tuple[str, tuple[str, ...], dict[str, str]]]], dict[str, str]],
    batch_size: int,
    echo: Callable[[str], None],
    validate: Callable[[str, Mapping[str, Any]], Any] = lambda name, settings: None,
) -> None:
    """Ask, run, tell until the study has ``trials`` finished (complete or pruned) trials. ``run_batch`` runs
    [(name, overrides, env)] and returns {name: "" | why it failed}; ``validate(name, settings)`` raises an
    LlmclsError for a trial whose params would be invalid (it is failed without running). The storage URL
    reaches trials through the environment (STORAGE_ENV), never written into a job's files."""
    import optuna
    from optuna.trial import TrialState

    from llmcls.experiments.sweep import override_value

    # Inherited by every trial (dvc exp run here, submitit / sbatch jobs), and written into none of their files.
    os.environ[STORAGE_ENV] = storage
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    # A tune killed mid-trial left it running: once its heartbeat is GRACE_S old it is failed (and redone);
    # a trial another live tune is running keeps beating and is left alone.
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    for number in before - {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}:
        echo(f"# trial {number}: its tune stopped (no heartbeat for {GRACE_S} s), marked failed")
    finished = failed = 0  # in this run: a study whose trials all fail stops instead of asking for ever
    while (done := len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))) < trials:
        asked = _ask(study, min(batch_size, trials - done))
        batch, names, invalid = [], {}, {}
        for trial in asked:
            values = suggest(trial, spaces)
            name = trial_name(study.study_name, trial.number)
            names[name] = trial
            overrides = tuple(f"{k}={override_value(v)}" for k, v in (dict(extra) | values).items())
            # The storage's trial id (Optuna keeps it private): what the train stage reopens the trial with.
            env = {TRIAL_ENV: json.dumps({"study": study.study_name, "trial_id": trial._trial_id})}
            echo(f"# trial {trial.number} ({name}): {', '.join(f'{k}={override_value(v)}' for k, v in values.items())}")
            try:
                validate(name, dict(extra) | values)
            except LlmclsError as error:
                invalid[name] = f"invalid params: {error.format_message()}"
                continue
            batch.append((name, overrides, env if prune else {}))
        with heartbeats(study, asked):
            failures = (run_batch(batch) if batch else {}) | invalid
        for name, trial in names.items():
            value = read_value(project, commit, name, metric) if not failures.get(name) else None
            finished += value is not None
            if value is not None:
                study.tell(trial, value)
                echo(f"# trial {trial.number} ({name}): val {metric} {value:.4f}")
            elif (step := study.trials[trial.number].user_attrs.get(PRUNED_AT)) is not None:
                finished += 1
                study.tell(trial, state=TrialState.PRUNED)
                echo(f"# trial {trial.number} ({name}): pruned at step {step}")
            else:
                failed += 1
                why = failures.get(name) or f"no val {metric} recorded"
                study.tell(trial, state=TrialState.FAIL)
                echo(f"# trial {trial.number} ({name}) FAILED: {why}")
                if failed >= trials or (not finished and failed >= batch_size):
                    raise LlmclsError(f"{failed} trial(s) failed and {finished} finished in this run; the last: {why}")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise LlmclsError(f"study {study.study_name!r} has no complete trial (all pruned or failed)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        best = study.best_trial
    echo(
        f"# best: trial {best.number} ({trial_name(study.study_name, best.number)}) val {metric} {best.value:.4f}, "
        + ", ".join(f"{k}={_shown(v)}" for k, v in best.params.items())
    )


def study_section(name: str, storage: str, figures: Path, relative_to: Path) -> str:
    """The report's section for a study: trials by state, the best trial, parameter importances and the
    optimisation history as a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=_storage(storage))
    except KeyError:
        raise LlmclsError(f"no study {name!r} in {redact(storage)} (llmcls tune --study {name} makes it)") from None
    metric = study.user_attrs.get("metric", "value")
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    lines = [f"## Hyperparameter search: {name}", ""]
    lines.append(
        f"Optuna study `{name}` ({redact(storage)}), {study.direction.name.lower()} val {metric}: "
        + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        + "."
    )
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "\n".join([*lines, "", "No trial has finished yet."])
    best = study.best_trial
    lines += [
        "",
        f"**Best: trial {best.number}** (`dvc exp apply {trial_name(name, best.number)}`): val {metric} "
        f"{best.value:.4f}",
        "",
    ]
    lines += ["| parameter | best value | importance |", "|---|---|---|"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importances = optuna.importance.get_param_importances(study) if len(complete) > 1 else {}
        except (RuntimeError, ValueError):  # every trial with the same value: nothing to attribute
            importances = {}
        for key, value in best.params.items():
            share = importances.get(key)
            lines.append(f"| {key} | {_shown(value)} | {'' if share is None else f'{share:.2f}'} |")
        lines += ["", "| trial | experiment | state | val " + metric + " | " + " | ".join(best.params) + " |"]
        lines.append("|---" * (4 + len(best.params)) + "|")
        for trial in study.trials:
            value = "" if trial.value is None else f"{trial.value:.4f}"
            cells = [str(trial.number), trial_name(name, trial.number), trial.state.name.lower(), value]
            lines.append("| " + " | ".join(cells + [_shown(trial.params.get(k, "")) for k in best.params]) + " |")
        axes = optuna.visualization.matplotlib.plot_optimization_history(study, target_name=f"val {metric}")
    figures.mkdir(parents=True, exist_ok=True)
    figure = figures / f"tune_history_{name}.png"
    axes.figure.savefig(figure, dpi=100, bbox_inches="tight")
    plt.close(axes.figure)
    lines += ["", f"![optimisation history]({figure.relative_to(relative_to).as_posix()})"]
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """A trial's value for a table: floats to 4 significant digits (TPE draws 0.0005176340429875835)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
