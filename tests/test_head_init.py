"""The warm-started head (train.head_init: linear_probe): the probe folded into a linear layer, and the
classifier that starts from it."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from test_training import params_for, train

from llmcls.core.artifacts import LabelSet
from llmcls.model.build import build_classifier
from llmcls.train.classifier import train_classifier
from llmcls.train.head_init import fit_probe

pytestmark = pytest.mark.model


def linear_probs(weight, bias, features):
    logits = features @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [2, 4])
def test_probe_folds_standardisation_into_the_layer(classes):
    rng = np.random.default_rng(0)
    labels = np.arange(120) % classes
    # Features on very different scales and offsets, as raw LLM hidden states are.
    features = rng.normal(size=(120, 6)) * [1, 50, 0.1, 3, 7, 1] + [0, 100, -5, 2, 0, 9]
    features[:, 0] += labels * 2.0
    weight, bias, accuracy, _ = fit_probe(features, labels, classes, C=1.0, seed=0)
    assert weight.shape == (classes, 6) and bias.shape == (classes,)
    mean, scale = features.mean(axis=0), features.std(axis=0)
    reference = LogisticRegression(C=1.0, max_iter=5000, random_state=0).fit((features - mean) / scale, labels)
    expected = reference.predict_proba((features - mean) / scale)
    np.testing.assert_allclose(linear_probs(weight, bias, features), expected, atol=1e-8)
    assert accuracy == pytest.approx((expected.argmax(axis=1) == labels).mean())
    assert accuracy > 0.6  # the signal in feature 0 was found


def test_a_class_missing_from_the_rows_never_wins():
    features = np.random.default_rng(1).normal(size=(40, 3))
    labels = np.arange(40) % 2 * 2  # classes 0 and 2 of three
    weight, bias, _, _ = fit_probe(features, labels, 3, C=1.0, seed=0)
    assert (linear_probs(weight, bias, features).argmax(axis=1) != 1).all()


def test_warm_started_head_predicts_what_the_probe_predicts(tmp_path, tiny_model_dir, tiny_base_dir):
    import pandas as pd
    from test_training import make_split_dir

    split = pd.read_parquet(make_split_dir(tmp_path / "split", tiny_base_dir) / "train.parquet")
    params = params_for(tiny_model_dir)
    sequences, label_ids = split["input_ids"].tolist(), split["label_id"].to_numpy()
    captured = {}

    def warm_start(model, head):
        from llmcls.train.head_init import warm_start_head

        captured.update(warm_start_head(model, head, sequences, label_ids, 0, 4, params.train.probe_C, 0))

    labels = LabelSet(("negative", "positive"))
    model = build_classifier(tiny_base_dir, labels, 0, params.model, params.train, warm_start=warm_start).eval()
    assert captured["method"] == "linear_probe" and captured["rows"] == len(sequences)
    from llmcls.model.inference import head_probabilities

    probs = head_probabilities(model, sequences, 0, 4)
    accuracy = float((probs.argmax(axis=1) == label_ids).mean())
    # The LoRA adapter starts as the identity, so the wrapped model reads the probe's features unchanged.
    assert accuracy == pytest.approx(captured["probe_train_accuracy"])
    assert probs.std() > 0


@pytest.mark.parametrize(
    ("head_init", "head", "method"),
    [("linear_probe", "linear", "linear_probe"), ("random", "linear", "random"), ("linear_probe", "mlp", "random")],
)
def test_training_records_how_the_head_started(tmp_path, tiny_model_dir, tiny_base_dir, head_init, head, method):
    changes = {"train.head_init": head_init, "model.head": head, "train.max_steps": 2, "train.eval_steps": 2}
    summary, out, _ = train(tmp_path, tiny_model_dir, tiny_base_dir, "run", **changes)
    assert summary["head_init"]["method"] == method
    meta = json.loads((out / "model" / "llmcls.json").read_text())
    assert meta["training"]["head_init"]["method"] == method
    assert ("probe_train_accuracy" in meta["training"]["head_init"]) == (method == "linear_probe")


def test_linear_head_has_a_bias_and_reloads_in_full_mode(tmp_path, tiny_model_dir, tiny_base_dir):
    from llmcls.model.heads import head_attribute
    from llmcls.model.store import load_trained_model

    _, out, _ = train(tmp_path, tiny_model_dir, tiny_base_dir, "full", **{"train.mode": "full", "train.max_steps": 2})
    model, _, _ = load_trained_model(out / "model", tiny_base_dir)
    head = getattr(model, head_attribute(model))
    # The probe's intercept survived the save / reload of a fully fine-tuned model.
    assert head.bias is not None and float(head.bias.detach().abs().sum()) > 0


def test_rows_of_one_class_keep_the_random_head():
    import torch

    from llmcls.train.head_init import warm_start_head

    head = torch.nn.Linear(4, 2)
    before = head.weight.detach().clone()
    record = warm_start_head(torch.nn.Identity(), head, [[1, 2]] * 3, [1, 1, 1], 0, 2, 1.0, 0)
    assert record["method"] == "random" and "single class" in record["probe_skipped"]
    assert torch.equal(head.weight, before)


def test_the_probe_stage_features_give_the_same_warm_start_and_are_refused_for_other_rows(
    tmp_path, tiny_model_dir, tiny_base_dir
):
    """What the probe stage writes is what train would compute: a run reading it starts and ends the same; a
    folder made for other rows or another precision is not used (the run computes its own and says why)."""
    from test_training import make_split_dir

    from llmcls.core.artifacts import SplitFolder
    from llmcls.train.probe_cache import cached_features, compute_probe_features

    split_dir = tmp_path / "split"
    make_split_dir(split_dir, tiny_base_dir)
    changes = {"train.max_steps": 2, "train.eval_steps": 2}
    record = compute_probe_features(params_for(tiny_model_dir, **changes), split_dir, tiny_base_dir, tmp_path / "probe")
    rows = SplitFolder(split_dir).frame("train")["input_ids"].tolist()
    assert record["rows"] == len(rows) and record["precision"] == "fp32"
    features, source = cached_features(tmp_path / "probe", rows, "fp32")
    assert features.shape == (len(rows), record["hidden"]) and source.startswith("read from")
    assert cached_features(tmp_path / "probe", rows[1:], "fp32")[0] is None  # other rows
    assert "holds fp32 features" in cached_features(tmp_path / "probe", rows, "bf16")[1]
    params = params_for(tiny_model_dir, **changes)
    reference = train_classifier(params, split_dir, tiny_base_dir, *(tmp_path / "a" / n for n in ("m", "l", "c")))
    cached = train_classifier(
        params, split_dir, tiny_base_dir, *(tmp_path / "b" / n for n in ("m", "l", "c")), probe_dir=tmp_path / "probe"
    )
    assert cached["head_init"] == reference["head_init"] and cached["run"]["probe_features"] == source
    weights = [(tmp_path / run / "m" / "adapter_model.safetensors").read_bytes() for run in ("a", "b")]
    assert weights[0] == weights[1]
    skipped = compute_probe_features(
        params_for(tiny_model_dir, **{"train.head_init": "random"}), split_dir, tiny_base_dir, tmp_path / "none"
    )
    assert skipped == {"skipped": "train.head_init is random"}
    assert "has none: train.head_init is random" in cached_features(tmp_path / "none", rows, "fp32")[1]
