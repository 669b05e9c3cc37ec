"""The train stage's logic: HF Trainer over pre-tokenised splits, best checkpoint kept, DVCLive curves.

Runs the same under plain `python` and `accelerate launch` (DDP on many GPUs or gloo on CPU); only the
main process writes the model and the DVCLive files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import EarlyStoppingCallback, TrainerCallback, TrainingArguments, set_seed

from llmcls.config.params import Params
from llmcls.core.artifacts import REGRESSION, SINGLE_LABEL, LabelSet, SplitFolder, targets
from llmcls.core.devices import enable_fast_matmul, process_state, resolve_precision, use_all_cpu_cores
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import read_json, staged_dir, write_json
from llmcls.core.progress import duration, phase
from llmcls.model.base import RECORD, load_tokenizer
from llmcls.model.build import build_classifier, build_generative, quantization_config
from llmcls.model.store import save_classifier
from llmcls.train.checkpoints import (
    FINGERPRINT,
    CheckpointComplete,
    drop_checkpoints,
    fingerprint,
    resumable_checkpoint,
)
from llmcls.train.head_init import warm_start_head
from llmcls.train.losses import class_weight_vector, weighted_loss
from llmcls.train.probe_cache import cached_features, probe_skipped
from llmcls.train.pruning import pruning_callbacks
from llmcls.train.trainer import (
    LiveMetrics,
    make_trainer,
    planned_steps,
    step_floor,
    training_arguments,
    training_targets,
)
from llmcls.train.weight_averaging import TailAverage


@dataclass
class Objective:
    """What the model learns and how it is scored: the model, the head's loss or the generative scoring, and
    what the model folder records of it."""

    model: torch.nn.Module
    head_init: dict[str, Any]
    loss_func: Callable | None = None
    scoring: dict[str, Any] | None = None
    label_texts: list[str] | None = None
    class_weights: list[float] | None = None
    callbacks: list[TrainerCallback] = field(default_factory=list)
    calibration: dict[str, Any] | None = None  # fitted after training (fit_calibration)
    decision: dict[str, Any] | None = None  # thresholds or cut-points, fitted after training (fit_calibration)
    scale: dict[str, float] | None = None  # a regression's training score mean and std (the head learns z-scores)
    probe_source: str | None = None  # where the probe's features came from (the run log's, not the model's)


def head_objective(
    params: Params,
    base_dir: Path,
    labels: LabelSet,
    train: pd.DataFrame,
    tokenizer,
    precision: str,
    probe_dir: Path | None = None,
) -> Objective:
    """A classification head, warm-started from a linear probe where params say so (on the probe stage's
    features in ``probe_dir`` when they are this run's)."""
    t = params.train
    probe = probe_skipped(params) is None
    head_init: dict[str, Any] = {"method": "linear_probe" if probe else "random"}
    scale = score_scale(train, labels)
    train_targets = training_targets(train, labels, scale)
    features, source = cached_features(probe_dir, train["input_ids"].tolist(), precision) if probe else (None, None)
    if source and process_state().is_main_process:
        print(f"llmcls: probe features {source}", flush=True)

    def warm_start(base, head) -> None:
        # Every process fits the same probe on the same rows (deterministic), so the ranks start equal.
        head_init.update(
            warm_start_head(
                base if getattr(base, "hf_quantizer", None) else base.to(process_state().device),
                head,
                train["input_ids"].tolist(),
                train_targets,
                tokenizer.pad_token_id,
                params.evaluate.batch_size,
                t.probe_C,
                t.seed,
                precision,
                labels.task,
                features,
            )
        )

    model = build_classifier(
        base_dir, labels, tokenizer.pad_token_id, params.model, t, warm_start=warm_start if probe else None
    )
    weights = class_weight_vector(t.class_weights, labels, train_targets)
    # Always our loss: transformers hands `num_items_in_batch` to models whose sequence-classification loss
    # ignores it, then scales that loss by the process count, which doubled gradients under 2-process DDP.
    loss = weighted_loss(weights, t.label_smoothing, labels.task)
    return Objective(model, head_init, loss_func=loss, class_weights=weights, scale=scale, probe_source=source)


def score_scale(train: pd.DataFrame, labels: LabelSet) -> dict[str, float] | None:
    """A regression's training score mean and std: the head learns standardised scores (MSE then weighs every
    scale alike, and a probe or a fresh head starts near the mean), put back on output. None for classes."""
    if labels.task != REGRESSION:
        return None
    y = targets(train, labels)
    return {"mean": float(y.mean()), "std": float(y.std()) or 1.0}


def generative_objective(params: Params, base_dir: Path, split: SplitFolder, tokenizer, precision: str) -> Objective:
    """The causal LM writes the label's text; validation scores each label text's likelihood. Single-label
    only: a set of labels or a score has no one answer text to score against the others."""
    from llmcls.evaluate.label_scoring import label_token_ids

    if split.labels.task != SINGLE_LABEL:
        raise LlmclsError(
            f"params.yaml train.objective: generative writes one class name; this dataset's task is "
            f"{split.labels.task}: use objective head"
        )
    from llmcls.train.generative import label_texts

    texts = label_texts(split.labels, split.prompt, params.train.verbalizer)
    scoring = {
        "targets": label_token_ids(tokenizer, texts),
        "pad_id": tokenizer.pad_token_id,
        "batch_size": params.evaluate.batch_size,
        "precision": precision,
    }
    head_init = {"method": "none: the generative objective writes the label"}
    model = build_generative(base_dir, params.train, params.model.trust_remote_code)
    return Objective(model, head_init, scoring=scoring, label_texts=texts)


def add_callbacks(objective: Objective, params: Params) -> TailAverage | None:
    """Tail weight averaging and early stopping, as params.train asks; returns the averager."""
    t = params.train
    average = TailAverage(objective.model, t.average_last) if t.average_last is not None else None
    if average is not None:
        objective.callbacks.append(average)
    if t.early_stopping_patience is not None:
        objective.callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    return average


def open_live(args: TrainingArguments, live_dir: Path, checkpoint_dir: Path, resume, stamp: str):
    """The main process's DVCLive logger (which clears its own files of an earlier run unless resuming); None
    elsewhere. The model folder is kept until the new one replaces it whole."""
    if args.process_index != 0:
        return None
    from dvclive import Live

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json(checkpoint_dir / FINGERPRINT, {"fingerprint": stamp})
    # resume=True keeps the curves of the interrupted run; dvc.yaml owns the plots, so no dvcyaml.
    return Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None, resume=resume is not None)


