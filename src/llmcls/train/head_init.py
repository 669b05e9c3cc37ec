"""A warm-started head (LP-FT): fit a linear probe on the frozen base model's pooled features, then start
fine-tuning from it instead of from a random head.

With little data a random head barely moves from chance in the few optimizer steps it gets, while a probe on
the frozen last-token states already separates the classes well (docs/results.md). Starting from the probe
also keeps the first, largest gradients from distorting the features the probe found useful.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from llmcls.model.inference import map_batches


def pooled_features(
    model: torch.nn.Module,
    head: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    precision: str = "fp32",
) -> np.ndarray:
    """What ``head`` reads for each sequence: the hidden state of its last non-padding token (the same token
    the sequence-classification pooler picks; batches are right-padded)."""
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _module, inputs, _output: seen.append(inputs[0]))

    def pool(batch: dict[str, torch.Tensor]) -> np.ndarray:
        seen.clear()
        model(**batch)
        hidden = seen[-1]
        last = batch["attention_mask"].sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)].float().cpu().numpy()

    try:
        # The run's own precision: bf16 autocast is much faster where the hardware has it, and the head reads
        # the features training will compute in that precision anyway.
        return map_batches(model, sequences, pad_id, batch_size, pool, precision)
    finally:
        hook.remove()


def fit_probe(features: np.ndarray, label_ids: np.ndarray, num_labels: int, C: float, seed: int):
    """Multinomial logistic regression on standardised features, returned as (weight [k, h], bias [k]) of a
    linear layer that reads the raw features (the standardisation is folded in)."""
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = np.maximum(features.std(axis=0), 1e-6)
    probe = LogisticRegression(C=C, max_iter=5000, random_state=seed)
    probe.fit((features - mean) / scale, label_ids)
    coef, intercept = probe.coef_, probe.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one logit z for class 1; softmax([-z/2, z/2]) is the same
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((num_labels, features.shape[1]))
    bias = np.zeros(num_labels)
    weight[probe.classes_] = coef / scale
    bias[probe.classes_] = intercept - (coef / scale) @ mean
    # A class absent from these rows (possible only with a label set wider than the rows) never wins.
    bias[np.setdiff1d(np.arange(num_labels), probe.classes_)] = -1e4
    accuracy = float((probe.predict((features - mean) / scale) == label_ids).mean())
    return weight, bias, accuracy


def warm_start_head(
    model: torch.nn.Module,
    head: torch.nn.Linear,
    sequences: Sequence[Sequence[int]],
    label_ids: Sequence[int],
    pad_id: int,
    batch_size: int,
    C: float,
    seed: int,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Set ``head`` (a linear layer with bias) to the probe fitted on ``sequences``; returns what to record.

    Rows of a single class leave nothing to separate: the head keeps its random start, and the record says so.
    """
    if len(set(label_ids)) < 2:
        return {"method": "random", "probe_skipped": "the training rows hold a single class"}
    was_training = model.training
    model.eval()
    features = pooled_features(model, head, sequences, pad_id, batch_size, precision)
    model.train(was_training)
    weight, bias, accuracy = fit_probe(features, np.asarray(label_ids), head.out_features, C, seed)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return {"method": "linear_probe", "rows": len(sequences), "C": C, "probe_train_accuracy": accuracy}
