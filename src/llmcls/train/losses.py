"""The head's training loss: cross-entropy with class weights and label smoothing."""

from __future__ import annotations

import numpy as np
import torch

from llmcls.core.artifacts import LabelSet
from llmcls.core.errors import LlmclsError


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
