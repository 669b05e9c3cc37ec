"""dvc repro baseline — TF-IDF (word + char n-grams) + logistic regression on the LLM's own splits.

The classical reference of every experiment: same train / val / test rows, same metrics and file layout as
the evaluate stage, so the leaderboard, the ensemble and the submission read it alike.
"""

from pathlib import Path

import click

from llmcls.baseline import run_baseline
from llmcls.catalog import dataset_spec
from llmcls.params import load_params
from llmcls.scoring import shown_metrics, write_evaluation
from llmcls.stage import params_option, stage

PathDir = click.Path(file_okay=False, path_type=Path)
PathFile = click.Path(dir_okay=False, path_type=Path)


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder")
@click.option("--metrics", type=PathFile, required=True, help="summary metrics JSON")
@click.option("--report", type=PathFile, required=True, help="full report JSON (per class, confusion matrix)")
@click.option("--predictions", type=PathDir, required=True, help="folder for val.csv / test.csv predictions")
@stage
def main(params_path, split_dir, metrics, report, predictions) -> None:
    params = load_params(params_path)
    spec = dataset_spec(params.dataset, params.custom)
    summary, full, tables = run_baseline(spec, params.baseline, split_dir)
    write_evaluation(summary, full, tables, metrics, report, predictions)
    click.echo(f"baseline: {summary['features']} TF-IDF features\n{shown_metrics(summary)}")


if __name__ == "__main__":
    main()
