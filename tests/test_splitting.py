"""Stratified validation / test splits, few-shot sampling and class quotas."""

import pandas as pd
import pytest

from llmcls.config.params import SplitParams
from llmcls.core.errors import LlmclsError
from llmcls.data.split import make_splits


def frame(counts: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "label": labels})


def params(**changes) -> SplitParams:
    base = {"val_fraction": 0.15, "test_fraction": 0.2, "train_size": None, "class_quota": None, "seed": 0}
    return SplitParams(**(base | changes))


def test_validation_is_stratified_and_test_untouched():
    test = frame({"a": 10, "b": 10})
    splits, record = make_splits(frame({"a": 600, "b": 200}), test, params())
    assert len(splits["val"]) == 120 and len(splits["train"]) == 680
    assert splits["val"]["label"].value_counts().to_dict() == {"a": 90, "b": 30}
    assert splits["test"] is test and not record["test_carved"]
    assert not set(splits["val"]["id"]) & set(splits["train"]["id"])


def test_train_size_samples_before_validation():
    splits, record = make_splits(frame({"a": 3000, "b": 1000}), None, params(train_size=200))
    assert record["test_carved"] and record["rows"] == {"train": 200, "val": 35, "test": 800}
    assert splits["train"]["label"].value_counts().to_dict() == {"a": 150, "b": 50}
    used = set(splits["train"]["id"]) | set(splits["val"]["id"])
    assert not used & set(splits["test"]["id"])


def test_same_seed_same_split_other_seed_differs():
    data = frame({"a": 300, "b": 300})
    first, _ = make_splits(data, None, params(seed=1))
    again, _ = make_splits(data, None, params(seed=1))
    other, _ = make_splits(data, None, params(seed=2))
    assert list(first["val"]["id"]) == list(again["val"]["id"])
    assert list(first["val"]["id"]) != list(other["val"]["id"])


def test_class_quota_balances():
    splits, _ = make_splits(frame({"a": 500, "b": 60}), frame({"a": 5, "b": 5}), params(class_quota=60))
    pool = pd.concat([splits["train"], splits["val"]])
    assert pool["label"].value_counts().to_dict() == {"a": 60, "b": 60}
    splits, _ = make_splits(frame({"a": 500, "b": 60}), frame({"a": 5, "b": 5}), params(class_quota={"a": 100}))
    assert pd.concat([splits["train"], splits["val"]])["label"].value_counts().to_dict() == {"a": 100, "b": 60}


def test_unsplittable_data_is_a_clear_error():
    with pytest.raises(LlmclsError, match=r"validation split \(split.val_fraction=0.15\): cannot split 1 rows into 1"):
        make_splits(frame({"a": 1}), frame({"a": 1}), params())
    with pytest.raises(LlmclsError, match="labels \\['zz'\\] are not in the data"):
        make_splits(frame({"a": 50, "b": 50}), None, params(class_quota={"zz": 3}))


def test_a_class_of_one_row_stays_in_training_and_the_rest_is_stratified():
    """Real many-class data has classes of a single row (51-class TREC: one): they cannot be stratified, so
    they are trained on (the test split and validation cannot hold half a row), and the rest splits as usual."""
    counts = {"a": 600, "b": 300, "c": 100, "rare": 1}
    splits, record = make_splits(frame(counts), None, params(train_size=400))
    assert "rare" in set(splits["train"]["label"])
    assert "rare" not in set(splits["test"]["label"]) | set(splits["val"]["label"])
    assert record["rows"]["train"] == 400
    test_counts = splits["test"]["label"].value_counts().to_dict()
    assert test_counts == {"a": 121, "b": 60, "c": 20}  # 201 rows (20% of 1,001) in the stratifiable mix


def test_more_classes_than_validation_rows_splits_unstratified(capsys):
    counts = {f"class{i}": 4 for i in range(30)}
    splits, record = make_splits(frame(counts), frame({"class0": 2}), params(train_size=40))
    assert record["rows"] == {"train": 40, "val": 7, "test": 2}
    assert "cannot hold one of each of 30 classes; split unstratified" in capsys.readouterr().err
