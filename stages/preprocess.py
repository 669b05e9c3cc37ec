"""dvc repro preprocess — canonical (id, text, label) rows, wrapped in the prompt template and tokenised once.

Long texts are truncated inside the template, never the template itself, so the `answer:` cue survives.
Writes train/test parquet (with input_ids), labels.json (label2id / id2label) and stats.json.
"""

from pathlib import Path

import click

from llmcls.base_model import load_tokenizer
from llmcls.catalog import dataset_spec
from llmcls.params import load_params
from llmcls.preprocessing import preprocess_dataset
from llmcls.stage import PathDir, params_option, stage


@click.command()
@params_option
@click.option("--raw", type=PathDir, required=True, help="raw data folder (fetch's output)")
@click.option("--base", type=PathDir, required=True, help="base model folder (for its tokenizer)")
@click.option("--out", type=PathDir, required=True, help="processed data folder")
@stage
def main(params_path: str, raw: Path, base: Path, out: Path) -> None:
    params = load_params(params_path)
    spec = dataset_spec(params.dataset, params.custom)
    stats = preprocess_dataset(spec, params.preprocess, raw, load_tokenizer(base), out)
    for split in ("train", "test"):
        if split in stats:
            s = stats[split]
            click.echo(
                f"preprocess: {split}: {s['rows']} rows, {s['mean_tokens']:.1f} tokens on average, "
                f"{100 * s['truncated_fraction']:.1f}% truncated inside the template"
            )
    click.echo(f"preprocess: {len(stats['labels'])} classes: {stats['labels']}")


if __name__ == "__main__":
    main()
