"""dvc repro prompt_only — the base model with no fine-tuning: label-word scoring with its LM head.

Each class's probability is the likelihood of its label text after the same prompt the classifier reads,
normalised over the classes. It depends on the data and the base model only, so seeds and training settings
reuse it from DVC's run cache. Written like evaluate's output, so the report shows it as a row of its own.
"""

import time

import click

from llmcls.cli.stage import PathDir, evaluation_outputs, params_option, rate, run_log_option, stage
from llmcls.config.params import load_params
from llmcls.core.artifacts import SplitFolder
from llmcls.core.devices import resolve_precision
from llmcls.evaluate.prompt_only import evaluate_prompt_only
from llmcls.evaluate.scoring import shown_metrics, write_evaluation


@click.command()
@params_option
@click.option("--split", "split_dir", type=PathDir, required=True, help="split data folder")
@click.option("--base", type=PathDir, required=True, help="base model folder")
@evaluation_outputs
@run_log_option
@stage
def main(params_path, split_dir, base, metrics, report, predictions) -> dict:
    params = load_params(params_path)
    start = time.perf_counter()
    # The label texts as the prompt's {class_labels} shows them (preprocess recorded them in prompt.json).
    texts = SplitFolder(split_dir).prompt["label_texts"]
    precision = resolve_precision(params.train.precision)
    batch, trust = params.evaluate.batch_size, params.model.trust_remote_code
    summary, full, tables = evaluate_prompt_only(base, split_dir, texts, batch, precision, trust)
    write_evaluation(summary, full, tables, metrics, report, predictions)
    click.echo(f"prompt_only: label texts {texts}\n{shown_metrics(summary)}")
    return rate(summary, time.perf_counter() - start)


if __name__ == "__main__":
    main()
