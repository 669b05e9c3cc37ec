"""Tail weight averaging (train.average_last) on the tiny model: the kept weights are the mean of the tail's
per-step weights, validation sees that mean, and a run resumed inside the tail ends where an uninterrupted
one does."""

import json

import pandas as pd
import pytest
import torch
from conftest import default_params, tiny_train_overrides
from safetensors.torch import load_file
from test_training import make_split_dir, params_for, train
from transformers import TrainerCallback

from llmcls.config.params import parse_params
from llmcls.core.artifacts import LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import read_json
from llmcls.model.base import load_tokenizer
from llmcls.model.build import build_classifier
from llmcls.train.trainer import make_trainer, training_arguments
from llmcls.train.weight_averaging import AVERAGE_STATE, LIVE_WEIGHTS, TailAverage, first_averaged_step

pytestmark = pytest.mark.model


@pytest.mark.parametrize(
    ("fraction", "max_steps", "first"), [(0.5, 10, 6), (1.0, 10, 1), (0.01, 10, 10), (0.25, 250, 189)]
)
def test_first_averaged_step_counts_the_tail(fraction, max_steps, first):
    assert first_averaged_step(fraction, max_steps) == first


@pytest.mark.parametrize(("value", "strategy"), [(0.0, "single"), (1.5, "single"), (0.5, "fsdp")])
def test_average_last_is_validated(tiny_model_dir, value, strategy):
    data = default_params(**(tiny_train_overrides(tiny_model_dir) | {"train.average_last": value}))
    data["train"]["launch"]["strategy"] = strategy
    with pytest.raises(LlmclsError, match="average_last"):
        parse_params(data)


class Record(TrainerCallback):
    """The trainable weights after every optimizer step (registered after TailAverage: the live ones, since
    the swap for a validation happens only at the steps that validate, and those are checked apart)."""

    def __init__(self, model):
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.steps: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_begin(self, args, state, control, **kwargs):
        # The weights the coming step starts from are the live weights the previous step ended with.
        if state.global_step:
            self.steps[state.global_step] = {n: p.detach().clone() for n, p in self.params.items()}

    def on_train_end(self, args, state, control, **kwargs):
        self.final = {n: p.detach().clone() for n, p in self.params.items()}


def tiny_trainer(tmp_path, tiny_model_dir, tiny_base_dir, name, callbacks=(), **changes):
    split_dir = tmp_path / "split"
    if not split_dir.exists():
        make_split_dir(split_dir, tiny_base_dir)
    params = params_for(tiny_model_dir, **changes)
    tokenizer = load_tokenizer(tiny_base_dir)
    labels = LabelSet.from_json(read_json(split_dir / "labels.json"))
    torch.manual_seed(0)
    model = build_classifier(tiny_base_dir, labels, tokenizer.pad_token_id, params.model, params.train)
    average = TailAverage(model, params.train.average_last)
    args = training_arguments(params, tmp_path / name, "fp32")
    frames = [pd.read_parquet(split_dir / f"{s}.parquet") for s in ("train", "val")]
    extra = [make(model) for make in callbacks]
    trainer = make_trainer(model, args, tokenizer, *frames, callbacks=[average, *extra])
    return trainer, model, average, extra


def test_kept_weights_are_the_mean_of_the_tail(tmp_path, tiny_model_dir, tiny_base_dir):
    # 8 steps, the last half averaged (steps 5-8); one validation at the end, so its checkpoint is the kept one.
    changes = {"train.max_steps": 8, "train.eval_steps": 8, "train.average_last": 0.5, "train.lora.dropout": 0.0}
    trainer, model, average, (record,) = tiny_trainer(tmp_path, tiny_model_dir, tiny_base_dir, "a", [Record], **changes)
    trainer.train()
    assert average.record() == {"fraction": 0.5, "first_step": 5, "steps_averaged": 4}
    # Step 8's live weights never start a step: take them from the checkpoint's side file.
    checkpoint = tmp_path / "a" / "checkpoint-8"
    assert json.loads((checkpoint / AVERAGE_STATE).read_text())["count"] == 4
    record.steps[8] = load_file(checkpoint / LIVE_WEIGHTS)
    for name in average.params:
        expected = torch.stack([record.steps[s][name] for s in (5, 6, 7, 8)]).mean(dim=0)
        torch.testing.assert_close(record.final[name], expected, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(record.steps[8][name], expected)  # the average is not the last step


def test_validation_scores_the_averaged_weights(tmp_path, tiny_model_dir, tiny_base_dir):
    class Seen(TrainerCallback):
        def __init__(self, model):
            self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
            self.at_eval = {}

        def on_evaluate(self, args, state, control, **kwargs):
            self.at_eval[state.global_step] = {n: p.detach().clone() for n, p in self.params.items()}

    # Validation and checkpoint share steps here, so the mean stays in until the checkpoint is written.
    changes = {"train.max_steps": 6, "train.eval_steps": 3, "train.average_last": 0.5}
    trainer, model, average, _ = tiny_trainer(tmp_path, tiny_model_dir, tiny_base_dir, "v", **changes)
    seen = Seen(model)
    trainer.callback_handler.callbacks.insert(0, seen)
    trainer.train()
    assert average.start == 4
    name = next(iter(average.params))
    torch.testing.assert_close(seen.at_eval[6][name], average.mean[name])  # step 6: the mean of steps 4-6
    assert set(seen.at_eval) == {3, 6}


def test_resumed_inside_the_tail_ends_like_an_uninterrupted_run(tmp_path, tiny_model_dir, tiny_base_dir):
    changes = {"train.max_steps": 8, "train.eval_steps": 4, "train.average_last": 0.75, "train.lora.dropout": 0.0}
    whole, model, average, _ = tiny_trainer(tmp_path, tiny_model_dir, tiny_base_dir, "whole", **changes)
    whole.train()
    expected = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    class StopAt4(TrainerCallback):
        def __init__(self, model):
            pass

        def on_save(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 4

    cut, *_ = tiny_trainer(tmp_path, tiny_model_dir, tiny_base_dir, "cut", [StopAt4], **changes)
    cut.train()
    checkpoint = tmp_path / "cut" / "checkpoint-4"
    assert json.loads((checkpoint / AVERAGE_STATE).read_text())["count"] == 2  # steps 3 and 4

    again, model, average, _ = tiny_trainer(tmp_path, tiny_model_dir, tiny_base_dir, "cut", **changes)
    again.train(resume_from_checkpoint=str(checkpoint))
    assert average.count == 6
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.detach(), expected[name], atol=1e-5, rtol=1e-4)


def test_train_stage_records_the_average(tmp_path, tiny_model_dir, tiny_base_dir):
    summary, out, _ = train(tmp_path, tiny_model_dir, tiny_base_dir, "avg", **{"train.average_last": 0.5})
    assert summary["weight_average"] == {"fraction": 0.5, "first_step": 4, "steps_averaged": 3}
    meta = json.loads((out / "model" / "llmcls.json").read_text())
    assert meta["training"]["weight_average"]["steps_averaged"] == 3
    off, _, _ = train(tmp_path, tiny_model_dir, tiny_base_dir, "off")
    assert off["weight_average"] is None
