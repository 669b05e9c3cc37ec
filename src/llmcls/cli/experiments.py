"""`llmcls sweep`, `llmcls tune` and `llmcls train-node`: running experiments, here or as cluster jobs."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from llmcls.config.params import load_params
from llmcls.core.errors import LlmclsError
from llmcls.core.processes import exclusive
from llmcls.experiments.cluster import BACKENDS
from llmcls.experiments.runs import exp_show, parse_exp_show

# Held by sweep and tune for their whole run: the queue repair, the workspace they switch, jobs.json and the
# study's stale-trial sweep never see two drivers at once in one project.
EXPERIMENTS_LOCK = ".dvc/tmp/llmcls-experiments.lock"


def _values(text: str | None) -> list[Any] | None:
    from llmcls.experiments.sweep import parse_value

    return None if text is None else [parse_value(v.strip()) for v in text.split(",") if v.strip()]


def _settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    from llmcls.experiments.sweep import parse_value

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LlmclsError(f"--set {pair!r}: expected KEY=VALUE, e.g. preprocess.prompt_wrapping=false")
        out[key.strip()] = parse_value(value.strip())
    return out


@dataclass(frozen=True)
class Backend:
    """Where `llmcls sweep` / `llmcls tune` run experiments: the five shared options as one value."""

    name: str  # local | submitit-local | slurm
    remote: str
    slurm_sets: tuple[str, ...]
    slurm_config: Path | None
    work_dir: Path

    def parameters(self) -> dict[str, Any]:
        """submitit's SLURM parameters: the config file's, then --slurm KEY=VALUE over them."""
        from llmcls.config.params import read_yaml

        text = self.slurm_config.read_text(encoding="utf-8") if self.slurm_config else ""
        return dict(read_yaml(text) or {}) | _settings(self.slurm_sets)


def _backend_options(func):
    """The job-backend options `llmcls sweep` and `llmcls tune` share, handed to the command as ``backend``."""
    options = [
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            default="local",
            show_default=True,
            help="local: this machine (DVC) | slurm: sbatch array jobs (submitit), each run in its own clone, "
            "pushed to --remote | submitit-local: those jobs as processes of this machine",
        ),
        click.option("--remote", default="origin", show_default=True, help="git remote jobs clone from and push to"),
        click.option("--slurm", "slurm_sets", multiple=True, help="KEY=VALUE submitit SLURM parameter (repeatable)"),
        click.option(
            "--slurm-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="a YAML of them"
        ),
        click.option(
            "--work-dir",
            default=".dvc/tmp/llmcls-jobs/clones",
            show_default=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="where jobs clone the repository (on every node: a shared or node-local disk)",
        ),
    ]

    @functools.wraps(func)
    def command(*args, backend, remote, slurm_sets, slurm_config, work_dir, **kwargs):
        return func(*args, backend=Backend(backend, remote, slurm_sets, slurm_config, work_dir), **kwargs)

    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.option("--seeds", default="0,42,123", show_default=True, help="train.seed values")
@click.option("--datasets", help="dataset values, e.g. sst2,r8 [default: params.yaml's]")
@click.option("--models", help="model.name values [default: params.yaml's]")
@click.option("--modes", help="train.mode values, e.g. lora,full [default: params.yaml's]")
@click.option("--train-sizes", help="split.train_size values, e.g. 100,500,1000,2000,all [default: params.yaml's]")
@click.option("--set", "sets", multiple=True, help="KEY=VALUE applied to every point (repeatable)")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--start/--no-start", default=False, help="start the queue (dvc queue start) after queueing")
@click.option("-j", "--jobs", default=1, show_default=True, help="experiments run at once (SLURM: array parallelism)")
@_backend_options
@click.option("--wait/--no-wait", default=None, help="wait for the jobs, then collect [default: submitit-local only]")
@click.option("--collect", is_flag=True, help="submit nothing: pull the sweep's finished experiments, name the rest")
@click.option("--dry-run", is_flag=True, help="print the commands without running them")
@exclusive(EXPERIMENTS_LOCK, "llmcls sweep")
def sweep(
    seeds,
    datasets,
    models,
    modes,
    train_sizes,
    sets,
    params_path,
    start,
    jobs,
    backend,
    wait,
    collect,
    dry_run,
) -> None:
    """Run the grid seeds x datasets x models x modes x train sizes as DVC experiments.

    Configurations that already ran, or are queued or running, are skipped; the exact commands are printed.
    With a job backend, a point whose job failed is submitted again and `--collect` brings finished ones here.
    """
    from llmcls.config.overrides import params_with
    from llmcls.core.names import check_name
    from llmcls.experiments.queueing import guarded, repair
    from llmcls.experiments.sweep import flat_params, grid, plan
    from llmcls.experiments.workers import recover

    project = Path.cwd()
    # A sweep killed inside `dvc exp run --queue` left the workspace detached, params.yaml half-changed: first.
    for line in repair(project, dry_run):
        click.echo(f"# {line}")
    load_params(params_path)  # a broken params.yaml fails here, not in every queued experiment
    reference = flat_params(Path(params_path).read_text(encoding="utf-8"))
    axes = {
        "dataset": _values(datasets) or [reference["dataset"]],
        "model.name": _values(models) or [reference["model.name"]],
        "train.mode": _values(modes) or [reference["train.mode"]],
        "split.train_size": _values(train_sizes) or [reference["split.train_size"]],
        "train.seed": _values(seeds) or [reference["train.seed"]],
    }
    extra = _settings(sets)
    unknown = [k for k in extra if k not in reference]
    if unknown:
        raise LlmclsError(f"--set: unknown params keys {unknown}")
    # A point left "running" by a dead worker would be skipped for good: released, it is queued again.
    runs, released = recover(parse_exp_show(exp_show("all-commits")), project, dry_run)
    for line in released:
        click.echo(f"# {line}")
    planned = plan(grid(axes, extra), extra, reference, runs)
    for item in planned:  # every point checked as its experiment would read it, before anything is queued
        check_name(item.name, "sweep point")
        if not item.skipped:
            params_with(params_path, dict(item.overrides), f"sweep point {item.name}")
    if collect or backend.name != "local":
        _job_sweep(project, backend, planned, jobs, wait, collect, dry_run)
        return
    if not dry_run:
        from llmcls.data.remotes import pin_datasets_folder

        pin_datasets_folder()  # the queued copies read the datasets folder through this machine's config
    queued = 0
    for item in planned:
        if item.skipped:
            click.echo(f"# skip {item.name}: {item.skipped}")
            continue
        click.echo(shlex.join(item.command()))
        queued += 1
        if not dry_run:
            with guarded(project):
                _run_dvc(item.command())
    # Points queued before (by a sweep whose worker died) need a worker too.
    waiting = queued + sum(1 for item in planned if (item.skipped or "").startswith("queued"))
    if start and waiting:
        command = ["dvc", "queue", "start", "-j", str(jobs)]
        click.echo(shlex.join(command))
        if not dry_run:
            _run_dvc(command)
    click.echo(f"# {queued} queued, {len(planned) - queued} skipped" + (" (dry run)" if dry_run else ""))


def _job_sweep(project: Path, backend: Backend, planned, jobs: int, wait, collect: bool, dry_run: bool) -> None:
    """The job backends of `llmcls sweep` (experiments/cluster.py), and --collect for any backend."""
    from llmcls.experiments import cluster

    remote = backend.remote
    if collect:
        failed = cluster.outcome(project, remote, [item.name for item in planned], click.echo)
        if failed:
            raise LlmclsError(f"{len(failed)} point(s) failed: run the same `llmcls sweep` to submit them again")
        return
    specs = cluster.plan_jobs(project, backend.name, planned, remote, backend.work_dir, click.echo)
    for spec in specs:
        click.echo(f"# job {spec.name}: git clone {spec.repo} {spec.clone} && git checkout {spec.commit}")
        for command in spec.commands():
            click.echo(f"#   {shlex.join(command)}")
    if dry_run or not specs:
        click.echo(f"# {len(specs)} job(s) to submit, {len(planned) - len(specs)} skipped" + " (dry run)" * dry_run)
        return
    submitted = cluster.submit(project, backend.name, specs, backend.parameters(), jobs, click.echo)
    if wait if wait is not None else backend.name == "submitit-local":
        cluster.wait(submitted)
        failed = cluster.outcome(project, remote, [job.name for job in submitted], click.echo)
        if failed:
            raise LlmclsError(f"{len(failed)} of {len(submitted)} job(s) failed: {', '.join(failed)}")
    else:
        click.echo(f"# {len(submitted)} job(s) submitted; `llmcls sweep ... --collect` with the same grid pulls them")


@click.command()
@click.option("--study", "study_name", default="tune", show_default=True, help="Optuna study (trial N: exp STUDY-N)")
@click.option(
    "--storage",
    default=None,
    envvar="LLMCLS_TUNE_STORAGE",
    help="Optuna storage URL: a SQLite file, or an RDB (postgresql://...) jobs on other nodes can reach; with a "
    "password, best set in LLMCLS_TUNE_STORAGE (it is shown masked and written nowhere) "
    "[default: sqlite:///tune.db in the project]",
)
@click.option(
    "--space",
    "space_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML search space: {params key: {type: float|int, low, high, log} | {type: choice, choices: [...]}}",
)
@click.option(
    "--param",
    "space_params",
    multiple=True,
    help="KEY=float:LOW:HIGH[:log] | KEY=int:LOW:HIGH[:log] | KEY=choice:A,B,... (repeatable; over --space)",
)
@click.option("--trials", default=20, show_default=True, help="finished trials the study should have (it continues)")
@click.option("--set", "sets", multiple=True, help="KEY=VALUE applied to every trial (repeatable)")
@click.option("--seed", default=0, show_default=True, help="the TPE sampler's seed")
@click.option(
    "--prune/--no-prune",
    default=False,
    help="stop trials behind the median at a validation (a pruned trial records no experiment)",
)
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("-j", "--jobs", default=1, show_default=True, help="trials at once (job backends; local runs one)")
@_backend_options
@exclusive(EXPERIMENTS_LOCK, "llmcls tune")
def tune(
    study_name,
    storage,
    space_path,
    space_params,
    trials,
    sets,
    seed,
    prune,
    params_path,
    jobs,
    backend,
) -> None:
    """Search hyperparameters with Optuna (TPE): each trial a DVC experiment, valued on the validation split by
    train.metric_for_best. Run again with the same --study to continue; `llmcls report --study` shows it."""
    from llmcls.config.overrides import params_with
    from llmcls.core.names import check_name, redact
    from llmcls.experiments import cluster
    from llmcls.experiments import tune as tuning
    from llmcls.experiments.sweep import flat_params

    project = Path.cwd()
    check_name(study_name, "--study")
    load_params(params_path)
    reference = flat_params(Path(params_path).read_text(encoding="utf-8"))
    extra = _settings(sets)
    if unknown := [k for k in extra if k not in reference]:
        raise LlmclsError(f"--set: unknown params keys {unknown}")
    text = space_path.read_text(encoding="utf-8") if space_path else None
    spaces = tuning.search_space(text, space_params, reference)
    metric, direction = tuning.objective_metric(reference | extra)
    storage = storage_url(storage, project)
    study = tuning.open_study(study_name, storage, direction, metric, seed, prune)
    click.echo(f"# study {study_name} ({redact(storage)}): {direction} val {metric} over {', '.join(spaces)}")
    if backend.name == "local":
        if jobs != 1:
            raise LlmclsError("--backend local runs one trial at a time: parallel trials need submitit-local or slurm")

        def run_batch(batch):
            return {name: tuning.run_local(project, name, overrides, env) for name, overrides, env in batch}

    else:
        make = cluster.spec_maker(project, backend.remote, backend.work_dir)
        parameters = backend.parameters()

        def run_batch(batch):
            specs = [make(*item) for item in batch]
            submitted = cluster.submit(project, backend.name, specs, parameters, jobs, click.echo)
            cluster.wait(submitted)
            failed = cluster.outcome(project, backend.remote, [job.name for job in submitted], click.echo)
            return {job.name: f"job failed (log: {job.log()})" if job.name in failed else "" for job in submitted}

    def validate(name, settings):
        return params_with(params_path, settings, f"trial {name}")

    tuning.tune(project, study, spaces, extra, trials, metric, storage, prune, run_batch, jobs, click.echo, validate)


def storage_url(storage: str | None, project: Path) -> str:
    """The storage URL with a SQLite file made absolute: trials run in copies and clones of the project."""
    from llmcls.experiments.tune import DEFAULT_STORAGE

    url = storage or DEFAULT_STORAGE
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = "sqlite:///" + str((project / url.removeprefix("sqlite:///")).resolve())
    return url


@click.command("train-node")
@click.option("--stage", "stage_name", default="train", show_default=True, help="the dvc.yaml stage to join")
def train_node(stage_name) -> None:
    """Run this machine's share of a multi-machine train stage: on machines 1..N-1, while machine 0 runs `dvc repro`.

    Runs the stage's command as dvc.yaml and params.yaml resolve it, without DVC's bookkeeping (machine 0's
    `dvc repro` records the outputs; only its main process writes them). Needs LLMCLS_MACHINE_RANK,
    LLMCLS_MAIN_IP and LLMCLS_MAIN_PORT (README "Scaling out"); under SLURM the stage starts every node itself.
    """
    import sys

    from dvc.repo import Repo

    if "LLMCLS_MACHINE_RANK" not in os.environ:
        raise LlmclsError("set LLMCLS_MACHINE_RANK (1..N-1 here; 0 runs `dvc repro`), LLMCLS_MAIN_IP, LLMCLS_MAIN_PORT")
    with Repo() as repo:
        command = repo.stage.collect(stage_name)[0].cmd
    click.echo(command)
    argv, env = command_words(command)
    sys.exit(subprocess.run(argv, cwd=repo.root_dir, env=os.environ | env).returncode)


def command_words(command: str) -> tuple[list[str], dict[str, str]]:
    """A dvc.yaml command as argv and the NAME=value assignments before it, run without a shell: no params
    value in it is ever read as shell syntax."""
    words, env = shlex.split(command), {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if not words or any(re.search(r"[;&|<>`$]", word) for word in words):
        raise LlmclsError(f"stage command {command!r}: not a plain command llmcls can run without a shell")
    return words, env


def _run_dvc(command: list[str]) -> None:
    """Run a dvc command; its output goes to a file, not a pipe: `dvc queue start` leaves a worker behind
    that inherits the output handles, and a pipe would keep this command waiting until the queue is empty."""
    with tempfile.TemporaryFile(mode="w+") as output:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            output.seek(0)
            raise LlmclsError(f"`{shlex.join(command)}` failed: {output.read().strip()}")
