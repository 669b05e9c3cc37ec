"""Fine-tuning modes, heads, loss options and early stopping on the tiny random Llama."""

import json

import numpy as np
import pytest
import torch
from conftest import default_params, tiny_train_overrides
from test_training import params_for, train

from llmcls.config.params import parse_params
from llmcls.core.artifacts import LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.evaluate.classifier import evaluate_classifier
from llmcls.model.build import build_classifier
from llmcls.model.heads import head_attribute
from llmcls.model.store import load_trained_model
from llmcls.train.classifier import train_classifier
from llmcls.train.losses import class_weight_vector, weighted_loss

pytestmark = pytest.mark.model

LABELS = LabelSet(("negative", "positive"))


@pytest.mark.parametrize(("mode", "head"), [("lora", "mlp"), ("full", "mlp"), ("lora", "linear")])
def test_each_head_trains_saves_and_reloads(tmp_path, tiny_model_dir, tiny_base_dir, mode, head):
    changes = {"train.mode": mode, "model.head": head, "train.max_steps": 12, "train.eval_steps": 6}
    _, out, split_dir = train(tmp_path, tiny_model_dir, tiny_base_dir, f"{mode}-{head}", **changes)
    model_dir = out / "model"
    assert json.loads((model_dir / "llmcls.json").read_text())["params"]["model"]["head"] == head
    runs = []
    for seed in (1, 2):  # a head re-initialised on load would differ between these two loads
        torch.manual_seed(seed)
        model, _, _ = load_trained_model(model_dir, tiny_base_dir)
        layer = getattr(model, head_attribute(model))
        assert isinstance(layer, torch.nn.Sequential if head == "mlp" else torch.nn.Linear)
        _, _, predictions = evaluate_classifier(model_dir, tiny_base_dir, split_dir, 8)
        runs.append(predictions["val"]["prob_positive"].to_numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].std() > 0  # the head reads the input, it does not emit a constant


def test_mlp_head_shape_and_xavier_init(tiny_model_dir, tiny_base_dir):
    params = params_for(tiny_model_dir, **{"model.head": "mlp", "train.mode": "full"})
    model = build_classifier(tiny_base_dir, LABELS, 0, params.model, params.train)
    head = model.score
    shapes = [tuple(layer.weight.shape) for layer in head if isinstance(layer, torch.nn.Linear)]
    assert shapes == [(512, 32), (256, 512), (2, 256)]
    assert [type(layer).__name__ for layer in head][:3] == ["Linear", "ReLU", "Dropout"]
    assert all(float(layer.bias.detach().abs().sum()) == 0 for layer in head if isinstance(layer, torch.nn.Linear))
    bound = (6 / (32 + 512)) ** 0.5  # xavier_uniform's limit for the first layer
    assert float(head[0].weight.abs().max()) <= bound and float(head[0].weight.std()) > bound / 4


def test_lora_options_reach_peft(tiny_model_dir, tiny_base_dir):
    changes = {
        "train.lora.target_modules": "all-linear",
        "train.lora.bias": "lora_only",
        "train.lora.use_dora": True,
        "train.lora.use_rslora": True,
        "model.head": "mlp",
    }
    params = params_for(tiny_model_dir, **changes)
    model = build_classifier(tiny_base_dir, LABELS, 0, params.model, params.train)
    config = model.peft_config["default"]
    assert config.use_dora and config.use_rslora and config.bias == "lora_only"
    suffixes = {name.rsplit(".", 1)[-1] for name in config.target_modules}  # all-linear: full module paths
    assert {"q_proj", "v_proj", "gate_proj", "down_proj"} <= suffixes
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("score" in name and name.endswith("0.weight") for name in trainable)  # the MLP head trains
    assert any("lora_magnitude_vector" in name for name in trainable)  # DoRA's magnitudes


def test_qlora_without_cuda_stops_before_loading_anything(tmp_path, tiny_model_dir):
    params = params_for(tiny_model_dir, **{"train.mode": "qlora"})
    missing = tmp_path / "nothing-here"
    with pytest.raises(LlmclsError, match="needs a CUDA GPU"):
        train_classifier(params, missing, missing, tmp_path / "m", tmp_path / "l", tmp_path / "c")
    assert not any(tmp_path.iterdir())


def test_class_weights_on_fixed_numbers():
    labels = LabelSet(("a", "b", "c"))
    assert class_weight_vector(None, labels, [0, 1]) is None
    # 6 rows, 3 classes, counts 3 / 2 / 1 -> 6 / (3 * count)
    np.testing.assert_allclose(class_weight_vector("balanced", labels, [0, 0, 0, 1, 1, 2]), [2 / 3, 1.0, 2.0])
    assert class_weight_vector({"c": 4.0}, labels, [0]) == [1.0, 1.0, 4.0]
    with pytest.raises(LlmclsError, match=r"\['d'\] are not labels"):
        class_weight_vector({"d": 2.0}, labels, [0])


def test_weighted_loss_matches_the_formula():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [0.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    loss = weighted_loss([1.0, 3.0], 0.1)({"logits": logits}, labels, num_items_in_batch=6)
    nll = -torch.log_softmax(logits, -1)
    w = torch.tensor([1.0, 3.0])
    # PyTorch's weighted smoothing: (1 - eps) w_y nll_y + eps / K * sum_c w_c nll_c, per row
    rows = [0.9 * w[labels[i]] * nll[i, labels[i]] + 0.05 * (w * nll[i]).sum() for i in range(3)]
    expected = torch.stack(rows).sum() / 6  # summed, then divided by the rows of the whole accumulated batch
    assert torch.isclose(loss, expected)


def test_class_weights_and_smoothing_train(tmp_path, tiny_model_dir, tiny_base_dir):
    changes = {"train.class_weights": "balanced", "train.label_smoothing": 0.1}
    summary, _, _ = train(tmp_path, tiny_model_dir, tiny_base_dir, "weighted", **changes)
    assert summary["class_weights"] == [1.0, 1.0]  # the tiny train split is balanced
    assert np.isfinite(summary["best_val_accuracy"])


def test_early_stopping_stops_a_stalled_run_and_keeps_the_best(tmp_path, tiny_model_dir, tiny_base_dir):
    # A learning rate this small leaves validation accuracy flat: with patience 1 the run ends at its second
    # validation, and the first (the best: later ones never beat it) is the model kept.
    changes = {
        "train.learning_rate": 1e-12,
        "train.max_steps": 30,
        "train.eval_steps": 3,
        "train.early_stopping_patience": 1,
    }
    summary, out, _ = train(tmp_path, tiny_model_dir, tiny_base_dir, "stall", **changes)
    assert summary["stopped_early"] and summary["steps"] == 6
    assert summary["best_step"] == 3
    meta = json.loads((out / "model" / "llmcls.json").read_text())
    assert meta["training"]["best_step"] == 3


def test_without_patience_the_run_goes_on(tmp_path, tiny_model_dir, tiny_base_dir):
    changes = {"train.learning_rate": 1e-12, "train.max_steps": 9, "train.eval_steps": 3}
    summary, _, _ = train(tmp_path, tiny_model_dir, tiny_base_dir, "full-length", **changes)
    assert not summary["stopped_early"] and summary["steps"] == 9


def test_launch_params_are_checked():
    data = default_params(**tiny_train_overrides("."), **{"train.launch.num_processes": 2})
    with pytest.raises(LlmclsError, match="2 processes need strategy ddp"):
        parse_params(data)
