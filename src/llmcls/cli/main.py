"""The `llmcls` command: `llmcls sweep` queues a grid of DVC experiments, `llmcls report` compares them,
`llmcls setup` pins this machine's datasets folder."""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import click

from llmcls.config.params import load_params
from llmcls.core.errors import LlmclsError, full_disk_is_an_error
from llmcls.evaluate.metrics import METRIC_NAMES
from llmcls.experiments.aggregate import AUTO
from llmcls.experiments.cluster import BACKENDS
from llmcls.experiments.runs import SCOPES, exp_show, file_at, finished, lock_agrees, parse_exp_show, with_run_logs


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


@click.group()
def main() -> None:
    """Sweep and compare llmcls experiments (DVC experiments underneath)."""


def _backend_options(func):
    """The job-backend options `llmcls sweep` and `llmcls tune` share."""
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
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
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
    remote,
    slurm_sets,
    slurm_config,
    work_dir,
    wait,
    collect,
    dry_run,
) -> None:
    """Run the grid seeds x datasets x models x modes x train sizes as DVC experiments.

    Configurations that already ran, or are queued or running, are skipped; the exact commands are printed.
    With a job backend, a point whose job failed is submitted again and `--collect` brings finished ones here.
    """
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
    if collect or backend != "local":
        parameters = _slurm_parameters(slurm_sets, slurm_config)
        _job_sweep(project, backend, planned, remote, parameters, work_dir, jobs, wait, collect, dry_run)
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


def _slurm_parameters(pairs: tuple[str, ...], config: Path | None) -> dict[str, Any]:
    from llmcls.config.params import read_yaml

    parameters = dict(read_yaml(config.read_text(encoding="utf-8")) or {}) if config else {}
    return parameters | _settings(pairs)


def _job_sweep(project, backend, planned, remote, parameters, work_dir, jobs, wait, collect, dry_run) -> None:
    """The job backends of `llmcls sweep` (experiments/cluster.py), and --collect for any backend."""
    from llmcls.experiments import cluster

    if collect:
        failed = cluster.outcome(project, remote, [item.name for item in planned], click.echo)
        if failed:
            raise LlmclsError(f"{len(failed)} point(s) failed: run the same `llmcls sweep` to submit them again")
        return
    specs = cluster.plan_jobs(project, backend, planned, remote, work_dir, click.echo)
    for spec in specs:
        click.echo(f"# job {spec.name}: git clone {spec.repo} {spec.clone} && git checkout {spec.commit}")
        for command in spec.commands():
            click.echo(f"#   {shlex.join(command)}")
    if dry_run or not specs:
        click.echo(f"# {len(specs)} job(s) to submit, {len(planned) - len(specs)} skipped" + " (dry run)" * dry_run)
        return
    submitted = cluster.submit(project, backend, specs, parameters, jobs, click.echo)
    if wait if wait is not None else backend == "submitit-local":
        cluster.wait(submitted)
        failed = cluster.outcome(project, remote, [job.name for job in submitted], click.echo)
        if failed:
            raise LlmclsError(f"{len(failed)} of {len(submitted)} job(s) failed: {', '.join(failed)}")
    else:
        click.echo(f"# {len(submitted)} job(s) submitted; `llmcls sweep ... --collect` with the same grid pulls them")


@main.command()
@click.option("--study", "study_name", default="tune", show_default=True, help="Optuna study (trial N: exp STUDY-N)")
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL: a SQLite file, or an RDB (postgresql://...) jobs on other nodes can reach "
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
    remote,
    slurm_sets,
    slurm_config,
    work_dir,
) -> None:
    """Search hyperparameters with Optuna (TPE): each trial a DVC experiment, valued on the validation split by
    train.metric_for_best. Run again with the same --study to continue; `llmcls report --study` shows it."""
    from llmcls.experiments import cluster
    from llmcls.experiments import tune as tuning
    from llmcls.experiments.sweep import flat_params

    project = Path.cwd()
    load_params(params_path)
    reference = flat_params(Path(params_path).read_text(encoding="utf-8"))
    extra = _settings(sets)
    if unknown := [k for k in extra if k not in reference]:
        raise LlmclsError(f"--set: unknown params keys {unknown}")
    text = space_path.read_text(encoding="utf-8") if space_path else None
    spaces = tuning.search_space(text, space_params, reference)
    metric, direction = tuning.objective_metric(reference | extra)
    storage = _storage_url(storage, project)
    study = tuning.open_study(study_name, storage, direction, metric, seed, prune)
    click.echo(f"# study {study_name} ({storage}): {direction} val {metric} over {', '.join(spaces)}")
    if backend == "local":
        if jobs != 1:
            raise LlmclsError("--backend local runs one trial at a time: parallel trials need submitit-local or slurm")

        def run_batch(batch):
            return {name: tuning.run_local(project, name, overrides, env) for name, overrides, env in batch}

    else:
        make = cluster.spec_maker(project, remote, work_dir)
        parameters = _slurm_parameters(slurm_sets, slurm_config)

        def run_batch(batch):
            submitted = cluster.submit(project, backend, [make(*item) for item in batch], parameters, jobs, click.echo)
            cluster.wait(submitted)
            failed = cluster.outcome(project, remote, [job.name for job in submitted], click.echo)
            return {job.name: f"job failed (log: {job.log()})" if job.name in failed else "" for job in submitted}

    tuning.tune(project, study, spaces, extra, trials, metric, storage, prune, run_batch, jobs, click.echo)


