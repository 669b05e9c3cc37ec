"""dvc repro baseline — TF-IDF (word + char n-grams) + logistic regression on the LLM's own splits.

The classical reference of every experiment: same train / val / test rows, same metrics and file layout as
the evaluate stage, so the leaderboard, the ensemble and the submission read it alike.
"""

import click

from llmcls.cli.stage import PathDir, evaluation_outputs, params_option, run_log_option, stage
from llmcls.config.catalog import dataset_spec
from llmcls.config.params import load_params
from llmcls.evaluate.baseline import run_baseline
from llmcls.evaluate.scoring import shown_metrics, write_evaluation


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder")
@evaluation_outputs
@run_log_option
@stage
def main(params_path, split_dir, metrics, report, predictions) -> None:
    params = load_params(params_path)
    spec = dataset_spec(params.dataset, params.custom)
    summary, full, tables = run_baseline(spec, params.baseline, split_dir, params.train.thresholds)
    write_evaluation(summary, full, tables, metrics, report, predictions)
    click.echo(f"baseline: {summary['features']} TF-IDF features\n{shown_metrics(summary)}")


if __name__ == "__main__":
    main()
