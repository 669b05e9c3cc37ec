"""Multi-label and score (regression) tasks end to end on the tiny model: the real click stages from a custom
file through train, evaluate, baseline, ensemble and submit; predict equals evaluate; the export loads in
plain transformers with the task's problem_type and num_labels."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import NEGATIVE, POSITIVE, STAGE_STEPS, tiny_train_overrides, write_params
from test_stages import invoke

from llmcls.cli.main import main as llmcls_main

pytestmark = pytest.mark.model

MOODS = ["joy", "anger", "calm"]


def emotions_frame(n: int = 48) -> pd.DataFrame:
    """Texts whose words give their labels: a delimited label cell (``"joy;calm"``), some rows with two."""
    rows = []
    for i in range(n):
        names = [MOODS[i % 3]] + ([MOODS[(i + 1) % 3]] if i % 4 == 0 else [])
        words = " ".join(f"{name} {POSITIVE[i % len(POSITIVE)] if name == 'joy' else ''}" for name in names)
        rows.append({"post": f"{words} number {i}", "moods": ";".join(names)})
    return pd.DataFrame(rows)


def scores_frame(n: int = 48, whole: bool = False) -> pd.DataFrame:
    """Sentence pairs whose score follows their words; whole-number grades where ``whole``."""
    rows = []
    for i in range(n):
        score = (i % 6) if whole else round((i % 11) / 2, 1)
        kind = POSITIVE if score >= 2.5 else NEGATIVE
        rows.append({"a": f"{kind[i % len(kind)]} {i % 6}", "b": f"{kind[(i + 1) % len(kind)]} {i}", "score": score})
    return pd.DataFrame(rows)


TASKS = {
    "multi_label": (
        emotions_frame,
        {
            "task": "multi_label",
            "custom.text_columns": ["post"],
            "custom.label_column": "moods",
            "custom.label_separator": ";",
        },
    ),
    "regression": (
        scores_frame,
        {"task": "regression", "custom.text_columns": ["a", "b"], "custom.label_column": "score"},
    ),
    "grades": (
        lambda: scores_frame(whole=True),
        {"custom.text_columns": ["a", "b"], "custom.label_column": "score", "task": "regression"},
    ),
    # full fine-tuning with the MLP head: the head is saved apart from the weights and put back on load
    "multi_label_full_mlp": (
        emotions_frame,
        {
            "task": "multi_label",
            "custom.text_columns": ["post"],
            "custom.label_column": "moods",
            "train.mode": "full",
            "model.head": "mlp",
            "train.thresholds": 0.5,
        },
    ),
}


@pytest.fixture(scope="module", params=sorted(TASKS))
def trained(request, tmp_path_factory, tiny_model_dir):
    """A project folder after every stage of the pipeline on the task's custom file."""
    make, settings = TASKS[request.param]
    root = tmp_path_factory.mktemp(f"task-{request.param}")
    custom = root / "data" / "custom"
    custom.mkdir(parents=True)
    make().to_csv(custom / "train.csv", index=False)
    overrides = tiny_train_overrides(tiny_model_dir) | {
        "dataset": "custom",
        "custom.train_path": "data/custom/train.csv",
    }
    params = str(write_params(root, **overrides, **settings))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name, *args in STAGE_STEPS:
            result = invoke(name, "--params", params, *args)
            assert result.exit_code == 0, f"{name}: {result.output}"
    return request.param, root


def read(root, rel):
    return json.loads((root / rel).read_text())


