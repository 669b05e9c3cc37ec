"""Building models over a base LLM: a sequence classifier with llmcls's head, or the causal LM of the generative
objective, each as LoRA / QLoRA adapters (peft) or for full fine-tuning."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from llmcls.config.params import ModelParams, QloraParams, TrainParams
from llmcls.core.artifacts import MULTI_LABEL, LabelSet
from llmcls.core.devices import autocast_dtype, process_state, resolve_precision
from llmcls.core.errors import LlmclsError
from llmcls.model.base import weights_location
from llmcls.model.heads import head_attribute, install_head


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft probes the deprecated `is_gradient_checkpointing` of every model it wraps; transformers' warning
    about it is peft's to fix, not the user's, so it is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


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


def base_classifier(
    base_dir: str | Path,
    labels: LabelSet,
    pad_token_id: int,
    head: dict[str, Any],
    quantization=None,
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    name, pinned = weights_location(base_dir, trust_remote_code)
    classifier = AutoModelForSequenceClassification.from_pretrained(
        name,
        num_labels=labels.outputs,
        problem_type=labels.problem_type,
        id2label=labels.id2label,
        label2id=labels.label2id,
        attn_implementation="sdpa",  # PyTorch picks its flash / memory-efficient kernel where it can
        **load_settings(quantization, dtype),
        **pinned,
    )
    # The last-token pooler finds the last non-pad token through config.pad_token_id.
    classifier.config.pad_token_id = pad_token_id
    # One forward per batch reads the last token's state: a KV cache would be built for every layer and dropped.
    classifier.config.use_cache = False
    # A multi-label head's probabilities meet tuned thresholds: computed in fp32 (heads.fp32_output).
    return install_head(classifier, head["head"], head["head_dropout"], fp32=labels.task == MULTI_LABEL)


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
    head = model.to_dict()
    dtype = frozen_base_dtype(train)
    classifier = base_classifier(base_dir, labels, pad_token_id, head, quantization, dtype, model.trust_remote_code)
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
    with quiet_peft():
        wrapped = get_peft_model(model, config)
    # peft keeps target_modules as a set, which adapter_config.json then lists in hash order (it changes with
    # each process's hash seed); sorted, the saved adapter, and so its DVC hash, is the same in every run.
    for settings in wrapped.peft_config.values():
        for key, value in vars(settings).items():
            if isinstance(value, set):
                setattr(settings, key, sorted(value))
    return wrapped


def base_lm(
    base_dir: str | Path, quantization=None, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False
) -> torch.nn.Module:
    """The base model with its language-modelling head (the generative objective and label scoring)."""
    from transformers import AutoModelForCausalLM

    name, pinned = weights_location(base_dir, trust_remote_code)
    return AutoModelForCausalLM.from_pretrained(
        name, attn_implementation="sdpa", **load_settings(quantization, dtype), **pinned
    )


def build_generative(base_dir: str | Path, train: TrainParams, trust_remote_code: bool = False) -> torch.nn.Module:
    """A causal LM to fine-tune on prompt -> label text (train.objective: generative): LoRA / QLoRA / full."""
    from peft import TaskType

    quantization = quantization_config(train)
    lm = base_lm(base_dir, quantization, frozen_base_dtype(train), trust_remote_code)
    return lm if train.mode == "full" else with_adapter(lm, train, TaskType.CAUSAL_LM, quantization is not None)
