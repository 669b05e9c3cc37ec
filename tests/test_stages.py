"""The click stages on bad input: exit 1, one clear message naming the file / row / key, no output left."""

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import sentiment_frame, stage, write_params


def invoke(name: str, *args: str):
    return CliRunner().invoke(stage(name), list(args), catch_exceptions=False)


@pytest.fixture
def custom_project(tmp_path, monkeypatch, tiny_model_dir):
    """A working folder with params for a custom CSV dataset and the tiny model."""
    monkeypatch.chdir(tmp_path)
    sentiment_frame(10).rename(columns={"sentence": "review", "label": "stars"}).to_csv("train.csv", index=False)

    def params(**overrides):
        return str(
            write_params(
                tmp_path,
                **{
                    "dataset": "custom",
                    "model.name": str(tiny_model_dir),
                    "custom.train_path": "train.csv",
                    "custom.text_columns": ["review"],
                    "custom.label_column": "stars",
                    "preprocess.max_length": 128,
                }
                | overrides,
            )
        )

    return params


def run_until_preprocess(params: str, *fetch_options: str) -> object:
    assert invoke("fetch", "--params", params, *fetch_options, "--out", "raw").exit_code == 0
    assert invoke("fetch_model", "--params", params, "--out", "base").exit_code == 0
    return invoke("preprocess", "--params", params, "--raw", "raw", "--base", "base", "--out", "processed")


def test_custom_csv_goes_through_fetch_preprocess_split(custom_project, tmp_path):
    result = run_until_preprocess(custom_project())
    assert result.exit_code == 0, result.output
    assert "2 classes: ['0', '1']" in result.output
    result = invoke("split", "--params", custom_project(), "--processed", "processed", "--out", "split")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "split" / "split.json").read_text())
    assert record["test_carved"] and sum(record["rows"].values()) == 20


def test_missing_file(custom_project, tmp_path):
    result = invoke("fetch", "--params", custom_project(**{"custom.train_path": "nope.csv"}), "--out", "raw")
    assert result.exit_code == 1
    assert "custom dataset: file not found: nope.csv" in result.output
    assert not (tmp_path / "raw").exists()


def test_misspelled_column(custom_project, tmp_path):
    result = invoke("fetch", "--params", custom_project(**{"custom.label_column": "star"}), "--out", "raw")
    assert result.exit_code == 1
    assert "train.csv: missing column 'star' (did you mean 'stars'?)" in result.output
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    ("bad_cell", "expected"),
    [
        ({"review": None}, "train.csv row 3 (id train-2): column 'review' is empty (NaN)"),
        ({"review": "  "}, "train.csv row 3 (id train-2): empty text"),
    ],
)
def test_empty_text(custom_project, tmp_path, bad_cell, expected):
    frame = pd.read_csv("train.csv")
    for column, value in bad_cell.items():
        frame.loc[2, column] = value
    frame.to_csv("train.csv", index=False)
    result = run_until_preprocess(custom_project())
    assert result.exit_code == 1 and expected in result.output
    assert not (tmp_path / "processed").exists()


def test_test_label_not_in_label_set(custom_project, tmp_path):
    test = sentiment_frame(2).rename(columns={"sentence": "review", "label": "stars"})
    test.loc[1, "stars"] = 5
    test.to_csv("test.csv", index=False)
    result = run_until_preprocess(custom_project(**{"custom.test_path": "test.csv"}))
    assert result.exit_code == 1
    assert "test.csv row 2 (id test-1): label '5' is not in the train split's label set ['0', '1']" in result.output
    assert not (tmp_path / "processed").exists()