def training_summary(params: Params, trainer, args: TrainingArguments, objective: Objective, average, precision):
    """What llmcls.json and the DVCLive summary record of a finished run (no timings: they differ run to run)."""
    state, t = trainer.state, params.train
    best = state.best_model_checkpoint
    return {
        "best_step": int(Path(best).name.split("-")[-1]) if best else None,
        f"best_val_{args.metric_for_best_model}": state.best_metric,
        "precision": precision,
        "world_size": args.world_size,
        "global_batch_size": args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        if t.max_tokens is None
        else f"{t.max_tokens * args.gradient_accumulation_steps * args.world_size} tokens",
        "steps": state.global_step,
        "stopped_early": state.global_step < state.max_steps,
        "class_weights": objective.class_weights,
        "head_init": objective.head_init,
        "weight_average": average.record() if average is not None else None,
    }


def training_lines(summary: dict[str, Any]) -> str:
    """A finished run in words for the console; llmcls.json and the run log keep the full record."""

    def words(record: dict[str, Any]) -> str:
        return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in record.items())

    stopped = " (stopped early)" if summary["stopped_early"] else ""
    lines = [
        f"train: {summary['steps']} steps{stopped}, global batch {summary['global_batch_size']}, "
        f"{summary['world_size']} process(es), {summary['precision']}"
    ]
    best = next((key for key in summary if key.startswith("best_val_")), None)
    if best and summary[best] is not None:
        name = best.removeprefix("best_val_")
        lines.append(f"train: best val {name} {summary[best]:.4f} at step {summary['best_step']}")
    for key in ("head_init", "class_weights", "weight_average"):
        if summary.get(key):
            value = summary[key]
            lines.append(f"train: {key.replace('_', ' ')}: {words(value) if isinstance(value, dict) else value}")
    if run := summary.get("run"):
        lines.append(
            f"train: the Trainer ran {duration(run['train_runtime_s'])} "
            f"({run['train_samples_per_second']:.1f} samples/s, validations included)"
        )
    return "\n".join(lines)


def fit_calibration(
    params: Params, model, objective: Objective, val: pd.DataFrame, labels: LabelSet, pad_id, precision
):
    """What is fitted on the trained model's validation outputs: the temperature (params train.calibration,
    single-label) and the decision (multi-label thresholds, integer-score cut-points); each None where it does
    not apply. Every process of `accelerate launch` gets the same rows back, so the same values."""
    from llmcls.evaluate.calibration import temperature_record
    from llmcls.evaluate.decisions import fit_decision
    from llmcls.evaluate.label_scoring import scored_probabilities
    from llmcls.model.inference import head_probabilities_parallel

    temperature = params.train.calibration == "temperature" and labels.task == SINGLE_LABEL
    if not temperature and labels.task == SINGLE_LABEL:
        return None, None
    model.eval()
    prompts, batch = val["input_ids"].tolist(), params.evaluate.batch_size
    if objective.scoring is None:
        how = {"task": labels.task, "scale": objective.scale}
        outputs = head_probabilities_parallel(
            model, prompts, pad_id, batch, precision, params.evaluate.max_tokens, **how
        )
    else:
        outputs = scored_probabilities(model, prompts, objective.scoring["targets"], pad_id, batch, precision)
    y = targets(val, labels)
    if temperature:
        return temperature_record(outputs, y), None
    return None, fit_decision(labels, y, outputs, params.train.thresholds)


