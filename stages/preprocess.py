"""dvc repro preprocess — canonical (id, text, label) rows, wrapped in the prompt template and tokenised once.

Long texts are truncated inside the template, never the template itself, so the `answer:` cue survives.
Writes train/test parquet (with input_ids), labels.json (label2id / id2label), prompt.json (the composed
template and how rows are read: what a trained model carries to `llmcls predict`) and stats.json. With
preprocess.bad_rows: skip, bad rows are dropped and listed in the --bad-rows report (empty under error).
"""

from pathlib import Path

import click

from llmcls.cli.stage import PathDir, PathFile, params_option, run_log_option, stage
from llmcls.config.catalog import dataset_spec
from llmcls.config.params import load_params
from llmcls.data.preprocess import preprocess_dataset
from llmcls.model.base import load_tokenizer

SHOWN = 5  # skipped rows printed; the report has them all


@click.command()
@params_option
@click.option("--raw", type=PathDir, required=True, help="raw data folder (fetch's output)")
@click.option("--base", type=PathDir, required=True, help="base model folder (for its tokenizer)")
@click.option("--out", type=PathDir, required=True, help="processed data folder")
@click.option("--bad-rows", "bad_rows", type=PathFile, default=None, help="JSON report of the rows skipped")
@run_log_option
@stage
def main(params_path: str, raw: Path, base: Path, out: Path, bad_rows: Path | None) -> None:
    params = load_params(params_path)
    spec = dataset_spec(params.dataset, params.custom, params.task)
    tokenizer = load_tokenizer(base, params.model.trust_remote_code)
    stats, skipped = preprocess_dataset(spec, params.preprocess, raw, tokenizer, out, bad_rows)
    if skipped:
        shown = "\n".join(f"  {bad}" for bad in skipped[:SHOWN])
        more = f"\n  ... and {len(skipped) - SHOWN} more" if len(skipped) > SHOWN else ""
        click.echo(f"preprocess: skipped {len(skipped)} bad row(s) (bad_rows: skip; all in {bad_rows}):\n{shown}{more}")
    if not stats["class_labels_listed"]:
        click.echo(
            f"preprocess: the {len(stats['labels'])} class names take more than class_labels_max_tokens "
            f"({params.preprocess.class_labels_max_tokens}) tokens: left out of the prompt ({{class_labels}} empty)"
        )
    if stats["max_prompt_tokens"] > params.preprocess.max_length:
        click.echo(
            f"preprocess: the template takes {stats['template_tokens']} tokens of max_length "
            f"{params.preprocess.max_length}; prompts run up to {stats['max_prompt_tokens']} tokens "
            f"(min_text_tokens {params.preprocess.min_text_tokens} for the text)"
        )
    for split in ("train", "test"):
        if split in stats:
            s = stats[split]
            click.echo(
                f"preprocess: {split}: {s['rows']} rows, {s['mean_tokens']:.1f} tokens on average, "
                f"{100 * s['truncated_fraction']:.1f}% truncated inside the template"
            )
    kind = {"multi_label": "labels (several per text)", "regression": "output (a score)"}.get(stats["task"], "classes")
    click.echo(f"preprocess: {len(stats['labels'])} {kind}: {stats['labels']}")


if __name__ == "__main__":
    main()
