"""The train stage's logic: HF Trainer over pre-tokenised splits, best checkpoint kept, DVCLive curves.

Runs the same under plain `python` and `accelerate launch` (DDP on many GPUs or gloo on CPU); only the
main process writes the model and the DVCLive files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import (
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from llmcls.config.params import Params, TrainParams
from llmcls.core.devices import enable_fast_matmul, process_state, resolve_precision, use_all_cpu_cores
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import read_json, remove, write_json
from llmcls.data.preprocess import PROMPT, LabelSet
from llmcls.evaluate.metrics import GREATER_IS_BETTER, softmax, summary_metrics
from llmcls.model.base import load_tokenizer
from llmcls.model.batches import TokenBudgetTrainer, batches_per_process
from llmcls.model.build import build_classifier, build_generative, quantization_config, save_classifier
from llmcls.train.head_init import warm_start_head
from llmcls.train.weight_averaging import TailAverage

FINGERPRINT = "llmcls_run.json"
# train.torch_compile pads batch lengths to a multiple of this: max_length 256 gives at most 8 lengths to compile.
COMPILE_PAD_MULTIPLE = 32


# Trainer log entries that time the run: they differ between two runs of the same model.
TIMINGS = ("_runtime", "_per_second")


class LiveMetrics(TrainerCallback):
    """Log Trainer metrics to DVCLive at their global step (train/* and eval/* curves), timings left out:
    metrics/train is a DVC output and must hash the same for the same run."""

    def __init__(self, live):
        self.live = live

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.live is None or not state.is_world_process_zero:
            return
        self.live.step = state.global_step
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not key.endswith(TIMINGS):
                name = f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key.removeprefix('train_')}"
                self.live.log_metric(name, value)
        self.live.make_summary()


def to_dataset(frame: pd.DataFrame):
    """A datasets.Dataset of token ids, labels and lengths (for length-grouped batches)."""
    import datasets

    return datasets.Dataset.from_dict(
        {
            "input_ids": frame["input_ids"].map(list).tolist(),
            "labels": frame["label_id"].tolist(),
            "length": frame["length"].tolist(),
        }
    )


def class_weight_vector(setting: str | dict[str, float] | None, labels: LabelSet, train_ids) -> list[float] | None:
    """Per-class loss weights in label-id order: 'balanced' is n / (k * count_c), a mapping names them."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = np.bincount(np.asarray(train_ids), minlength=len(labels.names)).astype(float)
        return (counts.sum() / (len(counts) * np.maximum(counts, 1))).tolist()
    unknown = sorted(set(setting) - set(labels.names))
    if unknown:
        raise LlmclsError(f"params.yaml train.class_weights: {unknown} are not labels of this dataset {labels.names}")
    return [float(setting.get(name, 1.0)) for name in labels.names]


def weighted_loss(weights: list[float] | None, smoothing: float):
    """A Trainer ``compute_loss_func``: cross-entropy with class weights and label smoothing, summed and
    divided by the examples of the whole (accumulated, all-process) batch, as the Trainer expects."""
    weight = torch.tensor(weights, dtype=torch.float32) if weights else None

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()
        w = weight.to(logits.device) if weight is not None else None
        total = torch.nn.functional.cross_entropy(logits, labels, weight=w, label_smoothing=smoothing, reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else len(labels))

    return loss


def compute_metrics(eval_pred) -> dict[str, float]:
    return summary_metrics(eval_pred.label_ids, softmax(np.asarray(eval_pred.predictions, dtype=np.float64)))


def fingerprint(params: Params, split_dir: Path, base_dir: Path) -> str:
    """What a checkpoint must match to be resumed: the train-relevant params and the input data."""
    settings = {"train": dataclasses.asdict(params.train), "model": dataclasses.asdict(params.model)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted([*split_dir.glob("*"), base_dir / "llmcls_base.json"]):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def resumable_checkpoint(checkpoint_dir: Path, stamp: str) -> str | None:
    """The last complete checkpoint of an interrupted run with the same fingerprint; otherwise start clean.

    The Trainer writes trainer_state.json last, so a checkpoint without it was cut short by the kill: it is
    removed and the one before it is resumed.
    """
    if checkpoint_dir.is_dir():
        saved = checkpoint_dir / FINGERPRINT
        if saved.is_file() and read_json(saved).get("fingerprint") == stamp:
            complete = []
            for folder in checkpoint_dir.glob("checkpoint-*"):
                if (folder / "trainer_state.json").is_file():
                    complete.append(folder)
                else:
                    shutil.rmtree(folder)
            return str(max(complete, key=lambda f: int(f.name.split("-")[-1]))) if complete else None
        shutil.rmtree(checkpoint_dir)
    return None


def training_arguments(params: Params, checkpoint_dir: Path, precision: str, **overrides: Any) -> TrainingArguments:
    """The Trainer settings params.yaml describes; ``overrides`` replace single ones (the benchmark uses them)."""
    t = params.train
    settings = dict(
        output_dir=str(checkpoint_dir),
        seed=t.seed,
        data_seed=t.seed,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=params.evaluate.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=t.metric_for_best,
        greater_is_better=GREATER_IS_BETTER[t.metric_for_best],
        logging_steps=min(10, t.eval_steps),
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        torch_compile=t.torch_compile,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return TrainingArguments(**(settings | overrides))


def step_floor(train: TrainParams, lengths: list[int], processes: int) -> int | None:
    """The optimizer steps to run when ``train.min_steps`` lifts a short run (None: epochs decide).

    Epochs over a small dataset give few steps (100 rows, batch 16, 2 epochs: 14), too few to learn; the
    floor makes those runs longer and leaves the others alone. max_steps, when set, always wins.
    ``lengths`` are the train rows' token counts (token-budget batches are counted from them).
    """
    if train.max_steps > 0 or train.min_steps <= 0:
        return None
    if train.max_tokens is not None:
        batches = batches_per_process(lengths, train.max_tokens, processes)
    else:
        batches = math.ceil(len(lengths) / (train.batch_size * processes))
    per_epoch = max(batches // train.gradient_accumulation_steps, 1)  # as the Trainer counts an epoch
    planned = math.ceil(per_epoch * train.epochs)
    return train.min_steps if planned < train.min_steps else None


def make_trainer(
    model,
    args: TrainingArguments,
    tokenizer,
    train: pd.DataFrame,
    val: pd.DataFrame,
    collator=None,
    callbacks=(),
    loss_func=None,
    scoring: dict[str, Any] | None = None,
    max_tokens: int | None = None,
) -> TokenBudgetTrainer:
    """A Trainer over pre-tokenised frames; the default collator pads each batch to its longest row. With
    ``scoring`` (the generative objective: label texts' token ids, ...) it trains the causal LM on prompt +
    label and validates by scoring the label texts. ``max_tokens`` makes training batches token budgets."""
    common = dict(model=model, args=args, processing_class=tokenizer, callbacks=list(callbacks), max_tokens=max_tokens)
    # A compiled model recompiles for each new input shape: padded to a multiple, the lengths take a few values.
    multiple = COMPILE_PAD_MULTIPLE if args.torch_compile else None
    if scoring is not None:
        from llmcls.train.generative import IGNORE, ScoredTrainer, lm_dataset

        targets, eos = scoring["targets"], tokenizer.eos_token_id
        return ScoredTrainer(
            **common,
            train_dataset=lm_dataset(train, targets, eos),
            eval_dataset=lm_dataset(val, targets, eos),
            data_collator=collator
            or DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, pad_to_multiple_of=multiple),
            scoring=scoring | {"prompts": val["input_ids"].tolist(), "truth": val["label_id"].tolist()},
        )
    return TokenBudgetTrainer(
        **common,
        train_dataset=to_dataset(train),
        eval_dataset=to_dataset(val),
        data_collator=collator or DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple),
        compute_metrics=compute_metrics,
        compute_loss_func=loss_func,
    )


def train_classifier(
    params: Params, split_dir: Path, base_dir: Path, model_dir: Path, live_dir: Path, checkpoint_dir: Path
) -> dict[str, Any]:
    """Fine-tune on the train split, pick the best checkpoint on val, save it to ``model_dir``."""
    quantization_config(params.train)  # qlora without CUDA / bitsandbytes stops here, before loading anything
    set_seed(params.train.seed)
    enable_fast_matmul()
    tokenizer = load_tokenizer(base_dir)
    labels = LabelSet.from_json(read_json(split_dir / "labels.json"))
    train = pd.read_parquet(split_dir / "train.parquet")
    # Evaluation walks val in order: sorted by length, its batches carry almost no padding.
    val = pd.read_parquet(split_dir / "val.parquet").sort_values("length", ascending=False, kind="stable")
    precision = resolve_precision(params.train.precision)
    t = params.train
    use_all_cpu_cores(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    # The probe is a linear layer: an mlp head (model.head) starts random whatever head_init says.
    probe = t.head_init == "linear_probe" and params.model.head == "linear"
    head_init: dict[str, Any] = {"method": "linear_probe" if probe else "random"}

    def warm_start(base, head) -> None:
        # Every process fits the same probe on the same rows (deterministic), so the ranks start equal.
        head_init.update(
            warm_start_head(
                base if getattr(base, "hf_quantizer", None) else base.to(process_state().device),
                head,
                train["input_ids"].tolist(),
                train["label_id"].tolist(),
                tokenizer.pad_token_id,
                params.evaluate.batch_size,
                t.probe_C,
                t.seed,
                precision,
            )
        )

    scoring, texts, weights, loss_func = None, None, None, None
    if t.objective == "generative":
        from llmcls.evaluate.label_scoring import label_token_ids
        from llmcls.train.generative import label_texts

        head_init["method"] = "none: the generative objective writes the label"
        texts = label_texts(labels, read_json(split_dir / PROMPT), t.verbalizer)
        model = build_generative(base_dir, t)
        scoring = {
            "targets": label_token_ids(tokenizer, texts),
            "pad_id": tokenizer.pad_token_id,
            "batch_size": params.evaluate.batch_size,
            "precision": precision,
        }
    else:
        model = build_classifier(
            base_dir, labels, tokenizer.pad_token_id, params.model, t, warm_start=warm_start if probe else None
        )
        weights = class_weight_vector(t.class_weights, labels, train["label_id"])
        # Always our loss: transformers hands `num_items_in_batch` to models whose sequence-classification loss
        # ignores it, then scales that loss by the process count, which doubled gradients under 2-process DDP.
        loss_func = weighted_loss(weights, t.label_smoothing)
    callbacks: list[TrainerCallback] = []
    average = TailAverage(model, t.average_last) if t.average_last is not None else None
    if average is not None:
        callbacks.append(average)
    if t.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))

    stamp = fingerprint(params, split_dir, base_dir)
    # The main process inspects (and may clean) the checkpoint folder first; the others then read what it left,
    # so every rank agrees on the checkpoint (two ranks deleting the same folder at once crashed DDP).
    with process_state().main_process_first():
        resume = resumable_checkpoint(checkpoint_dir, stamp)
    floor = step_floor(t, train["length"].tolist(), process_state().num_processes)
    args = training_arguments(params, checkpoint_dir, precision, **({"max_steps": floor} if floor else {}))
    live = None
    if args.process_index == 0:
        from dvclive import Live

        remove(model_dir, *([] if resume else [live_dir]))
        # resume=True keeps the curves of the interrupted run; dvc.yaml owns the plots, so no dvcyaml.
        live = Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None, resume=resume is not None)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        write_json(checkpoint_dir / FINGERPRINT, {"fingerprint": stamp})
    callbacks.insert(0, LiveMetrics(live))
    trainer = make_trainer(
        model,
        args,
        tokenizer,
        train,
        val,
        callbacks=callbacks,
        loss_func=loss_func,
        scoring=scoring,
        max_tokens=t.max_tokens,
    )
    if resume:
        print(f"llmcls: resuming from checkpoint {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    state = trainer.state
    summary = {
        "best_step": int(Path(state.best_model_checkpoint).name.split("-")[-1])
        if state.best_model_checkpoint
        else None,
        f"best_val_{params.train.metric_for_best}": state.best_metric,
        "precision": precision,
        "world_size": args.world_size,
        "global_batch_size": args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        if t.max_tokens is None
        else f"{t.max_tokens * args.gradient_accumulation_steps * args.world_size} tokens",
        "steps": state.global_step,
        "stopped_early": state.global_step < state.max_steps,
        "class_weights": weights,
        "head_init": head_init,
        "weight_average": average.record() if average is not None else None,
    }
    if trainer.is_world_process_zero():
        meta = {
            "mode": params.train.mode,
            "objective": t.objective,
            **({"label_texts": texts} if texts else {}),
            "precision": precision,
            "pad_token_id": tokenizer.pad_token_id,
            "base_model": read_json(base_dir / "llmcls_base.json"),
            "params": dataclasses.asdict(params),
            "training": summary,  # no timings: the model folder must hash the same for the same run
        }
        save_classifier(trainer.model, tokenizer, labels, meta, read_json(split_dir / PROMPT), model_dir)
        for key, value in summary.items():
            if isinstance(value, (int, float)):
                live.summary[key] = value
        live.end()
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        # Resumption state is for an interrupted run. Kept after a finished one, a forced re-run of the same
        # settings "resumed" at the last step and trained nothing, and its curves lost their eval series.
        remove(checkpoint_dir)
    # Timings and memory go to the stage's run log, apart from the model and its metrics.
    run = {
        "train_runtime_s": result.metrics["train_runtime"],
        "train_samples_per_second": result.metrics["train_samples_per_second"],
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }
    return summary | {"run": run}
