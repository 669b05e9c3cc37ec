"""Probabilities you can trust: temperature scaling fitted on the validation split, and the expected
calibration error that says how far a model's confidence is from its accuracy.

A fine-tuned classifier is usually overconfident (many epochs over few rows push its logits apart). One
temperature T divides the log-probabilities of every row (softmax(log p / T), the same as dividing the logits),
so it changes the confidence and never the predicted class; T is the value with the lowest validation log loss.
Log-loss competitions (the Arena one among them) score exactly this.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

ECE_BINS = 15  # equal-width confidence bins, as the calibration literature reports ECE
LOG_T_BOUNDS = (-3.0, 3.0)  # T between 0.05 and 20: wider moves nothing a real model needs


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """float64 log-probabilities, with 0 clipped to the smallest positive double (a class that never wins)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), np.finfo(np.float64).tiny, None))


def apply_temperature(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """``probs`` at ``temperature`` (None or 1: unchanged), rows still summing to 1, argmax unchanged."""
    if temperature is None or temperature == 1.0:
        return probs
    return softmax(log_probabilities(probs) / temperature, axis=1)


def fit_temperature(probs: np.ndarray, label_ids: np.ndarray) -> float:
    """The temperature with the lowest log loss of ``probs`` against ``label_ids`` (searched on log T)."""
    logp, y = log_probabilities(probs), np.asarray(label_ids)

    def nll(log_t: float) -> float:
        return float(-log_softmax(logp / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    found = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def reliability(label_ids: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per confidence bin (with rows): its bounds, row count, mean confidence and accuracy (a reliability diagram)."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(label_ids)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "rows": int((which == b).sum()),
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(correct[which == b].mean()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def ece_of(bins: list[dict[str, Any]]) -> float:
    """The expected calibration error of reliability bins: sum of (share of rows) x |accuracy - confidence|."""
    total = sum(b["rows"] for b in bins)
    return float(sum(b["rows"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins))


def expected_calibration_error(label_ids: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """How far the top class's confidence is from its accuracy, over equal-width confidence bins."""
    return ece_of(reliability(label_ids, probs, bins))


def temperature_record(probs: np.ndarray, label_ids: np.ndarray) -> dict[str, Any]:
    """What a model folder records of its calibration: the temperature and the validation numbers it moved."""
    temperature = fit_temperature(probs, label_ids)
    calibrated = apply_temperature(probs, temperature)
    y = np.asarray(label_ids)
    nll = {
        name: float(-log_probabilities(p)[np.arange(len(y)), y].mean())
        for name, p in (("before", probs), ("after", calibrated))
    }
    return {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": "val",
        "val_log_loss": nll,
        "val_ece": {"before": expected_calibration_error(y, probs), "after": expected_calibration_error(y, calibrated)},
    }
