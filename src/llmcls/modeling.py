"""Sequence-classification models over a base LLM: LoRA adapters (peft) or full fine-tuning.

The classifier folder is self-describing: adapter or weights, tokenizer, `labels.json` and `llmcls.json`
(the resolved params, the base model record and the precision used), so evaluate needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from llmcls.base_model import weights_location
from llmcls.outputs import read_json, write_json
from llmcls.params import LoraParams
from llmcls.preprocessing import LabelSet

META = "llmcls.json"
LABELS = "labels.json"


def _base_classifier(base_dir: str | Path, labels: LabelSet, pad_token_id: int) -> torch.nn.Module:
    name, pinned = weights_location(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        name,
        num_labels=len(labels.names),
        id2label=labels.id2label,
        label2id=labels.label2id,
        dtype=torch.float32,  # fp32 master weights; reduced precision comes from autocast
        attn_implementation="sdpa",  # PyTorch picks its flash / memory-efficient kernel where it can
        **pinned,
    )
    # The last-token pooler finds the last non-pad token through config.pad_token_id.
    model.config.pad_token_id = pad_token_id
    return model


def build_classifier(
    base_dir: str | Path, labels: LabelSet, pad_token_id: int, mode: str, lora: LoraParams
) -> torch.nn.Module:
    """A fresh classifier; call after seeding, since the score head is randomly initialised."""
    model = _base_classifier(base_dir, labels, pad_token_id)
    if mode == "full":
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # keeps the score head trainable and saved (modules_to_save)
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules),
    )
    return get_peft_model(model, config)


def save_classifier(model, tokenizer, labels: LabelSet, meta: dict[str, Any], out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_json(out_dir / LABELS, labels.to_json())
    write_json(out_dir / META, meta)


def load_classifier(model_dir: str | Path, base_dir: str | Path) -> tuple[torch.nn.Module, LabelSet, dict[str, Any]]:
    """Reload a saved classifier for inference (LoRA adapters merged into the base for speed)."""
    model_dir = Path(model_dir)
    meta = read_json(model_dir / META)
    labels = LabelSet.from_json(read_json(model_dir / LABELS))
    if meta["mode"] == "full":
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation="sdpa"
        )
    else:
        from peft import PeftModel

        base = _base_classifier(base_dir, labels, meta["pad_token_id"])
        model = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
    return model.eval(), labels, meta
