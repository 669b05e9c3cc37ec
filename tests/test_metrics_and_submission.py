"""Metrics on fixed numbers, and the submission checks."""

import numpy as np
import pandas as pd
import pytest

from llmcls.core.artifacts import LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.evaluate.metrics import full_report, summary_metrics
from llmcls.evaluate.submission import build_submission, check_submission


def test_summary_metrics_on_fixed_numbers():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    metrics = summary_metrics([0, 1, 1, 1], probs)
    assert metrics["accuracy"] == pytest.approx(0.75)
    # class 0: P=1/2 R=1; class 1: P=1 R=2/3 -> macro F1 = (2/3 + 0.8) / 2
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    expected_log_loss = -np.mean(np.log([0.9, 0.8, 0.4, 0.7]))
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)


def test_macro_f1_averages_the_classes_that_occur():
    """A class with no rows in the split and never predicted is left out of the macro average; a class with
    rows that is never predicted counts 0."""
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    assert summary_metrics([0, 1, 1], probs)["f1_macro"] == pytest.approx(1.0)  # class 2 absent
    assert summary_metrics([0, 1, 2], probs)["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_full_report_has_every_class_even_unpredicted():
    probs = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    report = full_report([0, 2, 1], probs, ["acq", "crude", "earn"])
    assert set(report["per_class"]) == {"acq", "crude", "earn"}
    assert report["per_class"]["earn"]["recall"] == 0.0
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]


def predictions(ids, probs):
    frame = pd.DataFrame({"id": ids})
    for i, name in enumerate(["winner_model_a", "winner_model_b", "winner_tie"]):
        frame[f"prob_{name}"] = [p[i] for p in probs]
    return frame


CLASSES = ["winner_model_a", "winner_model_b", "winner_tie"]


def test_valid_submission_passes():
    table = build_submission(
        predictions(["1", "2"], [[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]), LabelSet(tuple(CLASSES)), "id"
    )
    assert list(table.columns) == ["id", *CLASSES]
    check_submission(table, ["1", "2"], "id")


@pytest.mark.parametrize(
    ("ids", "probs", "expected"),
    [
        (["1", "1"], [[0.2, 0.5, 0.3]] * 2, "ids listed more than once"),
        (["1"], [[0.2, 0.5, 0.3]], "1 test ids missing"),
        (["1", "2", "3"], [[0.2, 0.5, 0.3]] * 3, "ids not in the test split"),
        (["1", "2"], [[0.2, 0.5, 0.3], [1.2, -0.2, 0.0]], "outside [0, 1]"),
        (["1", "2"], [[0.2, 0.5, 0.4], [0.2, 0.5, 0.3]], "sum to"),
    ],
)
def test_invalid_submission_is_refused(ids, probs, expected):
    table = build_submission(predictions(ids, probs), LabelSet(tuple(CLASSES)), "id")
    with pytest.raises(LlmclsError, match="submission is invalid") as err:
        check_submission(table, ["1", "2"], "id")
    assert expected in str(err.value)
