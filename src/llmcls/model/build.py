"""Sequence-classification models over a base LLM: LoRA / QLoRA adapters (peft) or full fine-tuning, with
the model's own linear score head or an MLP head.

The classifier folder is self-describing: adapter or weights (the head included), tokenizer, `labels.json`
and `llmcls.json` (the resolved params, the base model record and the precision used), so evaluate needs
nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from llmcls.config.params import ModelParams, QloraParams, TrainParams
from llmcls.core.devices import autocast_dtype, process_state, resolve_precision
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import read_json, write_json
from llmcls.data.preprocess import PROMPT, LabelSet
from llmcls.model.base import weights_location

META = "llmcls.json"
LABELS = "labels.json"
HEAD_WEIGHTS = "head.safetensors"  # the head of a fully fine-tuned model (not the base architecture's score layer)


def head_attribute(model: torch.nn.Module) -> str:
    """The name of the classification head: `score` for decoder LLMs, `classifier` for encoders."""
    for name in ("score", "classifier"):
        if isinstance(getattr(model, name, None), torch.nn.Module):
            return name
    raise LlmclsError(f"{type(model).__name__}: no `score` or `classifier` head to replace")


def mlp_head(hidden: int, num_labels: int, dropout: float) -> torch.nn.Sequential:
    """hidden -> 512 -> 256 -> classes with ReLU and dropout, Xavier-initialised (the seed-001 head)."""
    head = torch.nn.Sequential(
        torch.nn.Linear(hidden, 512),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(512, 256),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(256, num_labels),
    )
    for layer in head:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return head


def linear_head(hidden: int, num_labels: int) -> torch.nn.Linear:
    """hidden -> classes with a bias (the architectures' own score layers have none): a warm-started head
    needs the probe's intercept, and an imbalanced dataset its class priors."""
    head = torch.nn.Linear(hidden, num_labels, bias=True)
    torch.nn.init.normal_(head.weight, std=0.02)  # the score layers' own initialiser range
    torch.nn.init.zeros_(head.bias)
    return head


def install_head(model: torch.nn.Module, head: str, dropout: float) -> torch.nn.Module:
    """Put the configured head (params `model.head`) on ``model``. The model's pooler still picks the last
    non-pad token, so the head sees that token's hidden state either way."""
    name = head_attribute(model)
    current = getattr(model, name)
    hidden, num_labels = current.in_features, current.out_features
    new = mlp_head(hidden, num_labels, dropout) if head == "mlp" else linear_head(hidden, num_labels)
    setattr(model, name, new.to(current.weight.device))
    return model


def quantization_config(train: TrainParams):
    """The bitsandbytes config of ``mode: qlora`` (None otherwise); stops before any loading without CUDA."""
    if train.mode != "qlora":
        return None
    return bitsandbytes_config(train.qlora, "train.mode: qlora")


def bitsandbytes_config(q: QloraParams, what: str):
    if not torch.cuda.is_available():
        raise LlmclsError(
            f"{what} quantises the base model with bitsandbytes, which needs a CUDA GPU, and this machine has none."
            " Use train.mode: lora (the same adapter over an unquantised base) or run on a GPU."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise LlmclsError(f"{what} needs bitsandbytes: pip install bitsandbytes") from err
    from transformers import BitsAndBytesConfig

    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=autocast_dtype(q.compute_dtype) or torch.float32,
    )


def frozen_base_dtype(train: TrainParams) -> torch.dtype:
    """The dtype a base loads in for training (params `train.base_precision`). LoRA's frozen base may sit in
    the compute dtype: half the memory, and no per-step cast of its weights under autocast; the adapter and
    the head stay fp32 (peft upcasts adapters; the head is built in fp32). `auto` does so on CUDA under the
    single / ddp strategies (FSDP and DeepSpeed manage parameter dtypes themselves). Full fine-tuning keeps
    fp32 master weights; QLoRA has its own compute dtype."""
    choice = train.base_precision
    if choice == "auto":
        sharded = train.launch.strategy not in ("single", "ddp")
        choice = "compute" if torch.cuda.is_available() and not sharded else "fp32"
    compute = autocast_dtype(resolve_precision(train.precision))
    return compute if train.mode == "lora" and choice == "compute" and compute is not None else torch.float32


def load_settings(quantization, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """from_pretrained's dtype (and quantisation): fp32 master weights (or a frozen LoRA base in ``dtype``),
    reduced precision comes from autocast; a quantised base computes in its compute dtype on this process's
    device."""
    if quantization is None:
        return {"dtype": dtype}
    compute = getattr(quantization, "bnb_4bit_compute_dtype", None) or torch.bfloat16
    return {"quantization_config": quantization, "dtype": compute, "device_map": {"": process_state().device}}


def _base_classifier(
    base_dir: str | Path,
    labels: LabelSet,
    pad_token_id: int,
    head: dict[str, Any],
    quantization=None,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    name, pinned = weights_location(base_dir)
    classifier = AutoModelForSequenceClassification.from_pretrained(
        name,
        num_labels=len(labels.names),
        id2label=labels.id2label,
        label2id=labels.label2id,
        attn_implementation="sdpa",  # PyTorch picks its flash / memory-efficient kernel where it can
        **load_settings(quantization, dtype),
        **pinned,
    )
    # The last-token pooler finds the last non-pad token through config.pad_token_id.
    classifier.config.pad_token_id = pad_token_id
    return install_head(classifier, head["head"], head["head_dropout"])


def build_classifier(
    base_dir: str | Path,
    labels: LabelSet,
    pad_token_id: int,
    model: ModelParams,
    train: TrainParams,
    warm_start: Callable[[torch.nn.Module, torch.nn.Module], Any] | None = None,
) -> torch.nn.Module:
    """A fresh classifier; call after seeding, since the head is randomly initialised. ``warm_start(model,
    head)`` may set the head from the frozen base before any adapter wraps it (LoRA starts as the identity,
    so the base's features are the adapted model's first features)."""
    quantization = quantization_config(train)
    head = dataclasses.asdict(model)
    classifier = _base_classifier(base_dir, labels, pad_token_id, head, quantization, frozen_base_dtype(train))
    if warm_start is not None:
        warm_start(classifier, getattr(classifier, head_attribute(classifier)))
    if train.mode == "full":
        return classifier
    from peft import TaskType

    # SEQ_CLS keeps the head (score / classifier) trainable and saved: modules_to_save.
    return with_adapter(classifier, train, TaskType.SEQ_CLS, quantization is not None)


def with_adapter(model: torch.nn.Module, train: TrainParams, task_type, quantized: bool) -> torch.nn.Module:
    """``model`` with params `train.lora`'s adapter (peft); a k-bit base is prepared for training first."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        # fp32 norms and head, input grads on: what k-bit training needs to be stable.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=train.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = train.lora
    config = LoraConfig(
        task_type=task_type,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules),
        bias=lora.bias,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
    )
    wrapped = get_peft_model(model, config)
    # peft keeps target_modules as a set, which adapter_config.json then lists in hash order (it changes with
    # each process's hash seed); sorted, the saved adapter, and so its DVC hash, is the same in every run.
    for settings in wrapped.peft_config.values():
        for key, value in vars(settings).items():
            if isinstance(value, set):
                setattr(settings, key, sorted(value))
    return wrapped


def base_lm(base_dir: str | Path, quantization=None, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The base model with its language-modelling head (the generative objective and label scoring)."""
    from transformers import AutoModelForCausalLM

    name, pinned = weights_location(base_dir)
    return AutoModelForCausalLM.from_pretrained(
        name, attn_implementation="sdpa", **load_settings(quantization, dtype), **pinned
    )


def build_generative(base_dir: str | Path, train: TrainParams) -> torch.nn.Module:
    """A causal LM to fine-tune on prompt -> label text (train.objective: generative): LoRA / QLoRA / full."""
    from peft import TaskType

    quantization = quantization_config(train)
    lm = base_lm(base_dir, quantization, frozen_base_dtype(train))
    return lm if train.mode == "full" else with_adapter(lm, train, TaskType.CAUSAL_LM, quantization is not None)


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
    model_dir: str | Path, base_dir: str | Path | None, quantize: str | None = None
) -> tuple[torch.nn.Module, LabelSet, dict[str, Any]]:
    """Reload a saved classifier for inference. LoRA adapters are merged into the base for speed, unless the
    base is loaded in 8 / 4 bit (``quantize``, CUDA only), where the adapter stays separate. A standalone
    folder (full fine-tune, export) needs no ``base_dir``."""
    model_dir = Path(model_dir)
    meta = read_json(model_dir / META)
    labels = LabelSet.from_json(read_json(model_dir / LABELS))
    head = meta["params"]["model"]
    quantization = None
    if quantize:  # the run's own qlora settings (params.yaml), at the bit width asked for
        settings = QloraParams(**(meta["params"]["train"]["qlora"] | {"bits": int(quantize[0])}))
        quantization = bitsandbytes_config(settings, f"evaluate.quantize: {quantize}")
    generative = meta.get("objective", "head") == "generative"
    if is_standalone(meta):
        from transformers import AutoModelForCausalLM

        extra = {"quantization_config": quantization} if quantization else {}
        if meta["base_model"].get("trust_remote_code"):
            extra["trust_remote_code"] = True
        auto = AutoModelForCausalLM if generative else AutoModelForSequenceClassification
        model = auto.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa", **extra)
        if not generative:  # a causal LM writes its label; a classifier's own head is put in place
            from safetensors.torch import load_file

            install_head(model, head["head"], head["head_dropout"])
            getattr(model, head_attribute(model)).load_state_dict(load_file(model_dir / HEAD_WEIGHTS))
    else:
        from peft import PeftModel

        if base_dir is None or not Path(base_dir).is_dir():
            raise LlmclsError(
                f"{model_dir} holds a LoRA adapter, which needs its base model folder (models/base after "
                f"`dvc repro`; not found: {base_dir}). Pass it, or `llmcls export` a standalone folder."
            )
        if generative:
            base = base_lm(base_dir, quantization)
        else:
            base = _base_classifier(base_dir, labels, meta["pad_token_id"], head, quantization)
        model = PeftModel.from_pretrained(base, model_dir)
        model = model if quantization else model.merge_and_unload()
    return model.eval(), labels, meta
