"""The `llmcls` command: `llmcls sweep` runs a grid of DVC experiments, `llmcls tune` searches hyperparameters,
`llmcls report` compares them, `llmcls predict` / `export` serve a model, `llmcls setup` pins this machine's datasets
folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from llmcls.cli.experiments import storage_url, sweep, train_node, tune
from llmcls.core.errors import LlmclsError, full_disk_is_an_error
from llmcls.evaluate.metrics import METRIC_NAMES
from llmcls.experiments.aggregate import AUTO
from llmcls.experiments.runs import SCOPES, exp_show, file_at, finished, lock_agrees, parse_exp_show, with_run_logs

TRUST_REMOTE_CODE = click.option(
    "--trust-remote-code",
    is_flag=True,
    help="let a model that needs its own Python run it (only for a source you trust; a folder never grants this "
    "itself)",
)


@click.group()
def main() -> None:
    """Sweep and compare llmcls experiments (DVC experiments underneath)."""


main.add_command(sweep)
main.add_command(tune)
main.add_command(train_node)


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
@TRUST_REMOTE_CODE
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
    trust_remote_code,
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
            trust_remote_code=trust_remote_code,
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
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the standalone folder: new, empty, or an earlier export (anything else is refused)",
)
@TRUST_REMOTE_CODE
def export(model_dir, base, metrics_path, out, trust_remote_code) -> None:
    """Write a standalone folder: LoRA merged into the base, safetensors, tokenizer, labels, prompt and a model
    card. `llmcls predict` and transformers (trust_remote_code=True) load it without this repository."""
    from llmcls.serve.export import export_model

    with full_disk_is_an_error():
        result = export_model(model_dir, base, out, metrics_path, trust_remote_code)
    click.echo(f"export: {model_dir} -> {out} ({result})")


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


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
@click.option(
    "--storage",
    envvar="LLMCLS_TUNE_STORAGE",
    help="the studies' Optuna storage [default: llmcls tune's, sqlite:///tune.db]",
)
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
        from llmcls.core.names import check_name
        from llmcls.experiments.tune import study_section

        for name in studies:
            check_name(name, "--study")
        url = storage_url(storage, Path.cwd())
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
