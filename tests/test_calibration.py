"""Temperature scaling and the expected calibration error, against hand computations."""

import numpy as np
import pytest
from scipy.special import softmax

from llmcls.evaluate.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability,
    temperature_record,
)


def overconfident(n: int = 4000, true_t: float = 2.5, seed: int = 0):
    """Probabilities whose labels were drawn at temperature ``true_t``, reported at temperature 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits / true_t, axis=1)])
    return softmax(logits, axis=1), labels


def test_fit_finds_the_temperature_the_labels_were_drawn_at():
    probs, labels = overconfident()
    assert fit_temperature(probs, labels) == pytest.approx(2.5, rel=0.1)


def test_temperature_keeps_the_predicted_class_and_sums_to_one():
    probs, _ = overconfident(200)
    for t in (0.5, 2.0, 7.0):
        scaled = apply_temperature(probs, t)
        assert (scaled.argmax(axis=1) == probs.argmax(axis=1)).all()
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-12)
    # The same as dividing the logits: softmax(log p / T) == softmax(logits / T).
    logits = np.array([[2.0, -1.0, 0.5]])
    np.testing.assert_allclose(apply_temperature(softmax(logits, axis=1), 3.0), softmax(logits / 3.0, axis=1))
    assert apply_temperature(probs, None) is probs and apply_temperature(probs, 1.0) is probs


def test_expected_calibration_error_by_hand():
    # Two bins in use (of 15): confidence 0.9 (bin 13) with 2 of 3 right, 0.6 (bin 9) with 1 of 1 right.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    expected = 3 / 4 * abs(2 / 3 - 0.9) + 1 / 4 * abs(1.0 - 0.6)
    assert expected_calibration_error(labels, probs) == pytest.approx(expected)
    bins = reliability(labels, probs)
    assert [(b["rows"], b["accuracy"]) for b in bins] == [(1, 1.0), (3, pytest.approx(2 / 3))]
    assert bins[0]["low"] == pytest.approx(9 / 15) and bins[1]["confidence"] == pytest.approx(0.9)


def test_the_record_says_what_calibration_moved_on_validation():
    probs, labels = overconfident()
    record = temperature_record(probs, labels)
    assert record["method"] == "temperature" and record["fitted_on"] == "val"
    assert record["val_log_loss"]["after"] < record["val_log_loss"]["before"]
    assert record["val_ece"]["after"] < record["val_ece"]["before"]
