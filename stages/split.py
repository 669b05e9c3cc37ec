"""dvc repro split — stratified train / validation split, few-shot sampling, the test split kept untouched.

When the dataset has no test split, a stratified one (`split.test_fraction`) is carved first and recorded in
split.json; `split.train_size` and `split.class_quota` shape the training pool before validation is taken.
"""

from pathlib import Path

import click

from llmcls.cli.stage import params_option, run_log_option, stage
from llmcls.config.params import load_params
from llmcls.data.split import split_dataset


@click.command()
@params_option
@click.option("--processed", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@run_log_option
@stage
def main(params_path: str, processed: Path, out: Path) -> None:
    params = load_params(params_path)
    record = split_dataset(processed, params.split, out)
    carved = " (test carved from train)" if record["test_carved"] else ""
    click.echo(f"split: {record['rows']}{carved} -> {out}")


if __name__ == "__main__":
    main()