def _storage_url(storage: str | None, project: Path) -> str:
    """The storage URL with a SQLite file made absolute: trials run in copies and clones of the project."""
    from llmcls.experiments.tune import DEFAULT_STORAGE

    url = storage or DEFAULT_STORAGE
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = "sqlite:///" + str((project / url.removeprefix("sqlite:///")).resolve())
    return url


@main.command("train-node")
@click.option("--stage", "stage_name", default="train", show_default=True, help="the dvc.yaml stage to join")
def train_node(stage_name) -> None:
    """Run this machine's share of a multi-machine train stage: on machines 1..N-1, while machine 0 runs `dvc repro`.

    Runs the stage's command as dvc.yaml and params.yaml resolve it, without DVC's bookkeeping (machine 0's
    `dvc repro` records the outputs; only its main process writes them). Needs LLMCLS_MACHINE_RANK,
    LLMCLS_MAIN_IP and LLMCLS_MAIN_PORT (README "Scaling out"); under SLURM the stage starts every node itself.
    """
    import os
    import sys

    from dvc.repo import Repo

    if "LLMCLS_MACHINE_RANK" not in os.environ:
        raise LlmclsError("set LLMCLS_MACHINE_RANK (1..N-1 here; 0 runs `dvc repro`), LLMCLS_MAIN_IP, LLMCLS_MAIN_PORT")
    with Repo() as repo:
        command = repo.stage.collect(stage_name)[0].cmd
    click.echo(command)
    sys.exit(subprocess.run(command, shell=True, cwd=repo.root_dir).returncode)


@main.command()
def setup() -> None:
    """Pin this machine's datasets folder (the DVC remote `datasets`) in .dvc/config.local.

    `make install` runs it; queued experiments need it, since they run in a copy of the project.
    """
    from llmcls.data.remotes import pin_datasets_folder

    folder, action = pin_datasets_folder()
    click.echo(f"datasets folder: {folder} ({action}); change it with `dvc remote add --local -f datasets DIR`")


@main.command()
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="a trained model folder (models/classifier) or one written by `llmcls export`",
)
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV / TSV / TXT / JSON / JSONL / Parquet / Excel file of new texts",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="predictions: id, label (if the input has one), predicted, prob_<class> (.csv, .tsv, .jsonl, .parquet)",
)
@click.option(
    "--base",
    type=click.Path(file_okay=False, path_type=Path),
    help="base model of a LoRA adapter [default: models/base beside --model]",
)
@click.option(
    "--text-columns",
    help="the input's text columns, comma-separated, in the model's order [default: the training data's]",
)
@click.option("--id-column", help="the input's id column [default: the training data's, else the row number]")
@click.option("--sep", help="column separator [default: by extension]")
@click.option("--no-header", is_flag=True, help="the first line is data; name the columns with --names")
@click.option("--names", help="column names, comma-separated (with --no-header)")
@click.option("--encoding", default="utf-8", show_default=True)
@click.option(
    "--bad-rows",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="skip: drop empty or malformed rows (listed) instead of stopping",
)
@click.option("--batch-size", type=int, help="rows per batch [default: the run's evaluate.batch_size]")
@click.option("--max-rows", type=int, help="predict only the first N rows")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
def predict(
    model_dir,
    input_path,
    out,
    base,
    text_columns,
    id_column,
    sep,
    no_header,
    names,
    encoding,
    bad_rows,
    batch_size,
    max_rows,
    device,
) -> None:
    """Classify the rows of a file with a trained or exported model (same prompt, truncation and labels as
    training; the probabilities equal the evaluate stage's on the same rows)."""
    from llmcls.serve.predict import predict_file

    options: dict[str, Any] = {"encoding": encoding}
    if sep:
        options["sep"] = sep
    if no_header:
        options["header"] = None
    if names:
        options["names"] = _names(names)
    with full_disk_is_an_error():
        summary = predict_file(
            model_dir,
            input_path,
            out,
            base=base,
            text_columns=_names(text_columns),
            id_column=id_column,
            read=options,
            bad_rows=bad_rows,
            batch_size=batch_size,
            max_rows=max_rows,
            device=device,
        )
    click.echo(summary)


