"""`llmcls export`: a trained classifier as one standalone folder.

LoRA is merged into the base; the folder holds safetensors weights, the tokenizer, labels.json, prompt.json,
llmcls.json and a model card (README.md) with the run's metrics. `llmcls predict` reads it with no base
model and no DVC repository; plain transformers reads it with `trust_remote_code=True`, through the small
modeling_llmcls.py written beside the weights (the architecture's own class with llmcls's head: a linear
layer with a bias, or the MLP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmcls.core.artifacts import HEAD_WEIGHTS, LABELS, META, PROMPT
from llmcls.core.outputs import read_json, staged_dir, write_json
from llmcls.model.heads import head_attribute
from llmcls.model.store import load_trained_model
from llmcls.serve.predict import quiet_transformers

REMOTE_CODE = "modeling_llmcls.py"

# The class plain transformers builds (trust_remote_code=True): the architecture's sequence classifier with
# the head swapped for llmcls's; its layer names match the saved weights (score.weight / score.bias, or
# score.0 ... score.6 for the MLP).
REMOTE_CODE_TEXT = '''"""Written by `llmcls export`: {architecture} with the classification head llmcls trained."""

import torch
from transformers import {architecture} as _Architecture


class LlmclsForSequenceClassification(_Architecture):
    def __init__(self, config):
        super().__init__(config)
        head = config.llmcls_head
        hidden, classes, dropout = head["in_features"], config.num_labels, head["dropout"]
        if head["kind"] == "mlp":
            layer = torch.nn.Sequential(
                torch.nn.Linear(hidden, 512), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                torch.nn.Linear(256, classes),
            )
        else:
            layer = torch.nn.Linear(hidden, classes, bias=True)
        setattr(self, "{attribute}", layer)
        self.post_init()
'''


def _model_card(meta: dict[str, Any], prompt: dict[str, Any], labels: list[str], metrics: dict | None) -> str:
    params = meta["params"]
    base = meta["base_model"]
    lines = [
        f"# llmcls classifier: {params['dataset']}, {params['model']['name']} ({meta['mode']})",
        "",
        f"A text classifier fine-tuned with llmcls from `{base.get('hub_id') or params['model']['name']}`"
        f" (mode {meta['mode']}, head {params['model']['head']}, seed {params['train']['seed']},"
        f" {meta['training'].get('steps')} optimizer steps). LoRA, where used, is merged into the weights.",
        "",
        "## Classes",
        "",
        ", ".join(f"`{name}`" for name in labels),
        "",
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
    if metrics:
        lines += [
            "## Metrics of the run",
            "",
            "| split | rows | accuracy | macro F1 | log loss |",
            "|---|---|---|---|---|",
        ]
        for split in ("val", "test"):
            m = metrics.get(split) or {}
            if "accuracy" in m:
                lines.append(
                    f"| {split} | {m['n']} | {m['accuracy']:.4f} | {m['f1_macro']:.4f} | {m['log_loss']:.4f} |"
                )
        lines.append("")
    lines += [
        "## Use",
        "",
        "```bash",
        "llmcls predict --model . --input new_texts.csv --out predictions.csv",
        "```",
        "",
        "```python",
        *(
            [
                "from transformers import AutoModelForCausalLM",
                "model = AutoModelForCausalLM.from_pretrained(folder)",
                f"# it writes one of {meta['label_texts']} after the prompt; llmcls scores each text's likelihood",
            ]
            if meta.get("objective") == "generative"
            else [
                "from transformers import AutoModelForSequenceClassification",
                "model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)",
                "# softmax(model(input_ids).logits)",
            ]
        ),
        "# llmcls tokenises the template's literal parts and the text apart (and cuts long texts inside the",
        "# template), so `llmcls predict` gives the exact input ids of training",
        "```",
        "",
        f"Inference precision of the run: {meta['precision']}. The full resolved settings are in llmcls.json.",
        "",
    ]
    return "\n".join(lines)


def _head_files(model, meta: dict[str, Any], folder: Path) -> str:
    """A classification head's weights and the modeling code plain transformers builds it with; its kind."""
    from safetensors.torch import save_file

    head = getattr(model, head_attribute(model))
    kind = "mlp" if isinstance(head, torch.nn.Sequential) else "linear"
    in_features = head[0].in_features if kind == "mlp" else head.in_features
    dropout = meta["params"]["model"]["head_dropout"]
    model.config.llmcls_head = {"kind": kind, "in_features": in_features, "dropout": dropout}
    remote_class = f"{REMOTE_CODE.removesuffix('.py')}.LlmclsForSequenceClassification"
    model.config.auto_map = {"AutoModelForSequenceClassification": remote_class}
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, folder / HEAD_WEIGHTS)
    code = REMOTE_CODE_TEXT.format(architecture=type(model).__name__, attribute=head_attribute(model))
    (folder / REMOTE_CODE).write_text(code, encoding="utf-8")
    return kind


def export_model(
    model_dir: str | Path, base_dir: str | Path | None, out_dir: str | Path, metrics_path: str | Path | None = None
) -> dict[str, Any]:
    """Write the standalone folder; returns what was exported. A generative model is a plain causal LM
    (AutoModelForCausalLM reads it with no extra code); a head model gets its head's code beside it."""
    from transformers import AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    with quiet_transformers():
        model, labels, meta = load_trained_model(model_dir, base_dir)
    architecture = type(model).__name__
    prompt = read_json(model_dir / PROMPT)
    metrics = read_json(metrics_path) if metrics_path and Path(metrics_path).is_file() else None
    record = {"from": str(model_dir), "architecture": architecture, "merged_lora": meta["mode"] != "full"}
    with staged_dir(out_dir) as tmp:
        generative = meta.get("objective", "head") == "generative"
        head = "generative (label text)" if generative else _head_files(model, meta, tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp)
        write_json(tmp / LABELS, labels.to_json())
        write_json(tmp / PROMPT, prompt)
        write_json(tmp / META, meta | {"export": record})
        (tmp / "README.md").write_text(_model_card(meta, prompt, list(labels.names), metrics), encoding="utf-8")
    return {"architecture": architecture, "head": head, "classes": len(labels.names), "with_metrics": bool(metrics)}
