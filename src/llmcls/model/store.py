"""Saving a trained classifier as a self-describing folder, and loading it back for inference.

The folder holds the adapter or weights (the head included), the tokenizer, `labels.json`, `prompt.json` and
`llmcls.json` (the resolved params, the base model record and the precision used), so evaluate, predict and
export need nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from llmcls.config.params import QloraParams
from llmcls.core.artifacts import HEAD_WEIGHTS, LABELS, META, MULTI_LABEL, PROMPT, LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import read_json, write_json
from llmcls.model.base import remote_code, require_safetensors
from llmcls.model.build import base_classifier, base_lm, bitsandbytes_config, quiet_peft
from llmcls.model.heads import head_attribute, install_head


def save_classifier(
    model, tokenizer, labels: LabelSet, meta: dict[str, Any], prompt: dict[str, Any], out_dir: str | Path
) -> None:
    """Weights or adapter, tokenizer, labels.json, llmcls.json and prompt.json (how to encode a new text)."""
    out_dir = Path(out_dir)
    write_json(out_dir / PROMPT, prompt)
    model.save_pretrained(out_dir)
    if meta["mode"] == "full" and meta.get("objective", "head") == "head":
        from safetensors.torch import save_file

        head = getattr(model, head_attribute(model))
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, out_dir / HEAD_WEIGHTS)
    tokenizer.save_pretrained(out_dir)
    write_json(out_dir / LABELS, labels.to_json())
    write_json(out_dir / META, meta)


def is_standalone(meta: dict[str, Any]) -> bool:
    """Whether a model folder holds all its weights: a full fine-tune, or an export (LoRA merged in)."""
    return meta["mode"] == "full" or "export" in meta


def load_trained_model(
    model_dir: str | Path, base_dir: str | Path | None, quantize: str | None = None, trust_remote_code: bool = False
) -> tuple[torch.nn.Module, LabelSet, dict[str, Any]]:
    """Reload a saved classifier for inference. LoRA adapters are merged into the base for speed, unless the
    base is loaded in 8 / 4 bit (``quantize``, CUDA only), where the adapter stays separate. A standalone
    folder (full fine-tune, export) needs no ``base_dir``. The folders' own Python runs only with
    ``trust_remote_code`` (what they record of themselves never grants it)."""
    model_dir = Path(model_dir)
    require_safetensors(model_dir)
    meta = read_json(model_dir / META)
    labels = LabelSet.read(model_dir)
    head = meta["params"]["model"]
    quantization = None
    if quantize:  # the run's own qlora settings (params.yaml), at the bit width asked for
        settings = QloraParams(**(meta["params"]["train"]["qlora"] | {"bits": int(quantize[0])}))
        quantization = bitsandbytes_config(settings, f"evaluate.quantize: {quantize}")
    generative = meta.get("objective", "head") == "generative"
    if is_standalone(meta):
        from transformers import AutoModelForCausalLM

        extra = {"quantization_config": quantization} if quantization else {}
        extra["trust_remote_code"] = remote_code(
            model_dir, bool(meta["base_model"].get("trust_remote_code")), trust_remote_code
        )
        auto = AutoModelForCausalLM if generative else AutoModelForSequenceClassification
        try:
            model = auto.from_pretrained(
                model_dir, dtype=torch.float32, attn_implementation="sdpa", use_safetensors=True, **extra
            )
        except ValueError as error:  # transformers refusing the folder's own code (trust_remote_code=False)
            if "trust_remote_code" not in str(error):
                raise
            remote_code(model_dir, True, False)  # raises llmcls's one error
        if not generative:  # a causal LM writes its label; a classifier's own head is put in place
            from safetensors.torch import load_file

            install_head(model, head["head"], head["head_dropout"], fp32=labels.task == MULTI_LABEL)
            getattr(model, head_attribute(model)).load_state_dict(load_file(model_dir / HEAD_WEIGHTS))
    else:
        from peft import PeftModel

        if base_dir is None or not Path(base_dir).is_dir():
            raise LlmclsError(
                f"{model_dir} holds a LoRA adapter, which needs its base model folder (models/base after "
                f"`dvc repro`; not found: {base_dir}). Pass it, or `llmcls export` a standalone folder."
            )
        if generative:
            base = base_lm(base_dir, quantization, trust_remote_code=trust_remote_code)
        else:
            pad = meta["pad_token_id"]
            base = base_classifier(base_dir, labels, pad, head, quantization, trust_remote_code=trust_remote_code)
        with quiet_peft():
            model = PeftModel.from_pretrained(base, model_dir)
        model = model if quantization else model.merge_and_unload()
    return model.eval(), labels, meta