@main.command()
@click.option(
    "--model",
    "model_dir",
    default="models/classifier",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="trained model folder",
)
@click.option(
    "--base",
    default="models/base",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="its base model (for a LoRA adapter)",
)
@click.option(
    "--metrics",
    "metrics_path",
    default="metrics/eval.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the run's metrics, for the model card",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="the standalone folder")
def export(model_dir, base, metrics_path, out) -> None:
    """Write a standalone folder: LoRA merged into the base, safetensors, tokenizer, labels, prompt and a model
    card. `llmcls predict` and transformers (trust_remote_code=True) load it without this repository."""
    from llmcls.serve.export import export_model

    with full_disk_is_an_error():
        result = export_model(model_dir, base, out, metrics_path)
    click.echo(f"export: {model_dir} -> {out} ({result})")


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def _run_dvc(command: list[str]) -> None:
    """Run a dvc command; its output goes to a file, not a pipe: `dvc queue start` leaves a worker behind
    that inherits the output handles, and a pipe would keep this command waiting until the queue is empty."""
    with tempfile.TemporaryFile(mode="w+") as output:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            output.seek(0)
            raise LlmclsError(f"`{shlex.join(command)}` failed: {output.read().strip()}")


@main.command()
@click.option(
    "--out",
    default="metrics/report.md",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Markdown report; its figures go to the folder of the same name without .md",
)
@click.option(
    "--scope",
    type=click.Choice(list(SCOPES)),
    default="all-commits",
    show_default=True,
    help="which commits' experiments to read",
)
@click.option(
    "--from-json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="read saved `dvc exp show --json` output instead of running dvc",
)
@click.option(
    "--metric",
    type=click.Choice([AUTO, *METRIC_NAMES]),
    default=AUTO,
    show_default=True,
    help="the metric that ranks, is tested and is plotted; auto: each dataset's task's main one (accuracy, "
    "multi-label macro F1, score Pearson)",
)
@click.option(
    "--params",
    "params_path",
    default="params.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="the reference settings: bracketed variants are differences from these",
)
@click.option("--study", "studies", multiple=True, help="add an Optuna study of `llmcls tune` (repeatable)")
@click.option("--storage", help="the studies' Optuna storage [default: llmcls tune's, sqlite:///tune.db]")
def report(out, scope, from_json, metric, params_path, studies, storage) -> None:
    """Leaderboard (mean ± std over seeds), seed ensembles, paired significance tests, learning curves and best-run
    figures; with --study, the search's best trial, parameter importances and optimisation history."""
    from llmcls.experiments.report import build_report
    from llmcls.experiments.sweep import flat_params

    rows = json.loads(from_json.read_text(encoding="utf-8")) if from_json else exp_show(scope)
    runs = parse_exp_show(rows)
    if not from_json:  # a commit whose params.yaml moved on after its last `dvc repro` is not a result
        runs = [r for r in runs if r.baseline != r.rev or lock_agrees(r, file_at(r.rev, "dvc.lock"))]
    runs = finished(runs)
    if not from_json:
        runs = with_run_logs(runs, lambda run, path: file_at(run.rev, path))
    if not runs:
        raise LlmclsError("no run with test metrics found: run `dvc repro` or `llmcls sweep --start` first")
    reference = flat_params(Path(params_path).read_text(encoding="utf-8"))
    source = f"saved {from_json}" if from_json else f"dvc exp show --json {' '.join(SCOPES[scope])}".strip()
    result = build_report(runs, reference, out, lambda run, path: file_at(run.rev, path), metric, source)
    if studies:
        from llmcls.experiments.tune import study_section

        url = _storage_url(storage, Path.cwd())
        sections = [study_section(name, url, out.with_suffix(""), out.parent) for name in studies]
        out.write_text(out.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + "\n\n".join(sections) + "\n")
    click.echo(f"report: {len(runs)} runs, {len(result['groups'])} configurations -> {out}")


@main.command()
@click.option("--all", "everything", is_flag=True, help="every object in the cache, not only dvc.lock's")
def verify(everything) -> None:
    """Re-hash the DVC cache objects dvc.lock uses (the outputs a checkout would restore): a corrupted one is
    named with its output and stage, exit 1. DVC itself trusts its cache."""
    from llmcls.experiments.integrity import damage_report, verify_cache

    checked, damaged = verify_cache(".", everything)
    if damaged:
        raise LlmclsError(damage_report(damaged))
    click.echo(f"verify: {checked} cache objects match their hashes")


if __name__ == "__main__":
    main()
