"""The head's training loss for each task: cross-entropy with class weights and label smoothing (single-label),
binary cross-entropy with per-label positive weights (multi-label), mean squared error on standardised
scores (regression)."""

from __future__ import annotations

import numpy as np
import torch

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, LabelSet
from llmcls.core.errors import LlmclsError


def class_weight_vector(setting: str | dict[str, float] | None, labels: LabelSet, train_targets) -> list[float] | None:
    """Per-class loss weights in label-id order: 'balanced' is n / (k * count_c), a mapping names them. For
    multi-label they weight each label's positives (BCE's pos_weight): 'balanced' is negatives / positives."""
    if setting is None:
        return None
    if labels.task == REGRESSION:
        raise LlmclsError("params.yaml train.class_weights: a regression has no classes to weight; set null")
    if setting == "balanced":
        if labels.task == MULTI_LABEL:
            positives = np.asarray(train_targets).sum(axis=0)
            return ((len(train_targets) - positives) / np.maximum(positives, 1)).tolist()
        counts = np.bincount(np.asarray(train_targets), minlength=len(labels.names)).astype(float)
        return (counts.sum() / (len(counts) * np.maximum(counts, 1))).tolist()
    unknown = sorted(set(setting) - set(labels.names))
    if unknown:
        raise LlmclsError(f"params.yaml train.class_weights: {unknown} are not labels of this dataset {labels.names}")
    return [float(setting.get(name, 1.0)) for name in labels.names]


def weighted_loss(weights: list[float] | None, smoothing: float, task: str = "single_label"):
    """A Trainer ``compute_loss_func`` for ``task``, summed and divided by the targets of the whole
    (accumulated, all-process) batch, as the Trainer expects: the Trainer counts label entries, so a
    multi-label batch of n rows and k labels is n x k targets (mean binary cross-entropy, as transformers' own
    multi-label loss). Multi-label smoothing moves each 0/1 target ``smoothing / 2`` towards the middle; a
    regression takes no smoothing."""
    if task == REGRESSION and smoothing:
        raise LlmclsError("params.yaml train.label_smoothing: a regression has no labels to smooth; set 0")
    weight = torch.tensor(weights, dtype=torch.float32) if weights else None

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()
        w = weight.to(logits.device) if weight is not None else None
        if task == MULTI_LABEL:
            target = labels.float() * (1 - smoothing) + smoothing / 2
            total = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=w, reduction="sum")
        elif task == REGRESSION:
            total = torch.nn.functional.mse_loss(logits[:, 0], labels.float(), reduction="sum")
        else:
            total = torch.nn.functional.cross_entropy(
                logits, labels, weight=w, label_smoothing=smoothing, reduction="sum"
            )
        return total / (num_items_in_batch if num_items_in_batch is not None else labels.numel())

    return loss
