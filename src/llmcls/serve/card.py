"""The model card (README.md) of an exported folder: what the model is, its classes, its prompt, the run's
metrics and how to use it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from llmcls.evaluate.metrics import METRIC_NAMES


def summary_section(meta: dict[str, Any], labels: list[str]) -> list[str]:
    params, base = meta["params"], meta["base_model"]
    return [
        f"# llmcls classifier: {params['dataset']}, {params['model']['name']} ({meta['mode']})",
        "",
        f"A text classifier fine-tuned with llmcls from `{base.get('hub_id') or params['model']['name']}`"
        f" (mode {meta['mode']}, head {params['model']['head']}, seed {params['train']['seed']},"
        f" {meta['training'].get('steps')} optimizer steps). LoRA, where used, is merged into the weights.",
        "",
        "## Classes" if meta.get("task") != REGRESSION else "## Output",
        "",
        ", ".join(f"`{name}`" for name in labels)
        + {MULTI_LABEL: " (any number per text)", REGRESSION: " (a number)"}.get(meta.get("task"), ""),
        "",
    ]


def prompt_section(prompt: dict[str, Any]) -> list[str]:
    return [
        "## Prompt",
        "",
        "Each text is wrapped in this template (prompt.json; its fields are the text columns"
        f" {list(prompt['reader']['fields'].values())}); a long text is cut inside the template to"
        f" {prompt['max_length']} tokens in all (at least {prompt.get('min_text_tokens', 8)} of text), never the"
        " template:",
        "",
        "```text",
        prompt["template"],
        "```",
        "",
    ]


def metrics_section(metrics: dict[str, Any] | None) -> list[str]:
    """The run's val / test metrics (evaluate's eval.json), when it was given."""
    rows = [
        {"split": split, "rows": m["n"]} | {shown: f"{m[key]:.4f}" for key, shown in METRIC_NAMES.items() if key in m}
        for split in ("val", "test")
        if len(m := (metrics or {}).get(split) or {}) > 1
    ]
    if not rows:
        return []
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return ["## Metrics of the run", "", *table.splitlines(), ""]


TASK_USE = {
    SINGLE_LABEL: [
        "# softmax(model(input_ids).logits / T), T the temperature in llmcls.json (calibration; 1 if absent)"
    ],
    MULTI_LABEL: [
        "# sigmoid(model(input_ids).logits): one probability per label; a label is predicted at or above its",
        "# threshold, model.config.llmcls_decision['thresholds'] (tuned on validation)",
    ],
    REGRESSION: [
        "# model(input_ids).logits[:, 0] is the score; model.config.llmcls_decision, where set, holds the",
        "# cut-points that make it a grade (grades[0] below the first cut, one more past each further one)",
    ],
}


def use_section(meta: dict[str, Any]) -> list[str]:
    if meta.get("objective") == "generative":
        python = [
            "from transformers import AutoModelForCausalLM",
            "model = AutoModelForCausalLM.from_pretrained(folder)",
            f"# it writes one of {meta['label_texts']} after the prompt; llmcls scores each text's likelihood",
        ]
    else:
        python = [
            "from transformers import AutoModelForSequenceClassification",
            "# The head's class is modeling_llmcls.py in this folder: transformers runs a folder's Python only when",
            "# you pass trust_remote_code=True yourself. Read that file first; `llmcls predict` never runs it.",
            "model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)",
            *TASK_USE[meta.get("task", SINGLE_LABEL)],
        ]
    return [
        "## Use",
        "",
        "```bash",
        "llmcls predict --model . --input new_texts.csv --out predictions.csv",
        "```",
        "",
        "llmcls loads this folder without running any Python it holds; a model whose base needs its own code",
        "loads only with `--trust-remote-code`, which the folder cannot grant itself.",
        "",
        "```python",
        *python,
        "# llmcls tokenises the template's literal parts and the text apart (and cuts long texts inside the",
        "# template), so `llmcls predict` gives the exact input ids of training",
        "```",
        "",
        f"Inference precision of the run: {meta['precision']}. The full resolved settings are in llmcls.json.",
        "",
    ]


def model_card(meta: dict[str, Any], prompt: dict[str, Any], labels: list[str], metrics: dict | None) -> str:
    sections = summary_section(meta, labels) + prompt_section(prompt) + metrics_section(metrics) + use_section(meta)
    return "\n".join(sections)
