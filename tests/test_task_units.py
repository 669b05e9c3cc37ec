"""Multi-label and score tasks in small pieces: reading labels, splitting, losses, thresholds and cut-points,
metrics against hand computations, and the errors bad labels get."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from llmcls.config.catalog import DatasetSpec
from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, LabelSet, targets
from llmcls.core.errors import LlmclsError
from llmcls.data.rows import canonical_rows, label_set, with_label_ids
from llmcls.data.split import make_splits
from llmcls.evaluate.decisions import decide, fit_decision, rounded_grades, to_grades, tune_cut_points, tune_thresholds
from llmcls.evaluate.metrics import metric_for_best, multilabel_metrics, quadratic_kappa, regression_metrics
from llmcls.train.losses import class_weight_vector, weighted_loss


def spec(task: str, **fields) -> DatasetSpec:
    return DatasetSpec(name="t", description="", fields={"text": "text"}, text="{text}", task=task, **fields)


# Reading labels


def test_a_delimited_cell_with_names_from_a_file_gives_label_lists():
    names = {"0": "admiration", "1": "amusement", "2": "anger"}
    frame = pd.DataFrame({"text": ["a", "b", "c"], "labels": ["2,0", "1", "0, 2"]})
    rows = canonical_rows(spec(MULTI_LABEL, label_column="labels", label_names=names), frame, "train", "f.tsv")
    assert rows["label"].tolist() == [["anger", "admiration"], ["amusement"], ["admiration", "anger"]]
    labels = label_set(spec(MULTI_LABEL, label_names=names), rows)
    assert labels.names == ("admiration", "amusement", "anger") and labels.task == MULTI_LABEL
    ids = with_label_ids(rows, labels)["label_id"].tolist()
    assert [list(i) for i in ids] == [[0, 2], [1], [0, 2]]
    np.testing.assert_array_equal(targets(with_label_ids(rows, labels), labels), [[1, 0, 1], [0, 1, 0], [1, 0, 1]])


def test_any_separator_and_zero_one_columns():
    frame = pd.DataFrame({"text": ["a", "b"], "labels": ["joy;anger", "joy|calm"]})
    rows = canonical_rows(spec(MULTI_LABEL, label_column="labels"), frame, "train", "f.csv")
    assert rows["label"].tolist() == [["joy", "anger"], ["joy", "calm"]]
    hot = pd.DataFrame({"text": ["a", "b", "c"], "toxic": [1, 0, 0], "insult": [1, 0, 1]})
    rows = canonical_rows(spec(MULTI_LABEL, label_onehot=("toxic", "insult")), hot, "train", "f.csv")
    assert rows["label"].tolist() == [["toxic", "insult"], [], ["insult"]]  # a row may have no label at all


def test_an_unknown_label_name_is_one_error_naming_the_row():
    train = pd.DataFrame({"text": ["a", "b"], "labels": ["joy", "calm"]})
    labels = label_set(spec(MULTI_LABEL), canonical_rows(spec(MULTI_LABEL, label_column="labels"), train, "t", "x"))
    test = pd.DataFrame({"text": ["c", "d"], "labels": ["joy", "joy;rage"]})
    with pytest.raises(LlmclsError) as err:
        canonical_rows(spec(MULTI_LABEL, label_column="labels"), test, "test", "test.csv", labels=labels)
    assert "test.csv row 2" in str(err.value) and "'rage'" in str(err.value)
    bad = pd.DataFrame({"text": ["a"], "toxic": [2]})
    with pytest.raises(LlmclsError, match="must hold 0 or 1"):
        canonical_rows(spec(MULTI_LABEL, label_onehot=("toxic",)), bad, "train", "f.csv")


def test_scores_are_numbers_and_bad_ones_name_their_row():
    frame = pd.DataFrame({"text": list("abcd"), "score": ["4.2", 3, "n/a", "inf"]})
    with pytest.raises(LlmclsError) as err:
        canonical_rows(spec(REGRESSION, label_column="score"), frame, "train", "scores.csv")
    message = str(err.value)
    assert "scores.csv row 3" in message and "'n/a'" in message and "not a number" in message
    assert "scores.csv row 4" in message and "not a finite number" in message
    rows = canonical_rows(spec(REGRESSION, label_column="score", round_scores=True), frame.head(2), "t", "x")
    assert rows["label"].tolist() == [4.0, 3.0]
    labels = label_set(spec(REGRESSION), rows)
    assert labels.task == REGRESSION and labels.integer_scores and labels.score_range == (3.0, 4.0)
    assert LabelSet.from_json(labels.to_json()) == labels


# Splitting


def multilabel_rows(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, LabelSet]:
    rng = np.random.default_rng(seed)
    labels = LabelSet(("a", "b", "c", "rare"), MULTI_LABEL)
    rows = []
    for i in range(n):
        hot = rng.random(4) < [0.5, 0.3, 0.2, 0.03]
        ids = [j for j in range(4) if hot[j]]
        rows.append({"id": str(i), "text": f"t{i}", "label": [labels.names[j] for j in ids], "label_id": ids})
    return pd.DataFrame(rows), labels


def split_params(**overrides):
    from llmcls.config.params import SplitParams

    base = {"val_fraction": 0.15, "test_fraction": 0.2, "train_size": None, "class_quota": None, "seed": 0}
    return SplitParams(**(base | overrides))


def test_multilabel_splits_have_the_sizes_asked_and_keep_rare_labels_on_both_sides():
    frame, labels = multilabel_rows()
    splits, record = make_splits(frame, None, split_params(train_size=200), labels)
    assert record["rows"]["train"] == 200 and record["rows"]["val"] == round(200 / 0.85) - 200
    for name in ("train", "val", "test"):
        share = targets(splits[name], labels).mean(axis=0)
        assert share[3] > 0, f"{name} lost the rare label"
        np.testing.assert_allclose(share[:3], [0.5, 0.3, 0.2], atol=0.1)
    ids = [set(s["id"]) for s in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert (
        make_splits(frame, None, split_params(train_size=200), labels)[0]["val"]["id"].tolist()
        == splits["val"]["id"].tolist()
    )
    with pytest.raises(LlmclsError, match="class_quota"):
        make_splits(frame, None, split_params(class_quota=5), labels)


def test_score_splits_span_the_range():
    scores = np.repeat(np.arange(6.0), 50)
    frame = pd.DataFrame({"id": [str(i) for i in range(300)], "text": "x", "label": scores})
    labels = LabelSet(("score",), REGRESSION, True, (0.0, 5.0))
    splits, record = make_splits(frame, None, split_params(), labels)
    for name in ("train", "val", "test"):
        assert splits[name]["label"].min() == 0 and splits[name]["label"].max() == 5
    assert set(record["class_counts"]["val"]) == {"mean", "std", "min", "max"}


# Losses


def test_multilabel_loss_is_mean_binary_cross_entropy_over_every_target():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    loss = weighted_loss(None, 0.0, MULTI_LABEL)({"logits": logits}, y)
    p = torch.sigmoid(logits)
    by_hand = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert torch.isclose(loss, by_hand)
    # The Trainer counts label entries (rows x labels) across an accumulated batch: the same mean.
    assert torch.isclose(weighted_loss(None, 0.0, MULTI_LABEL)({"logits": logits}, y, num_items_in_batch=6), by_hand)
    weights = class_weight_vector("balanced", LabelSet(("a", "b", "c"), MULTI_LABEL), y.numpy())
    assert weights == [1.0, 2.0, 0.0]  # negatives / positives: b has none (counted as one), c no negatives


def test_regression_loss_is_squared_error_and_refuses_smoothing_and_weights():
    out = torch.tensor([[0.5], [-1.0]])
    loss = weighted_loss(None, 0.0, REGRESSION)({"logits": out}, torch.tensor([1.0, -1.0]))
    assert math.isclose(loss.item(), (0.25 + 0.0) / 2)
    with pytest.raises(LlmclsError, match="label_smoothing"):
        weighted_loss(None, 0.1, REGRESSION)
    with pytest.raises(LlmclsError, match="class_weights"):
        class_weight_vector("balanced", LabelSet(("score",), REGRESSION), [1.0])


# Thresholds and cut-points


def test_thresholds_maximise_each_labels_f1_on_validation():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probs = np.array([[0.30, 0.9], [0.25, 0.2], [0.10, 0.6], [0.05, 0.7]])
    thresholds = tune_thresholds(y, probs)
    # label 0: any threshold in (0.10, 0.25] catches both positives and nothing else (F1 1); the smallest grid
    # value of the best ones is taken. label 1: (0.2, 0.6] catches its positive with two negatives (F1 0.5),
    # lower adds a third negative (0.4), higher loses the positive (0).
    assert thresholds == [0.11, 0.21]
    tuned = multilabel_metrics(y, probs, (probs >= np.array(thresholds)).astype(int))["f1_macro"]
    plain = multilabel_metrics(y, probs, (probs >= 0.5).astype(int))["f1_macro"]
    assert tuned >= plain
    labels = LabelSet(("a", "b"), MULTI_LABEL)
    assert fit_decision(labels, y, probs, 0.5) == {"thresholds": [0.5, 0.5], "tuned_on": None}
    assert tune_thresholds(np.zeros((3, 1)), np.full((3, 1), 0.9)) == [0.5]  # no positives: nothing to tune


def test_cut_points_turn_scores_into_grades_and_beat_rounding():
    assert to_grades(np.array([0.2, 0.6, 1.49, 1.5, 9.0]), [0.5, 1.5], 0).tolist() == [0, 1, 1, 2, 2]
    assert rounded_grades(np.array([-1.0, 0.4, 2.6, 7.0]), 0, 3).tolist() == [0, 0, 3, 3]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 300).astype(float)
    scores = truth * 0.6 + 1.0 + rng.normal(0, 0.4, 300)  # a squeezed, shifted scale: rounding misses
    cuts = tune_cut_points(truth, scores, 0, 5)
    assert cuts == sorted(cuts) and len(cuts) == 5
    tuned = quadratic_kappa(truth, to_grades(scores, cuts, 0))
    assert tuned > quadratic_kappa(truth, rounded_grades(scores, 0, 5)) + 0.05
    labels = LabelSet(("score",), REGRESSION, True, (0.0, 5.0))
    decision = fit_decision(labels, truth, scores[:, None], "tuned")
    assert decision["grades"] == [0, 5] and decision["cut_points"] == cuts
    np.testing.assert_array_equal(decide(labels, scores[:, None], decision), to_grades(scores, cuts, 0))


# Metrics


def test_multilabel_metrics_match_hand_counts():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    probs = np.where(predicted == 1, 0.8, 0.2)
    m = multilabel_metrics(y, probs, predicted)
    # tp 3, fp 1, fn 2: micro F1 = 6 / (6 + 3); one of three rows exactly right; 3 of 9 cells wrong
    assert math.isclose(m["f1_micro"], 6 / 9)
    assert math.isclose(m["accuracy"], 1 / 3) and math.isclose(m["hamming_loss"], 3 / 9)
    # per label F1: a 1 (2/2 hit), b 2/3 (1 of 2 found), c 0
    assert math.isclose(m["f1_macro"], (1 + 2 / 3 + 0) / 3)
    assert math.isclose(m["log_loss"], -np.mean(np.log(np.where(y == 1, probs, 1 - probs))))


def test_regression_metrics_match_numpy():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 1.5, 3.5, 4.5])
    m = regression_metrics(y, p)
    assert math.isclose(m["rmse"], 0.5) and math.isclose(m["mae"], 0.5)
    assert math.isclose(m["pearson"], np.corrcoef(y, p)[0, 1])
    assert math.isclose(m["r2"], 1 - 1.0 / 5.0)
    assert math.isnan(regression_metrics(y, np.ones(4))["pearson"])  # a constant prediction ranks nothing


def test_metric_for_best_follows_the_task():
    assert metric_for_best("auto", "single_label") == "accuracy"
    assert metric_for_best("auto", MULTI_LABEL) == "f1_macro"
    assert metric_for_best("auto", REGRESSION) == "pearson"
    with pytest.raises(LlmclsError, match="not a regression metric"):
        metric_for_best("accuracy", REGRESSION)


def test_label_lists_as_json_or_lists_and_codes_read_as_floats():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "labels": ['["joy", "anger"]', ["calm"], 2.0]})
    rows = canonical_rows(spec(MULTI_LABEL, label_column="labels"), frame, "train", "f.csv")
    assert rows["label"].tolist() == [["joy", "anger"], ["calm"], ["2"]]
    bad = pd.DataFrame({"text": ["a"], "labels": ['["joy"']})
    with pytest.raises(LlmclsError, match="is not a JSON list"):
        canonical_rows(spec(MULTI_LABEL, label_column="labels"), bad, "train", "f.csv")


def test_the_generative_objective_refuses_label_sets_and_scores(tmp_path):
    from conftest import default_params

    from llmcls.config.params import parse_params
    from llmcls.core.artifacts import LABELS, SplitFolder
    from llmcls.core.outputs import write_json
    from llmcls.train.classifier import generative_objective

    params = parse_params(default_params(**{"train.objective": "generative"}))
    for labels in (LabelSet(("joy", "calm"), MULTI_LABEL), LabelSet(("score",), REGRESSION, False, (0.0, 1.0))):
        write_json(tmp_path / LABELS, labels.to_json())
        with pytest.raises(LlmclsError, match=f"task is {labels.task}: use objective head"):
            generative_objective(params, tmp_path, SplitFolder(tmp_path), None, "fp32")


def test_the_task_setting_and_custom_label_columns_shape_the_spec():
    from conftest import custom_params

    from llmcls.config.catalog import dataset_spec

    columns = custom_params(train_path="data/custom/t.csv", label_columns=["toxic", "insult"], label_separator=None)
    custom = dataset_spec("custom", columns, "multi_label")
    assert custom.task == MULTI_LABEL and custom.label_onehot == ("toxic", "insult") and custom.label_column is None
    assert dataset_spec("goemotions").task == MULTI_LABEL and dataset_spec("goemotions").label_names_file
    assert dataset_spec("stsb").task == REGRESSION and dataset_spec("stsb-grades").round_scores
    assert dataset_spec("stsb", task="single_label").task == "single_label"  # params `task` wins


def test_a_multilabel_head_computes_in_fp32_under_bf16_autocast():
    from llmcls.model.heads import fp32_output, linear_head

    torch.manual_seed(0)
    head = linear_head(16, 3)
    x = torch.randn(4, 16)
    expected = head(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        coarse = head(x)
        head.register_forward_hook(fp32_output)
        exact = head(x)
    assert coarse.dtype == torch.bfloat16 and exact.dtype == torch.float32
    assert torch.equal(exact, expected)
    exact.sum().backward()  # gradients reach the weights through the recomputed output
    assert head.weight.grad is not None
