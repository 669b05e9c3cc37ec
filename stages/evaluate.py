"""dvc repro evaluate — accuracy, macro P/R/F1, log loss, per-class report and confusion matrix on val and test.

Writes the metrics DVC compares (metrics/eval.json), the full report, and per-example predictions whose
`label` / `predicted` columns feed the confusion-matrix plots in dvc.yaml.
"""

from pathlib import Path

import click

from llmcls.devices import is_main_process
from llmcls.evaluation import evaluate_classifier
from llmcls.outputs import write_csv, write_json
from llmcls.params import load_params
from llmcls.stage import params_option, stage

PathDir = click.Path(file_okay=False, path_type=Path)
PathFile = click.Path(dir_okay=False, path_type=Path)


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder")
@click.option("--base", type=PathDir, required=True, help="base model folder")
@click.option("--model", "model_dir", type=PathDir, required=True, help="classifier folder")
@click.option("--metrics", type=PathFile, required=True, help="summary metrics JSON")
@click.option("--report", type=PathFile, required=True, help="full report JSON (per class, confusion matrix)")
@click.option("--predictions", type=PathDir, required=True, help="folder for val.csv / test.csv predictions")
@stage
def main(params_path, split_dir, base, model_dir, metrics, report, predictions) -> None:
    params = load_params(params_path)
    settings = params.evaluate
    summary, full, tables = evaluate_classifier(model_dir, base, split_dir, settings.batch_size, settings.quantize)
    if not is_main_process():  # `accelerate launch` shares the rows out; one process writes
        return
    for split, table in tables.items():
        write_csv(predictions / f"{split}.csv", table)
    write_json(report, full)
    write_json(metrics, summary)
    for split in tables:
        shown = {k: round(v, 4) for k, v in summary[split].items() if isinstance(v, float)}
        click.echo(f"evaluate: {split}: {shown}")


if __name__ == "__main__":
    main()
