"""dvc repro fetch_model — materialise the base model of params `model` in models/base, once.

A registry model shipped as GGUF in a PyPI package is dequantised and saved as safetensors (later loads take
under a second); a local folder is copied; a hub model is pinned to a commit (params model.revision, else the
catalog's, else the one fetched, recorded).
"""

from pathlib import Path

import click

from llmcls.cli.stage import params_option, run_log_option, stage
from llmcls.config.catalog import model_spec
from llmcls.config.params import load_params
from llmcls.model.base import materialize


@click.command()
@params_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="base model folder")
@run_log_option
@stage
def main(params_path: str, out: Path) -> None:
    params = load_params(params_path)
    model = params.model
    record = materialize(model_spec(model.name), params.fetch.sources, out, model.trust_remote_code, model.revision)
    click.echo(f"fetch_model: {record['model']} from {record['source']} -> {out}")


if __name__ == "__main__":
    main()
