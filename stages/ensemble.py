"""dvc repro ensemble — a weighted blend of the LLM's and the baseline's class probabilities.

The LLM's weight is `ensemble.llm_weight`, or `fit`: the weight with the lowest validation log loss.
Scored and written like the evaluate stage, so submit can hand in the blend.
"""

import click

from llmcls.cli.stage import PathDir, evaluation_outputs, params_option, run_log_option, stage
from llmcls.config.params import load_params
from llmcls.evaluate.ensemble import run_ensemble
from llmcls.evaluate.scoring import shown_metrics, write_evaluation


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder (ids and labels)")
@click.option("--llm", "llm_dir", type=PathDir, required=True, help="the LLM's predictions folder")
@click.option("--baseline", "baseline_dir", type=PathDir, required=True, help="the baseline's predictions folder")
@evaluation_outputs
@run_log_option
@stage
def main(params_path, split_dir, llm_dir, baseline_dir, metrics, report, predictions) -> None:
    params = load_params(params_path)
    summary, full, tables = run_ensemble(
        llm_dir, baseline_dir, split_dir, params.ensemble.llm_weight, params.train.thresholds
    )
    write_evaluation(summary, full, tables, metrics, report, predictions)
    how = "fitted on val log loss" if summary["fitted"] else "from params"
    click.echo(f"ensemble: LLM weight {summary['llm_weight']:.2f} ({how})\n{shown_metrics(summary)}")


if __name__ == "__main__":
    main()
