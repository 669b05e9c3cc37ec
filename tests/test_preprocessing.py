"""Raw rows -> canonical (id, fields, label); every bad row is named with its file and row number."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from llmcls.config.catalog import dataset_spec
from llmcls.core.artifacts import LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.data.prompt import encode_prompts
from llmcls.data.rows import canonical_rows, label_set

SST2 = dataset_spec("sst2")
ARENA = dataset_spec("arena")


def arena_frame(rows=3) -> pd.DataFrame:
    winners = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    return pd.DataFrame(
        {
            "id": [100 + i for i in range(rows)],
            "prompt": [json.dumps([f"question {i}"]) for i in range(rows)],
            "response_a": [json.dumps([f"answer a {i}", None]) for i in range(rows)],
            "response_b": [json.dumps([f"answer b {i}"]) for i in range(rows)],
            "winner_model_a": [winners[i % 3][0] for i in range(rows)],
            "winner_model_b": [winners[i % 3][1] for i in range(rows)],
            "winner_tie": [winners[i % 3][2] for i in range(rows)],
        }
    )


def test_sst2_rows_get_names_and_ids():
    frame = pd.DataFrame({"sentence": ["good film", "bad film"], "label": [1, 0]})
    table = canonical_rows(SST2, frame, "train", "train.tsv")
    assert table.to_dict("records") == [
        {"id": "train-0", "text": "good film", "label": "positive"},
        {"id": "train-1", "text": "bad film", "label": "negative"},
    ]
    assert label_set(SST2, table).names == ("negative", "positive")


def test_arena_one_hot_and_json_lists():
    table = canonical_rows(ARENA, arena_frame(), "train", "train.csv")
    assert list(table["label"]) == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert table.loc[0, "response_a"] == "answer a 0"  # the None turn is dropped
    assert list(table["id"]) == ["100", "101", "102"]
    assert label_set(ARENA, table).names == ("winner_model_a", "winner_model_b", "winner_tie")


def test_unlabelled_test_split_is_allowed():
    frame = arena_frame().drop(columns=["winner_model_a", "winner_model_b", "winner_tie"])
    table = canonical_rows(ARENA, frame, "test", "test.csv")
    assert table["label"].isna().all()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            pd.DataFrame({"sentence": ["ok", np.nan], "label": [1, 0]}),
            "train.tsv row 2 (id train-1): column 'sentence' is empty",
        ),
        (pd.DataFrame({"sentence": ["ok", "   "], "label": [1, 0]}), "train.tsv row 2 (id train-1): empty text"),
        (
            pd.DataFrame({"sentence": ["ok", "fine"], "label": [1, 7]}),
            "train.tsv row 2 (id train-1): label 7 is not in the label set",
        ),
        (pd.DataFrame({"sentence": ["ok", "fine"], "label": [1, np.nan]}), "label column 'label' is empty"),
    ],
)
def test_bad_rows_are_named(frame, expected):
    with pytest.raises(LlmclsError) as err:
        canonical_rows(SST2, frame, "train", "train.tsv")
    assert expected in str(err.value)


def test_malformed_json_list_and_bad_one_hot_and_duplicate_ids():
    frame = arena_frame()
    frame.loc[1, "response_b"] = '["unclosed'
    frame.loc[2, "winner_tie"] = 0
    frame.loc[2, "id"] = 100
    with pytest.raises(LlmclsError) as err:
        canonical_rows(ARENA, frame, "train", "train.csv")
    message = str(err.value)
    assert "train.csv row 2 (id 101): column 'response_b' is a malformed JSON list" in message
    # One line per row, its problems joined.
    assert "train.csv row 3 (id 100): duplicate id in column 'id'; expected exactly one of" in message


def test_test_label_outside_train_label_set():
    labels = LabelSet(("negative", "positive"))
    frame = pd.DataFrame({"sentence": ["x", "y", "z"], "label": [1, 0, 1]})
    spec = dataclasses.replace(SST2, label_names={0: "negative", 1: "positive", 2: "neutral"})
    frame.loc[1, "label"] = 2
    with pytest.raises(LlmclsError, match="test.txt row 2 \\(id test-1\\): label 'neutral' is not in the train split"):
        canonical_rows(spec, frame, "test", "test.txt", labels=labels)


def test_encode_prompts_adds_token_columns(tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    table = canonical_rows(SST2, pd.DataFrame({"sentence": ["good film", "bad film"], "label": [1, 0]}), "train", "t")
    labels = label_set(SST2, table)
    out = encode_prompts(
        table, SST2, labels, load_tokenizer(tiny_base_dir), "Read {text} of {class_labels}:", 64, "right"
    )
    assert list(out["label_id"]) == [1, 0]
    assert all(n == len(ids) for n, ids in zip(out["length"], out["input_ids"], strict=True))
    assert not out["truncated"].any()