def save_run(params: Params, trainer, tokenizer, split: SplitFolder, base_dir, model_dir, objective, summary, live):
    """The main process writes the model folder and closes the DVCLive run."""
    meta = {
        "mode": params.train.mode,
        "task": split.labels.task,
        "objective": params.train.objective,
        **({"label_texts": objective.label_texts} if objective.label_texts else {}),
        "precision": summary["precision"],
        "pad_token_id": tokenizer.pad_token_id,
        "base_model": read_json(base_dir / RECORD),
        "params": params.to_dict(),
        "training": summary,  # no timings: the model folder must hash the same for the same run
        "calibration": objective.calibration,
        **({"target_scale": objective.scale} if objective.scale else {}),
        **({"decision": objective.decision} if objective.decision else {}),
    }
    with staged_dir(model_dir, "train") as tmp:
        save_classifier(trainer.model, tokenizer, split.labels, meta, split.prompt, tmp)
    for key, value in summary.items():
        if isinstance(value, (int, float)):
            live.summary[key] = value
    live.end()


def train_classifier(
    params: Params,
    split_dir: Path,
    base_dir: Path,
    model_dir: Path,
    live_dir: Path,
    checkpoint_dir: Path,
    probe_dir: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune on the train split, pick the best checkpoint on val, save it to ``model_dir``. ``probe_dir`` is
    the probe stage's output (train/probe_cache.py): the head's warm start reads its features."""
    quantization_config(params.train)  # qlora without CUDA / bitsandbytes stops here, before loading anything
    set_seed(params.train.seed)
    enable_fast_matmul()
    t = params.train
    split = SplitFolder(split_dir)
    tokenizer = load_tokenizer(base_dir, params.model.trust_remote_code)
    train = split.frame("train")
    # Evaluation walks val in order: sorted by length, its batches carry almost no padding.
    val = split.frame("val").sort_values("length", ascending=False, kind="stable")
    precision = resolve_precision(t.precision)
    use_all_cpu_cores(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if t.objective == "generative":
        objective = generative_objective(params, base_dir, split, tokenizer, precision)
    else:
        objective = head_objective(params, base_dir, split.labels, train, tokenizer, precision, probe_dir)
    average = add_callbacks(objective, params)

    stamp = fingerprint(params, split_dir, base_dir, precision, process_state().num_processes)
    # The main process inspects (and may clean) the checkpoint folder first; the others then read what it left,
    # so every rank agrees on the checkpoint (two ranks deleting the same folder at once crashed DDP).
    with process_state().main_process_first():
        resume = resumable_checkpoint(checkpoint_dir, stamp)
    lengths, processes = train["length"].tolist(), process_state().num_processes
    floor = step_floor(t, lengths, processes)
    planned = planned_steps(t, lengths, processes)
    task = split.labels.task
    args = training_arguments(
        params, checkpoint_dir, precision, task, planned, **({"max_steps": floor} if floor else {})
    )
    live = open_live(args, live_dir, checkpoint_dir, resume, stamp)
    callbacks = [LiveMetrics(live), *objective.callbacks, *pruning_callbacks(args.metric_for_best_model)]
    callbacks.append(CheckpointComplete())  # last: the others write into a checkpoint before it is marked
    trainer = make_trainer(
        objective.model,
        args,
        tokenizer,
        train,
        val,
        callbacks=callbacks,
        loss_func=objective.loss_func,
        scoring=objective.scoring,
        max_tokens=t.max_tokens,
        labels=split.labels,
        scale=objective.scale,
    )
    if resume:
        print(f"llmcls: resuming from checkpoint {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    summary = training_summary(params, trainer, args, objective, average, precision)
    with phase("calibration"):
        objective.calibration, objective.decision = fit_calibration(
            params, trainer.model, objective, val, split.labels, tokenizer.pad_token_id, precision
        )
    if trainer.is_world_process_zero():
        with phase("save"):
            save_run(params, trainer, tokenizer, split, base_dir, model_dir, objective, summary, live)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        # Resumption state is for an interrupted run. Kept after a finished one, a forced re-run of the same
        # settings "resumed" at the last step and trained nothing, and its curves lost their eval series.
        drop_checkpoints(checkpoint_dir)
    # Every rank leaves the process group together (after the barrier above): across machines, a rank that
    # exits without it can leave the others waiting on a collective that never comes.
    trainer.accelerator.end_training()
    # Timings and memory go to the stage's run log, apart from the model and its metrics.
    return summary | {"run": run_record(result, objective)}


def run_record(result, objective: Objective) -> dict[str, Any]:
    """What the run log keeps of a training run (timings, memory, where the probe's features came from)."""
    return {
        "train_runtime_s": result.metrics["train_runtime"],
        "train_samples_per_second": result.metrics["train_samples_per_second"],
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        **({"probe_features": objective.probe_source} if objective.probe_source else {}),
    }
