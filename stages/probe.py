"""dvc repro probe — the frozen base's last-token states of the train rows, for the head's linear-probe warm start.

Computed once per base model, split and precision (train/probe_cache.py): seeds, tune trials and adapter settings
re-run train, which reads these instead of running the pass again. A run that fits no probe (head_init random, an
mlp head, the generative objective) gets a record saying why and no features.
"""

from pathlib import Path

import click

from llmcls.cli.stage import PathDir, params_option, run_log_option, stage
from llmcls.config.params import load_params
from llmcls.train.probe_cache import compute_probe_features


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder")
@click.option("--base", type=PathDir, required=True, help="base model folder")
@click.option("--out", type=PathDir, required=True, help="probe features folder")
@run_log_option
@stage
def main(params_path: str, split_dir: Path, base: Path, out: Path) -> None:
    record = compute_probe_features(load_params(params_path), split_dir, base, out)
    if "skipped" in record:
        click.echo(f"probe: none needed ({record['skipped']}) -> {out}")
    else:
        click.echo(f"probe: {record['rows']} rows x {record['hidden']} features ({record['precision']}) -> {out}")


if __name__ == "__main__":
    main()
