"""dvc repro submit — write submission.csv in the dataset's Kaggle format from the test predictions.

Columns: the dataset's id column, then one probability per class (Chatbot Arena:
id,winner_model_a,winner_model_b,winner_tie). Checked before writing: every test id once, probabilities
in [0, 1] summing to 1. `submit.model` picks whose predictions: the LLM's, the baseline's or the ensemble's.
"""

from pathlib import Path

import click
import pandas as pd

from llmcls.cli.stage import PathDir, PathFile, params_option, run_log_option, stage
from llmcls.config.catalog import dataset_spec
from llmcls.config.params import load_params
from llmcls.core.artifacts import SplitFolder
from llmcls.core.outputs import write_csv
from llmcls.evaluate.submission import build_submission, check_submission


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True)
@click.option("--llm", type=PathFile, required=True, help="the LLM's test predictions")
@click.option("--baseline", type=PathFile, required=True, help="the baseline's test predictions")
@click.option("--ensemble", type=PathFile, required=True, help="the ensemble's test predictions")
@click.option("--out", type=PathFile, required=True)
@run_log_option
@stage
def main(params_path: str, split_dir: Path, llm: Path, baseline: Path, ensemble: Path, out: Path) -> None:
    params = load_params(params_path)
    predictions = {"llm": llm, "baseline": baseline, "ensemble": ensemble}[params.submit.model]
    id_column = dataset_spec(params.dataset, params.custom).id_column or "id"
    split = SplitFolder(split_dir)
    labels = split.labels
    table = build_submission(pd.read_csv(predictions, dtype={"id": str}), labels, id_column)
    expected = split.frame("test")["id"].astype(str).tolist()
    check_submission(table, expected, id_column, labels.task)
    write_csv(out, table)
    click.echo(f"submit: {params.submit.model}'s {len(table)} rows, columns {list(table.columns)} -> {out}")


if __name__ == "__main__":
    main()
