"""dvc repro train — fine-tune the base model as a classifier (LoRA or full), keep the best checkpoint.

Run by dvc.yaml under `accelerate launch`, so the same command trains on one CPU or many GPUs. Writes the
adapter or weights with label2id / id2label and the resolved config (and what was fitted on val: the
temperature, multi-label thresholds, integer-score cut-points), and DVCLive loss / metric curves.
"""

from pathlib import Path

import click

from llmcls.cli.stage import PathDir, params_option, run_log_option, stage
from llmcls.config.params import load_params
from llmcls.core.devices import is_main_process
from llmcls.train.classifier import train_classifier, training_lines


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder")
@click.option("--base", type=PathDir, required=True, help="base model folder")
@click.option("--out", type=PathDir, required=True, help="classifier output folder")
@click.option("--live", type=PathDir, required=True, help="DVCLive folder for training curves")
@click.option("--checkpoints", type=PathDir, required=True, help="checkpoint folder (kept for resuming)")
@click.option("--probe", "probe_dir", type=PathDir, default=None, help="the probe stage's features (head warm start)")
@run_log_option
@stage
def main(params_path, split_dir: Path, base: Path, out: Path, live: Path, checkpoints: Path, probe_dir) -> dict:
    params = load_params(params_path)
    summary = train_classifier(params, split_dir, base, out, live, checkpoints, probe_dir)
    if is_main_process():
        click.echo(training_lines(summary))
    return summary["run"]


if __name__ == "__main__":
    main()
