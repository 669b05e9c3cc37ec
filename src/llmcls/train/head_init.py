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

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from llmcls.core.progress import phase
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


def _probe_coefficients(z: np.ndarray, y: np.ndarray, num_labels: int, C: float, seed: int, task: str):
    """(coef [k, h], intercept [k], classes fitted, the train score and its name) of the task's linear probe on
    standardised features ``z``."""
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == REGRESSION:  # ridge on the standardised score; alpha 1 / (2C) is C's L2 strength per row's loss
        ridge = Ridge(alpha=1 / (2 * C)).fit(z, y)
        return ridge.coef_[None, :], np.atleast_1d(ridge.intercept_), np.arange(1), ridge.score(z, y), "r2"
    if task == MULTI_LABEL:  # one binary logistic regression per label
        coef, intercept = np.zeros((num_labels, z.shape[1])), np.zeros(num_labels)
        hits = np.zeros_like(y)
        for j in range(num_labels):
            if y[:, j].min() == y[:, j].max():  # all rows agree: a constant answer, no direction to learn
                intercept[j] = 10.0 if y[0, j] == 1 else -10.0
                hits[:, j] = y[:, j]
                continue
            probe = LogisticRegression(C=C, max_iter=5000, random_state=seed).fit(z, y[:, j])
            coef[j], intercept[j] = probe.coef_[0], probe.intercept_[0]
            hits[:, j] = probe.predict(z)
        return coef, intercept, np.arange(num_labels), float((hits == y).mean()), "label_accuracy"
    probe = LogisticRegression(C=C, max_iter=5000, random_state=seed).fit(z, y)
    coef, intercept = probe.coef_, probe.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one logit z for class 1; softmax([-z/2, z/2]) is the same
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept, probe.classes_, float((probe.predict(z) == y).mean()), "accuracy"


def fit_probe(
    features: np.ndarray, targets: np.ndarray, num_labels: int, C: float, seed: int, task: str = SINGLE_LABEL
):
    """The task's linear probe on standardised features (multinomial logistic regression; one binary one per
    label for multi-label; ridge on the standardised score for regression), returned as (weight [k, h],
    bias [k], train score, its name) of a linear layer that reads the raw features (standardisation folded in)."""
    mean = features.mean(axis=0)
    scale = np.maximum(features.std(axis=0), 1e-6)
    coef, intercept, classes, score, name = _probe_coefficients(
        (features - mean) / scale, targets, num_labels, C, seed, task
    )
    weight = np.zeros((num_labels, features.shape[1]))
    bias = np.zeros(num_labels)
    weight[classes] = coef / scale
    bias[classes] = intercept - (coef / scale) @ mean
    # A class absent from these rows (possible only with a label set wider than the rows) never wins.
    bias[np.setdiff1d(np.arange(num_labels), classes)] = -1e4
    return weight, bias, score, name


def warm_start_head(
    model: torch.nn.Module,
    head: torch.nn.Linear,
    sequences: Sequence[Sequence[int]],
    targets: Sequence,
    pad_id: int,
    batch_size: int,
    C: float,
    seed: int,
    precision: str = "fp32",
    task: str = SINGLE_LABEL,
    features: np.ndarray | None = None,
) -> dict[str, Any]:
    """Set ``head`` (a linear layer with bias) to the probe fitted on ``sequences`` and their training
    ``targets`` (class ids, 0/1 label rows, standardised scores); returns what to record. ``features``, when
    given, are the sequences' pooled features computed before (the probe stage's): the forward pass is skipped.

    Rows of a single class leave nothing to separate: the head keeps its random start, and the record says so.
    """
    if task == SINGLE_LABEL and len(set(targets)) < 2:
        return {"method": "random", "probe_skipped": "the training rows hold a single class"}
    if features is None:
        was_training = model.training
        model.eval()
        with phase("probe"):
            features = pooled_features(model, head, sequences, pad_id, batch_size, precision)
        model.train(was_training)
    weight, bias, score, name = fit_probe(features, np.asarray(targets), head.out_features, C, seed, task)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return {"method": "linear_probe", "rows": len(sequences), "C": C, f"probe_train_{name}": score}
