"""dvc repro evaluate — accuracy, macro P/R/F1, log loss, per-class report and confusion matrix on val and test.

For a multi-label task: micro / macro / samples F1, subset accuracy, Hamming loss, ROC-AUC, average precision
and per-label P/R/F1 at the thresholds tuned in training; for scores: RMSE, MAE, Pearson, Spearman, R² (and
QWK of the tuned cut-points beside plain rounding for whole-number scores).

Writes the metrics DVC compares (metrics/eval.json), the full report, and per-example predictions whose
`label` / `predicted` columns feed the confusion-matrix plots in dvc.yaml. On a pairwise dataset with
evaluate.swap_tta, each row is also scored with responses A and B swapped and the two are averaged.
"""

import time

import click

from llmcls.cli.stage import PathDir, evaluation_outputs, params_option, rate, run_log_option, stage
from llmcls.config.params import load_params
from llmcls.core.devices import is_main_process
from llmcls.evaluate.classifier import evaluate_classifier
from llmcls.evaluate.scoring import shown_metrics, write_evaluation


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder")
@click.option("--base", type=PathDir, required=True, help="base model folder")
@click.option("--model", "model_dir", type=PathDir, required=True, help="classifier folder")
@evaluation_outputs
@run_log_option
@stage
def main(params_path, split_dir, base, model_dir, metrics, report, predictions) -> dict | None:
    params = load_params(params_path)
    start = time.perf_counter()
    settings = params.evaluate
    summary, full, tables = evaluate_classifier(
        model_dir,
        base,
        split_dir,
        settings.batch_size,
        settings.quantize,
        settings.swap_tta,
        settings.max_new_tokens,
        settings.max_tokens,
        params.model.trust_remote_code,
    )
    if not is_main_process():  # `accelerate launch` shares the rows out; one process writes
        return None
    write_evaluation(summary, full, tables, metrics, report, predictions)
    click.echo(shown_metrics(summary))
    for split in tables:
        if "without_tta" in summary[split]:
            click.echo(f"{split} without A/B-swap TTA: {summary[split]['without_tta']}")
        if "generated" in summary[split]:
            click.echo(f"{split} generated answers: {summary[split]['generated']}")
    return rate(summary, time.perf_counter() - start)


if __name__ == "__main__":
    main()