def test_malformed_json_list_cell(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "shared" / "lmsys_arena"
    folder.mkdir(parents=True)
    rows = [
        {
            "id": i,
            "prompt": '["q"]',
            "response_a": '["a"]',
            "response_b": '["b"]',
            "winner_model_a": 1,
            "winner_model_b": 0,
            "winner_tie": 0,
        }
        for i in range(4)
    ]
    rows[3]["response_a"] = "[not json"
    pd.DataFrame(rows).to_csv(folder / "train_sample100.csv", index=False)
    pd.DataFrame(rows).drop(columns=["winner_model_a", "winner_model_b", "winner_tie"]).head(2).to_csv(
        folder / "test.csv", index=False
    )
    params = str(
        write_params(
            tmp_path,
            dataset="arena",
            **{
                "model.name": str(tiny_model_dir),
                "preprocess.max_length": 128,
            },
        )
    )
    result = run_until_preprocess(params, "--data", str(folder))
    assert result.exit_code == 1
    assert "train_sample100.csv row 4 (id 3): column 'response_a' is a malformed JSON list" in result.output


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dataset": "imdb"}, "dataset: unknown 'imdb'"),
        ({"model.name": "gpt-9"}, "model.name: unknown model 'gpt-9'"),
        ({"train.learning_rate": -0.001}, "train.learning_rate: -0.001 must be > 0"),
        ({"split.val_fraction": 1.5}, "split.val_fraction: 1.5 must be < 1"),
        ({"train.mode": "half"}, "train.mode: 'half' is not one of 'lora', 'qlora' or 'full'"),
        ({"custom.header": False}, "custom.names: a file with header: false needs its column names"),
        ({"custom.encoding": "klingon"}, "custom.encoding: unknown encoding 'klingon'"),
        ({"custom.label_pattern": "^[A-Z]+:"}, "custom.label_pattern: '^[A-Z]+:' must have exactly one (group)"),
        ({"custom.label_pattern": "(["}, "custom.label_pattern: '([' is not a regular expression"),
        ({"preprocess.bad_rows": "ignore"}, "preprocess.bad_rows: 'ignore' is not one of 'error' or 'skip'"),
    ],
)
def test_invalid_params(tmp_path, monkeypatch, overrides, expected):
    monkeypatch.chdir(tmp_path)
    result = invoke("fetch", "--params", str(write_params(tmp_path, **overrides)), "--out", "raw")
    assert result.exit_code == 1
    assert "params.yaml is invalid" in result.output and expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "raw").exists()


def test_headerless_tsv_with_a_label_names_file(custom_project, tmp_path):
    """The usual layout of Chinese news corpora: `text<TAB>label_id`, no header, class names in a file."""
    frame = sentiment_frame(10)
    frame[["sentence", "label"]].to_csv("news.txt", sep="\t", header=False, index=False)
    Path("classes.txt").write_text("negative\npositive\n", encoding="utf-8")
    settings = {
        "custom.train_path": "news.txt",
        "custom.header": False,
        "custom.names": ["body", "label_id"],
        "custom.text_columns": ["body"],
        "custom.label_column": "label_id",
        "custom.label_names": "classes.txt",
    }
    result = run_until_preprocess(custom_project(**settings))
    assert result.exit_code == 0, result.output
    assert "2 classes: ['negative', 'positive']" in result.output
    source = json.loads((tmp_path / "raw" / "source.json").read_text())
    assert source["label_names"] == {"0": "negative", "1": "positive"} and "classes.txt" in source["sha256"]
    train = pd.read_parquet(tmp_path / "processed" / "train.parquet")
    assert len(train) == 20 and train["text"].iloc[0] == frame["sentence"].iloc[0]


def test_gbk_file_and_label_pattern(custom_project, tmp_path):
    rows = pd.DataFrame({"text": ["这部电影很好看", "太难看了"] * 5, "label": ["POS:strong", "NEG:mild"] * 5})
    rows.to_csv("zh.csv", index=False, encoding="gbk")
    settings = {
        "custom.train_path": "zh.csv",
        "custom.encoding": "gbk",
        "custom.text_columns": ["text"],
        "custom.label_column": "label",
        "custom.label_pattern": "^([A-Z]+):",
    }
    result = run_until_preprocess(custom_project(**settings))
    assert result.exit_code == 0, result.output
    assert "2 classes: ['NEG', 'POS']" in result.output
    result = invoke("fetch", "--params", custom_project(**settings | {"custom.encoding": "utf-8"}), "--out", "raw2")
    assert result.exit_code == 1 and "zh.csv: cannot read as csv" in result.output


def test_bad_rows_skip_drops_and_reports(custom_project, tmp_path):
    frame = pd.read_csv("train.csv")
    frame.loc[2, "review"] = None
    frame.loc[5, "stars"] = None
    frame.to_csv("train.csv", index=False)
    assert run_until_preprocess(custom_project()).exit_code == 1  # bad_rows: error, the default
    result = invoke(
        "preprocess",
        "--params",
        custom_project(**{"preprocess.bad_rows": "skip"}),
        "--raw",
        "raw",
        "--base",
        "base",
        "--out",
        "processed",
        "--bad-rows",
        "bad_rows.json",
    )
    assert result.exit_code == 0, result.output
    assert "skipped 2 bad row(s)" in result.output and "train.csv row 3 (id train-2)" in result.output
    report = json.loads((tmp_path / "bad_rows.json").read_text())
    assert report["skipped"] == 2 and [r["row"] for r in report["rows"]] == [3, 6]
    assert len(pd.read_parquet(tmp_path / "processed" / "train.parquet")) == 18
