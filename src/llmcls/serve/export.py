"""`llmcls export`: a trained classifier as one standalone folder.

LoRA is merged into the base; the folder holds safetensors weights, the tokenizer, labels.json, prompt.json,
llmcls.json and a model card (README.md) with the run's metrics. `llmcls predict` reads it with no base
model and no DVC repository; plain transformers reads it with `trust_remote_code=True`, through
model/modeling_llmcls.py saved beside the weights (any architecture with llmcls's head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmcls.core.artifacts import HEAD_WEIGHTS, LABELS, META, PROMPT
from llmcls.core.outputs import check_replaceable, read_json, staged_dir, write_json
from llmcls.model.heads import head_attribute
from llmcls.model.modeling_llmcls import LlmclsForSequenceClassification
from llmcls.model.store import load_trained_model
from llmcls.serve.card import model_card
from llmcls.serve.predict import quiet_transformers


def portable_classifier(model, meta: dict[str, Any]) -> tuple[torch.nn.Module, str]:
    """The trained classifier as LlmclsForSequenceClassification (the same weights, registered for
    AutoModelForSequenceClassification, so saving it writes its modeling code too); and the head's kind.

    Plain transformers reads the logits: a regression head's last layer gets the training score scale folded
    in (its logit is the score itself), and the config carries a multi-label model's thresholds and an
    integer score's cut-points (`llmcls_decision`); `problem_type` and `num_labels` are the task's."""
    attribute = head_attribute(model)
    head = getattr(model, attribute)
    kind = "mlp" if isinstance(head, torch.nn.Sequential) else "linear"
    in_features = head[0].in_features if kind == "mlp" else head.in_features
    config = model.config
    config.llmcls_head = {
        "kind": kind,
        "attribute": attribute,
        "in_features": in_features,
        "dropout": meta["params"]["model"]["head_dropout"],
    }
    LlmclsForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    config.llmcls_decision = meta.get("decision")
    portable = LlmclsForSequenceClassification(config)
    portable.load_state_dict(model.state_dict())
    if scale := meta.get("target_scale"):
        last = getattr(portable, attribute)[-1] if kind == "mlp" else getattr(portable, attribute)
        with torch.no_grad():
            last.weight.mul_(scale["std"])
            last.bias.mul_(scale["std"]).add_(scale["mean"])
    return portable.eval(), kind


def export_model(
    model_dir: str | Path,
    base_dir: str | Path | None,
    out_dir: str | Path,
    metrics_path: str | Path | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Write the standalone folder; returns what was exported. A generative model is a plain causal LM
    (AutoModelForCausalLM reads it with no extra code); a head model gets its head's code beside it."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_replaceable(out_dir, "export")  # before the minutes of loading and merging, not after
    with quiet_transformers():
        model, labels, meta = load_trained_model(model_dir, base_dir, None, trust_remote_code)
    architecture = type(model).__name__
    prompt = read_json(model_dir / PROMPT)
    metrics = read_json(metrics_path) if metrics_path and Path(metrics_path).is_file() else None
    record = {"from": str(model_dir), "architecture": architecture, "merged_lora": meta["mode"] != "full"}
    with staged_dir(out_dir, "export") as tmp:
        if meta.get("objective", "head") == "generative":
            head = "generative (label text)"
        else:
            head_state = getattr(model, head_attribute(model)).state_dict()
            # llmcls's own loader reads the head apart (the architecture's class has a score layer of its own).
            save_file({k: v.contiguous() for k, v in head_state.items()}, tmp / HEAD_WEIGHTS)
            model, head = portable_classifier(model, meta)
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code).save_pretrained(tmp)
        write_json(tmp / LABELS, labels.to_json())
        write_json(tmp / PROMPT, prompt)
        write_json(tmp / META, meta | {"export": record})
        (tmp / "README.md").write_text(model_card(meta, prompt, list(labels.names), metrics), encoding="utf-8")
    return {
        "architecture": architecture,
        "head": head,
        "task": labels.task,
        "classes": len(labels.names),
        "with_metrics": bool(metrics),
    }
