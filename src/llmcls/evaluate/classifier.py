"""The evaluate stage's logic: class probabilities for val and test, metrics, per-example predictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmcls.core.artifacts import LabelSet, SplitFolder
from llmcls.core.devices import enable_fast_matmul, inference_precision, process_state
from llmcls.core.progress import phase
from llmcls.evaluate.calibration import apply_temperature
from llmcls.evaluate.scoring import score_split, score_splits
from llmcls.model.base import load_tokenizer
from llmcls.model.inference import head_probabilities, head_probabilities_parallel
from llmcls.model.store import load_trained_model


def swap_back(probs_swapped: np.ndarray, permutation: list[int]) -> np.ndarray:
    """Probabilities predicted on A/B-swapped inputs, in the original class order: class i of the original
    order is class permutation[i] of the swapped one (A wins <-> B wins, tie stays)."""
    return probs_swapped[:, permutation]


def label_targets(meta: dict[str, Any], tokenizer) -> list[list[int]] | None:
    """A generative model's label texts as token ids (what it is scored on); None for a head."""
    if meta.get("objective", "head") != "generative":
        return None
    from llmcls.evaluate.label_scoring import label_token_ids

    return label_token_ids(tokenizer, meta["label_texts"])


def head_settings(meta: dict[str, Any], labels: LabelSet) -> dict[str, Any]:
    """How a model folder's head outputs are read: its task, and a regression's training score scale."""
    return {"task": labels.task, "scale": meta.get("target_scale")}


def class_probabilities(
    model,
    meta: dict[str, Any],
    targets,
    sequences: list,
    batch_size: int,
    precision: str,
    device=None,
    progress=None,
    labels: LabelSet | None = None,
) -> np.ndarray:
    """The outputs for prompts: the head's (probabilities, or scores: head_settings), or a generative model's
    scored label texts."""
    if targets is None:
        how = head_settings(meta, labels) if labels is not None else {}
        pad = meta["pad_token_id"]
        return head_probabilities(model, sequences, pad, batch_size, precision, device, progress, **how)
    from llmcls.evaluate.label_scoring import scored_probabilities

    return scored_probabilities(
        model, sequences, targets, meta["pad_token_id"], batch_size, precision, device, progress
    )


def model_temperature(meta: dict[str, Any]) -> float | None:
    """The temperature a model folder was calibrated with (llmcls.json), None when it was not."""
    return (meta.get("calibration") or {}).get("temperature")


def with_swapped(predict: Callable[[list], np.ndarray], frame: pd.DataFrame, permutation: list[int] | None):
    """(probabilities, the plain ones): with a permutation, the mean of the plain and the A/B-swapped
    predictions mapped back (pairwise test-time augmentation); else the plain ones twice."""
    plain = predict(frame["input_ids"].tolist())
    if not permutation:
        return plain, plain
    return (plain + swap_back(predict(frame["input_ids_swapped"].tolist()), permutation)) / 2, plain


def add_generated(summary, predictions, frames, model, tokenizer, meta, max_new_tokens: int, batch_size: int):
    """A generative model's free answers: counted in the summary, written beside the predictions."""
    from llmcls.evaluate.generation import generate_answers, generated_metrics

    for split, frame in frames.items():
        prompts = frame["input_ids"].tolist()
        answers = generate_answers(model, prompts, tokenizer, max_new_tokens, batch_size, meta["precision"])
        summary[split]["generated"] = generated_metrics(answers, meta["label_texts"], frame["label_id"].tolist())
        predictions[split]["generated"] = answers


def evaluate_classifier(
    model_dir: Path,
    base_dir: Path,
    split_dir: Path,
    batch_size: int,
    quantize: str | None = None,
    swap_tta: bool = False,
    max_new_tokens: int = 16,
    max_tokens: int | None = None,
    trust_remote_code: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """Return (summary metrics, full report, predictions) for the val and test splits. Under
    `accelerate launch` with several processes, the rows are shared out and every process gets the result.

    With ``swap_tta`` on a pairwise dataset (labels.json has a swap_permutation), every row is also predicted
    with its two responses traded; the swapped probabilities are mapped back and averaged with the originals,
    and the metrics without this test-time augmentation are kept under `without_tta`.

    A generative model (train.objective: generative) is scored by its label texts' likelihoods, and also
    answers freely (greedy, ``max_new_tokens``): summary[split]["generated"] counts the answers in and not in
    the label set, with metrics that count an answer outside it as wrong; the answers join the predictions.
    ``max_tokens`` makes the head's batches token budgets (see inference.map_batches).
    """
    enable_fast_matmul()
    with phase("load"):
        model, labels, meta = load_trained_model(model_dir, base_dir, quantize, trust_remote_code)
        if not quantize:  # a quantised model was placed on its device when loaded
            model.to(process_state().device)
    split = SplitFolder(split_dir)
    permutation = split.swap_permutation if swap_tta else None
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    targets = label_targets(meta, tokenizer)
    precision = inference_precision(meta["precision"])

    def predict(sequences: list) -> np.ndarray:
        if targets is None:  # the head shares the rows out between `accelerate launch` processes
            pad, how = meta["pad_token_id"], head_settings(meta, labels)
            return head_probabilities_parallel(model, sequences, pad, batch_size, precision, max_tokens, **how)
        return class_probabilities(model, meta, targets, sequences, batch_size, precision)

    frames = split.frames()
    both = {}
    for name, frame in frames.items():
        with phase(f"score {name}"):
            both[name] = with_swapped(predict, frame, permutation)
    temperature = model_temperature(meta)
    calibrated = {name: apply_temperature(p, temperature) for name, (p, _) in both.items()}
    decision = meta.get("decision")
    summary, report, predictions = score_splits(frames, calibrated, labels, decision)
    if targets is not None:
        add_generated(summary, predictions, frames, model, tokenizer, meta, max_new_tokens, batch_size)
    report["swap_tta"] = bool(permutation)
    report["calibration"] = meta.get("calibration")
    for name, frame in frames.items():
        if name not in report:  # unlabelled: nothing to score
            continue
        if temperature is not None:
            raw, _ = score_split(frame, both[name][0], labels, decision)
            summary[name]["uncalibrated"] = {k: raw[k] for k in ("log_loss", "ece")}
        if permutation:
            without, _ = score_split(frame, apply_temperature(both[name][1], temperature), labels, decision)
            summary[name]["without_tta"] = {k: without[k] for k in ("accuracy", "f1_macro", "log_loss")}
    return summary, report, predictions