def test_the_pipeline_scores_the_task(trained):
    task, root = trained
    labels = read(root, "data/split/labels.json")
    meta = read(root, "models/classifier/llmcls.json")
    test = read(root, "metrics/eval.json")["test"]
    baseline = read(root, "metrics/baseline/eval.json")["test"]
    submission = pd.read_csv(root / "data/submission.csv")
    if task.startswith("multi_label"):
        assert labels["task"] == "multi_label" and labels["labels"] == sorted(MOODS)
        tuned = task == "multi_label"
        assert meta["decision"] == {"thresholds": meta["decision"]["thresholds"], "tuned_on": "val" if tuned else None}
        assert len(meta["decision"]["thresholds"]) == 3 and (tuned or meta["decision"]["thresholds"] == [0.5] * 3)
        for metrics in (test, baseline):
            assert {"f1_micro", "f1_macro", "f1_samples", "hamming_loss", "roc_auc_macro"} <= set(metrics)
        assert list(submission.columns) == ["id", *sorted(MOODS)]
    else:
        assert labels["task"] == "regression" and labels["labels"] == ["score"]
        assert meta["target_scale"]["std"] > 0
        for metrics in (test, baseline):
            assert {"rmse", "mae", "pearson", "spearman", "r2"} <= set(metrics)
        assert list(submission.columns) == ["id", "score"]
        if task == "grades":
            assert labels["integer_scores"] and meta["decision"]["grades"] == [0, 5]
            assert {"qwk", "qwk_rounded"} <= set(test) and {"qwk", "qwk_rounded"} <= set(baseline)
            assert submission["score"].isin(range(6)).all()
        else:
            assert "decision" not in meta and "qwk" not in test


def test_predict_equals_evaluate(trained, tmp_path, monkeypatch):
    task, root = trained
    monkeypatch.chdir(root)
    # The raw rows of the test split as a new file (their labels too: predict reads them and compares).
    raw = pd.read_parquet(root / "data/raw/train.parquet")
    test = pd.read_parquet(root / "data/split/test.parquet")
    rows = raw.iloc[[int(i.split("-")[1]) for i in test["id"]]]
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = CliRunner().invoke(
        llmcls_main,
        [
            "predict",
            "--model",
            "models/classifier",
            "--input",
            str(tmp_path / "new.csv"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    multi = task.startswith("multi_label")
    assert ("accuracy against the input's label sets" if multi else "RMSE against") in result.output
    ours = pd.read_csv(tmp_path / "p.csv")
    theirs = pd.read_csv(root / "metrics/predictions/test.csv")
    outputs = [c for c in theirs.columns if c.startswith("prob_")] or ["predicted"]
    np.testing.assert_allclose(ours[outputs].to_numpy(), theirs[outputs].to_numpy(), atol=1e-5, rtol=0)
    decisions = [c for c in theirs.columns if c not in (*outputs, "id")]  # the label, predicted set, grade
    assert (ours[decisions].fillna("") == theirs[decisions].fillna("")).all().all()


def test_export_loads_in_transformers_with_the_task(trained, tmp_path, monkeypatch):
    task, root = trained
    monkeypatch.chdir(root)
    result = CliRunner().invoke(
        llmcls_main, ["export", "--model", "models/classifier", "--out", str(tmp_path / "exported")]
    )
    assert result.exit_code == 0, result.output
    test = pd.read_parquet(root / "data/split/test.parquet")
    theirs = pd.read_csv(root / "metrics/predictions/test.csv")
    script = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(input_ids=torch.tensor([json.loads(sys.argv[2])])).logits[0].double()
out = torch.sigmoid(logits) if model.config.problem_type == "multi_label_classification" else logits
print(json.dumps([model.config.problem_type, model.config.num_labels, out.tolist()]))
"""
    ids = json.dumps([int(i) for i in test["input_ids"].iloc[0]])
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "exported"), ids],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    problem_type, num_labels, values = json.loads(out.stdout.strip().splitlines()[-1])
    if task.startswith("multi_label"):
        assert (problem_type, num_labels) == ("multi_label_classification", 3)
        expected = theirs[[f"prob_{m}" for m in sorted(MOODS)]].iloc[0].to_numpy()
    else:
        assert (problem_type, num_labels) == ("regression", 1)
        expected = [theirs["predicted"].iloc[0]]  # the score scale is folded into the exported head
    np.testing.assert_allclose(values, expected, atol=1e-4)


def test_a_multilabel_lora_classifier_reads_its_head_in_fp32(tiny_base_dir):
    import torch
    from conftest import default_params

    from llmcls.config.params import parse_params
    from llmcls.core.artifacts import LabelSet
    from llmcls.model.build import build_classifier

    params = parse_params(default_params(**tiny_train_overrides(tiny_base_dir)))
    for task, dtype in (("multi_label", torch.float32), ("single_label", torch.bfloat16)):
        model = build_classifier(tiny_base_dir, LabelSet(("a", "b"), task), 0, params.model, params.train)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=torch.tensor([[5, 6, 7]])).logits
        assert logits.dtype == dtype, task  # the hook survives peft's trainable copy of the head
