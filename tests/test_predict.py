"""Using a trained model: `llmcls predict`, the Python API, `llmcls export`, on the tiny model through the real
stages (fetch -> preprocess -> split -> train -> evaluate) of a custom CSV."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import STAGE_STEPS, sentiment_frame, tiny_train_overrides, write_params
from test_stages import invoke

from llmcls.cli.main import main as llmcls_main

pytestmark = pytest.mark.model


def llmcls(*args: str):
    return CliRunner().invoke(llmcls_main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module", params=["linear", "mlp"])
def trained(request, tmp_path_factory, tiny_model_dir):
    """A project folder after the pipeline's stages up to evaluate, on a custom review CSV."""
    root = tmp_path_factory.mktemp(f"predict-{request.param}")
    custom = root / "data" / "custom"
    custom.mkdir(parents=True)
    frame = sentiment_frame(16).rename(columns={"sentence": "review", "label": "stars"})
    frame.to_csv(custom / "reviews.csv", index=False)
    settings = tiny_train_overrides(tiny_model_dir) | {
        "dataset": "custom",
        "custom.train_path": "data/custom/reviews.csv",
        "custom.text_columns": ["review"],
        "custom.label_column": "stars",
        "custom.label_names": {0: "bad", 1: "good"},
        "model.head": request.param,
        "train.head_init": "random",
        "evaluate.batch_size": 4,  # several batches of mixed lengths
    }
    params = str(write_params(root, **settings))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name, *args in STAGE_STEPS[:7]:  # up to evaluate
            result = invoke(name, "--params", params, *args)
            assert result.exit_code == 0, f"{name}: {result.output}"
    return root


def evaluated(root):
    return pd.read_csv(root / "metrics" / "predictions" / "test.csv")


def raw_test_file(root, name="new.csv") -> tuple:
    split = pd.read_parquet(root / "data" / "split" / "test.parquet")
    raw = pd.DataFrame({"review": split["text"], "stars": split["label"].map({"bad": 0, "good": 1})})
    path = root / name
    raw.to_csv(path, index=False)
    return path, split


def test_predict_equals_evaluate_on_the_test_split(trained, monkeypatch):
    monkeypatch.chdir(trained)
    path, split = raw_test_file(trained)
    result = llmcls("predict", "--model", "models/classifier", "--input", str(path), "--out", "out.csv")
    assert result.exit_code == 0, result.output
    assert "accuracy against the input's labels" in result.output
    ours, theirs = pd.read_csv("out.csv"), evaluated(trained)
    assert len(ours) == len(split)
    columns = ["prob_bad", "prob_good"]
    np.testing.assert_allclose(ours[columns].to_numpy(), theirs[columns].to_numpy(), atol=1e-6, rtol=0)
    assert list(ours["predicted"]) == list(theirs["predicted"]) and list(ours["label"]) == list(theirs["label"])


def test_python_api_and_max_rows(trained, monkeypatch):
    from llmcls.serve import load_classifier

    monkeypatch.chdir(trained)
    classifier = load_classifier("models/classifier")
    texts = pd.read_parquet("data/split/test.parquet")["text"].tolist()
    probs = classifier.predict_proba(texts)
    np.testing.assert_allclose(probs, evaluated(trained)[["prob_bad", "prob_good"]].to_numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    assert classifier.predict(texts[:2]) == [classifier.labels.names[i] for i in probs[:2].argmax(axis=1)]
    path, _ = raw_test_file(trained)
    result = llmcls(
        "predict", "--model", "models/classifier", "--input", str(path), "--out", "few.jsonl", "--max-rows", "3"
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_json("few.jsonl", lines=True)) == 3


def test_predict_bad_input(trained, monkeypatch):
    monkeypatch.chdir(trained)
    # A newcomer's first file: one text column, whatever its name (the model was trained on `review`).
    pd.DataFrame({"text": ["a film", "a dull film"]}).to_csv("one.csv", index=False)
    result = llmcls("predict", "--model", "models/classifier", "--input", "one.csv", "--out", "one_out.csv")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv("one_out.csv")) == 2
    # Two candidate columns: the error names the flag that says which one.
    pd.DataFrame({"text": ["a film"], "source": ["web"]}).to_csv("wrong.csv", index=False)
    result = llmcls("predict", "--model", "models/classifier", "--input", "wrong.csv", "--out", "o.csv")
    assert result.exit_code == 1 and "wrong.csv: no column 'review'" in result.output
    assert "--text-columns" in result.output
    assert not (trained / "o.csv").exists()
    # --text-columns maps the file's own column onto the model's.
    result = llmcls(
        "predict", "--model", "models/classifier", "--input", "wrong.csv", "--out", "o.csv", "--text-columns", "text"
    )
    assert result.exit_code == 0, result.output
    pd.DataFrame({"review": ["fine", None, "awful"]}).to_csv("holes.csv", index=False)
    result = llmcls("predict", "--model", "models/classifier", "--input", "holes.csv", "--out", "h.csv")
    assert result.exit_code == 1 and "holes.csv row 2 (id input-1): column 'review' is empty" in result.output
    assert "(--bad-rows skip drops them)" in result.output
    result = llmcls(
        "predict", "--model", "models/classifier", "--input", "holes.csv", "--out", "h.csv", "--bad-rows", "skip"
    )
    assert result.exit_code == 0 and "skipped 1 bad row(s)" in result.output
    assert list(pd.read_csv("h.csv")["id"]) == ["input-0", "input-2"]
    result = llmcls(
        "predict", "--model", "models/classifier", "--base", "nowhere", "--input", "holes.csv", "--out", "h.csv"
    )
    assert result.exit_code == 1 and "needs its base model folder" in result.output


def test_export_predicts_the_same_without_the_repository(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(trained)
    result = llmcls("export", "--out", str(tmp_path / "exported"))
    assert result.exit_code == 0, result.output
    exported = tmp_path / "exported"
    card = (exported / "README.md").read_text()
    assert "## Metrics of the run" in card and "bad" in card
    path, split = raw_test_file(trained, "new.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A fresh process in a folder with no DVC repository and no models/base.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llmcls.cli.main",
            "predict",
            "--model",
            str(exported),
            "--input",
            str(path),
            "--out",
            "p.csv",
        ],
        cwd=elsewhere,
        check=True,
        capture_output=True,
    )
    ours = pd.read_csv(elsewhere / "p.csv")[["prob_bad", "prob_good"]].to_numpy()
    np.testing.assert_allclose(ours, evaluated(trained)[["prob_bad", "prob_good"]].to_numpy(), atol=1e-6, rtol=0)
    # Plain transformers with the exported modeling code for the head, in a process that imports no llmcls,
    # on the test split's own token ids (llmcls tokenises the template's pieces apart; the card says so).
    script = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
temperature = json.load(open(sys.argv[1] + "/llmcls.json"))["calibration"]["temperature"]  # as the card says
with torch.no_grad():
    logits = model(input_ids=torch.tensor([json.loads(sys.argv[2])])).logits
print(json.dumps(torch.softmax(logits.double() / temperature, -1)[0].tolist()))
"""
    ids = json.dumps([int(i) for i in split["input_ids"].iloc[0]])
    out = subprocess.run(
        [sys.executable, "-c", script, str(exported), ids], cwd=elsewhere, check=True, capture_output=True, text=True
    )
    np.testing.assert_allclose(json.loads(out.stdout.strip().splitlines()[-1]), ours[0], atol=1e-5)
