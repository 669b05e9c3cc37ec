"""Training and evaluation on a tiny random Llama: LoRA and full fine-tuning, reload, reproducibility."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import default_params, sentiment_frame, tiny_train_overrides

from llmcls.config.catalog import dataset_spec
from llmcls.config.params import parse_params
from llmcls.core.outputs import write_json
from llmcls.data.prompt import encode_prompts, prompt_record
from llmcls.data.rows import canonical_rows, label_set
from llmcls.evaluate.calibration import apply_temperature
from llmcls.evaluate.classifier import evaluate_classifier
from llmcls.model.store import load_trained_model
from llmcls.train.classifier import train_classifier

pytestmark = pytest.mark.model

SST2 = dataset_spec("sst2")


def make_split_dir(folder, tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    table = canonical_rows(SST2, sentiment_frame(24), "train", "memory")
    labels = label_set(SST2, table)
    encoded = encode_prompts(table, SST2, labels, load_tokenizer(tiny_base_dir), "Read {text} answer:", 64, "right")
    record = prompt_record(SST2, labels, "Read {text} answer:", 64, "right")
    folder.mkdir(parents=True)
    # Rows alternate positive / negative, so each part below holds both classes equally.
    part = encoded.index % 8
    encoded[part < 2].to_parquet(folder / "val.parquet")
    encoded[(part >= 2) & (part < 4)].to_parquet(folder / "test.parquet")
    encoded[part >= 4].to_parquet(folder / "train.parquet")
    write_json(folder / "labels.json", labels.to_json())
    write_json(folder / "prompt.json", record)
    return folder


def params_for(tiny_model_dir, **changes):
    return parse_params(default_params(**(tiny_train_overrides(tiny_model_dir) | changes)))


def train(tmp_path, tiny_model_dir, tiny_base_dir, name, **changes):
    split_dir = tmp_path / "split"
    if not split_dir.exists():
        make_split_dir(split_dir, tiny_base_dir)
    out = tmp_path / name
    summary = train_classifier(
        params_for(tiny_model_dir, **changes), split_dir, tiny_base_dir, out / "model", out / "live", out / "ckpt"
    )
    return summary, out, split_dir


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_train_saves_a_self_describing_classifier(tmp_path, tiny_model_dir, tiny_base_dir, mode):
    summary, out, split_dir = train(tmp_path, tiny_model_dir, tiny_base_dir, mode, **{"train.mode": mode})
    model_dir = out / "model"
    labels = json.loads((model_dir / "labels.json").read_text())
    assert labels["id2label"] == {"0": "negative", "1": "positive"}
    meta = json.loads((model_dir / "llmcls.json").read_text())
    assert meta["mode"] == mode and meta["params"]["train"]["mode"] == mode
    assert (model_dir / ("adapter_config.json" if mode == "lora" else "config.json")).is_file()
    assert summary["best_step"] in (3, 6)
    live = json.loads((out / "live" / "metrics.json").read_text())
    assert "accuracy" in live["eval"] and live["step"] == 6
    assert (out / "live" / "plots" / "metrics" / "eval" / "accuracy.tsv").is_file()

    model, label_set_, _ = load_trained_model(model_dir, tiny_base_dir)
    assert label_set_.names == ("negative", "positive")
    summary, report, predictions = evaluate_classifier(model_dir, tiny_base_dir, split_dir, 8)
    assert summary["test"]["n"] == 12 and 0 <= summary["test"]["accuracy"] <= 1
    assert report["test"]["confusion_matrix"] and set(summary["test"]["f1_per_class"]) == {"negative", "positive"}
    probs = predictions["test"][["prob_negative", "prob_positive"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    # Calibrated by default: a temperature fitted on val, stored with the model, applied by evaluate; the
    # uncalibrated numbers stay beside, and the predicted classes are the uncalibrated model's.
    calibration = meta["calibration"]
    assert calibration["method"] == "temperature" and calibration["temperature"] > 0
    assert calibration["val_log_loss"]["after"] <= calibration["val_log_loss"]["before"] + 1e-9
    assert {"log_loss", "ece"} == set(summary["test"]["uncalibrated"]) and 0 <= summary["test"]["ece"] <= 1
    assert report["calibration"] == calibration
    uncalibrated = apply_temperature(probs, 1 / calibration["temperature"])
    assert (uncalibrated.argmax(axis=1) == probs.argmax(axis=1)).all()


def test_calibration_none_leaves_the_probabilities_as_the_model_gives_them(tmp_path, tiny_model_dir, tiny_base_dir):
    _, out, split_dir = train(tmp_path, tiny_model_dir, tiny_base_dir, "raw", **{"train.calibration": "none"})
    meta = json.loads((out / "model" / "llmcls.json").read_text())
    assert meta["calibration"] is None
    summary, report, _ = evaluate_classifier(out / "model", tiny_base_dir, split_dir, 8)
    assert "uncalibrated" not in summary["test"] and report["calibration"] is None


def test_lora_learns_the_tiny_task(tmp_path, tiny_model_dir, tiny_base_dir):
    _, out, split_dir = train(
        tmp_path, tiny_model_dir, tiny_base_dir, "learn", **{"train.max_steps": 30, "train.eval_steps": 10}
    )
    summary, _, _ = evaluate_classifier(out / "model", tiny_base_dir, split_dir, 8)
    assert summary["val"]["accuracy"] >= 0.9


def test_same_seed_same_result_other_seed_differs(tmp_path, tiny_model_dir, tiny_base_dir):
    results = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 7)):
        _, out, split_dir = train(tmp_path, tiny_model_dir, tiny_base_dir, name, **{"train.seed": seed})
        _, _, predictions = evaluate_classifier(out / "model", tiny_base_dir, split_dir, 8)
        results[name] = predictions["val"]["prob_positive"].to_numpy()
    np.testing.assert_array_equal(results["a"], results["b"])
    assert not np.allclose(results["a"], results["c"])


def test_best_checkpoint_is_kept_not_the_last(tmp_path, tiny_model_dir, tiny_base_dir):
    # The kept model is the one with the best validation log loss in the curve, wherever it lies.
    summary, out, _ = train(
        tmp_path,
        tiny_model_dir,
        tiny_base_dir,
        "best",
        **{"train.max_steps": 12, "train.eval_steps": 3, "train.metric_for_best": "log_loss"},
    )
    history = pd.read_csv(out / "live" / "plots" / "metrics" / "eval" / "log_loss.tsv", sep="\t")
    best = history.loc[history["log_loss"].idxmin(), "step"]
    assert summary["best_step"] == best


@pytest.mark.parametrize(
    ("rows", "min_steps", "max_steps", "processes", "expected"),
    [
        (100, 60, -1, 1, 60),  # 7 batches x 2 epochs = 14 steps: lifted to 60
        (2000, 60, -1, 1, None),  # 250 steps already
        (100, 0, -1, 1, None),  # no floor
        (100, 60, 5, 1, None),  # max_steps decides
        (960, 70, -1, 2, 70),  # 2 processes: 30 batches each x 2 epochs = 60 steps, lifted to 70
    ],
)
def test_step_floor_lifts_only_short_runs(tiny_model_dir, rows, min_steps, max_steps, processes, expected):
    from llmcls.train.trainer import step_floor

    params = params_for(tiny_model_dir, **{"train.min_steps": min_steps, "train.max_steps": max_steps})
    t = params.train.replace(batch_size=16, epochs=2.0)
    assert step_floor(t, [10] * rows, processes) == expected


def test_step_floor_counts_token_budget_batches(tiny_model_dir):
    from llmcls.train.trainer import step_floor

    params = params_for(tiny_model_dir, **{"train.min_steps": 50, "train.max_tokens": 100, "train.max_steps": -1})
    t = params.train.replace(epochs=2.0)
    # 100 rows of 10 tokens: 10 rows a batch, 10 batches an epoch, 20 steps: lifted to 50.
    assert step_floor(t, [10] * 100, 1) == 50
    # 100-token rows go one a batch: 200 steps already, whatever batch_size says.
    assert step_floor(t, [100] * 100, 1) is None


def test_min_steps_runs_that_many_steps(tmp_path, tiny_model_dir, tiny_base_dir):
    summary, _, _ = train(
        tmp_path,
        tiny_model_dir,
        tiny_base_dir,
        "floor",
        **{"train.max_steps": -1, "train.epochs": 1, "train.min_steps": 7},
    )
    assert summary["steps"] == 7  # 12 train rows at batch 8: 2 steps an epoch, lifted to 7
