"""The Hugging Face Trainer as params.yaml configures it: arguments, the step floor, DVCLive logging, datasets
and collators for the head and the generative objective."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import expit, softmax
from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from llmcls.config.params import Params, TrainParams
from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SINGLE_LABEL, LabelSet, targets
from llmcls.core.progress import Progress, add_phase_time
from llmcls.evaluate.metrics import (
    GREATER_IS_BETTER,
    metric_for_best,
    multilabel_metrics,
    regression_metrics,
    summary_metrics,
)
from llmcls.train.sampler import TokenBudgetTrainer, batches_per_process

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


class TrainingProgress(TrainerCallback):
    """What the console shows while training, in place of the Trainer's printed dicts: the steps with the
    running loss, their rate and ETA, each validation's batches and result. The run log's phases get the
    validations' time and the training loop's time without them (core/progress.py)."""

    def __init__(self) -> None:
        self.steps: Progress | None = None
        self.validation: Progress | None = None
        self.validated = 0.0  # seconds of validation inside this training loop

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = Progress("train", state.max_steps, "steps", initial=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.steps is not None:
            self.steps.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.steps is not None and logs and "loss" in logs:
            self.steps.note = f"loss {logs['loss']:.4f}"

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.validation is None:
            total = len(eval_dataloader) if eval_dataloader is not None else 0
            self.validation = Progress(f"validate at step {state.global_step}", total, "batches")
        self.validation.update(1)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.validation is None:
            return
        best = f"eval_{args.metric_for_best_model}"
        if metrics and isinstance(metrics.get(best), (int, float)):
            self.validation.note = f"val {args.metric_for_best_model} {metrics[best]:.4f}"
        seconds = self.validation.close()
        add_phase_time("validation", seconds)
        self.validated += seconds
        self.validation = None

    def on_train_end(self, args, state, control, **kwargs):
        if self.steps is not None:
            add_phase_time("training", self.steps.close() - self.validated)


def training_targets(frame: pd.DataFrame, labels: LabelSet | None, scale: dict[str, float] | None) -> list:
    """What the head learns per row: the class id, the 0/1 label vector, or the standardised score."""
    if labels is None or labels.task not in (MULTI_LABEL, REGRESSION):
        return frame["label_id"].tolist()
    y = targets(frame, labels)
    return ((y - scale["mean"]) / scale["std"]).tolist() if labels.task == REGRESSION else y.tolist()


def to_dataset(frame: pd.DataFrame, labels: LabelSet | None = None, scale: dict[str, float] | None = None):
    """A datasets.Dataset of token ids, targets and lengths (for length-grouped batches)."""
    import datasets

    return datasets.Dataset.from_dict(
        {
            "input_ids": frame["input_ids"].map(list).tolist(),
            "labels": training_targets(frame, labels, scale),
            "length": frame["length"].tolist(),
        }
    )


def metrics_function(task: str = "single_label", scale: dict[str, float] | None = None):
    """The Trainer's ``compute_metrics`` for ``task``: class metrics of the softmax; multi-label metrics of the
    sigmoids at 0.5 (tuned thresholds come after training); score metrics with the scores put back on their
    scale."""

    def compute(eval_pred) -> dict[str, float]:
        outputs = np.asarray(eval_pred.predictions, dtype=np.float64)
        if task == MULTI_LABEL:
            probs = expit(outputs)
            return multilabel_metrics(np.asarray(eval_pred.label_ids), probs, (probs >= 0.5).astype(int))
        if task == REGRESSION:
            unscale = lambda x: np.asarray(x, dtype=np.float64) * scale["std"] + scale["mean"]  # noqa: E731
            return regression_metrics(unscale(eval_pred.label_ids), unscale(outputs[:, 0]))
        return summary_metrics(eval_pred.label_ids, softmax(outputs, axis=-1))

    return compute


def validation_interval(train: TrainParams, planned: int | None) -> int:
    """Optimizer steps between validations (and checkpoints): ``train.eval_steps``, or with it null the run's
    ``planned`` steps shared out into ``train.validations`` (the last at the end). A count, not an interval,
    keeps validation the same share of a run as the train set grows: the val rows grow with it, and a fixed
    interval would validate 10x as often on 10x the rows."""
    if train.eval_steps is not None:
        return train.eval_steps
    return max(math.ceil((planned or 1) / train.validations), 1)


def training_arguments(
    params: Params,
    checkpoint_dir: Path,
    precision: str,
    task: str = SINGLE_LABEL,
    planned: int | None = None,
    **overrides: Any,
) -> TrainingArguments:
    """The Trainer settings params.yaml describes for ``task`` (which metric_for_best resolves against), for a
    run of ``planned`` optimizer steps (see planned_steps); ``overrides`` replace single ones (the benchmark
    uses them)."""
    t = params.train
    best_metric = metric_for_best(t.metric_for_best, task)
    interval = validation_interval(t, overrides.get("max_steps") or planned)
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
        eval_steps=interval,
        save_strategy="steps",
        save_steps=interval,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=best_metric,
        greater_is_better=GREATER_IS_BETTER[best_metric],
        logging_steps=min(10, interval),
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


def planned_steps(train: TrainParams, lengths: list[int], processes: int) -> int:
    """The optimizer steps a run will take: max_steps when set, else its epochs over ``lengths`` (the train
    rows' token counts, which token-budget batches are counted from), lifted to ``train.min_steps``."""
    if train.max_steps > 0:
        return train.max_steps
    if train.max_tokens is not None:
        batches = batches_per_process(lengths, train.max_tokens, processes)
    else:
        batches = math.ceil(len(lengths) / (train.batch_size * processes))
    per_epoch = max(batches // train.gradient_accumulation_steps, 1)  # as the Trainer counts an epoch
    return max(math.ceil(per_epoch * train.epochs), train.min_steps)


def step_floor(train: TrainParams, lengths: list[int], processes: int) -> int | None:
    """The optimizer steps to run when ``train.min_steps`` lifts a short run (None: epochs decide).

    Epochs over a small dataset give few steps (100 rows, batch 16, 2 epochs: 14), too few to learn; the
    floor makes those runs longer and leaves the others alone. max_steps, when set, always wins.
    """
    if train.max_steps > 0 or train.min_steps <= 0:
        return None
    planned = planned_steps(train.model_copy(update={"min_steps": 0}), lengths, processes)
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
    labels: LabelSet | None = None,
    scale: dict[str, float] | None = None,
) -> TokenBudgetTrainer:
    """A Trainer over pre-tokenised frames; the default collator pads each batch to its longest row. With
    ``scoring`` (the generative objective: label texts' token ids, ...) it trains the causal LM on prompt +
    label and validates by scoring the label texts. ``max_tokens`` makes training batches token budgets.
    ``labels`` give the task (targets and metrics); ``scale`` a regression's score mean and std."""
    callbacks = [TrainingProgress(), *callbacks]
    common = dict(model=model, args=args, processing_class=tokenizer, callbacks=callbacks, max_tokens=max_tokens)
    # A compiled model recompiles for each new input shape: padded to a multiple, the lengths take a few values.
    multiple = COMPILE_PAD_MULTIPLE if args.torch_compile else None
    if scoring is not None:
        from llmcls.train.generative import IGNORE, ScoredTrainer, lm_dataset

        targets, eos = scoring["targets"], tokenizer.eos_token_id
        trainer = ScoredTrainer(
            **common,
            train_dataset=lm_dataset(train, targets, eos),
            eval_dataset=lm_dataset(val, targets, eos),
            data_collator=collator
            or DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, pad_to_multiple_of=multiple),
            scoring=scoring | {"prompts": val["input_ids"].tolist(), "truth": val["label_id"].tolist()},
        )
    else:
        trainer = TokenBudgetTrainer(
            **common,
            train_dataset=to_dataset(train, labels, scale),
            eval_dataset=to_dataset(val, labels, scale),
            data_collator=collator or DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple),
            compute_metrics=metrics_function(labels.task if labels else "single_label", scale),
            compute_loss_func=loss_func,
        )
    trainer.remove_callback(PrinterCallback)  # its dict reprs every logging step: TrainingProgress says it in words
    return trainer
