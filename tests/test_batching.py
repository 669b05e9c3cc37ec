"""Token-budget batches (train.max_tokens, evaluate.max_tokens) and LoRA's frozen base in the compute dtype."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_training import params_for, train

from llmcls.core.artifacts import LabelSet
from llmcls.model.batches import budget_batches, cut
from llmcls.model.build import build_classifier, frozen_base_dtype
from llmcls.model.inference import head_probabilities
from llmcls.model.store import load_trained_model
from llmcls.train.sampler import TokenBudgetSampler

LENGTHS = [5, 30, 12, 12, 7, 30, 3, 12, 50, 9, 12, 4]


def test_budget_batches_fit_the_budget_cover_every_row_once_and_go_longest_first():
    batches = budget_batches(LENGTHS, 40)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    for batch in batches:
        longest = max(LENGTHS[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 40
        assert LENGTHS[batch[0]] == longest  # each batch starts with its longest row
    assert batches[0] == [8]  # 50 tokens: over the budget, alone
    assert [len(b) for b in batches] == cut(sorted(LENGTHS, reverse=True), 40) == [1, 1, 1, 3, 3, 3]


def test_sampler_has_fixed_cuts_and_reshuffles_rows_of_equal_length_per_epoch():
    lengths = [10] * 40 + [20] * 10
    sampler = TokenBudgetSampler(lengths, 100, seed=3)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 6  # 10 rows of 20: 2 batches of 5; 40 of 10: 4 of 10
        assert sorted(i for b in batches for i in b) == list(range(50))
        assert all(len(b) * max(lengths[i] for i in b) <= 100 for b in batches)
        assert max(lengths[i] for i in batches[0]) == 20  # the longest batch first
        epochs.append(batches)
    assert epochs[0] != epochs[1]
    sampler.set_epoch(0)
    assert list(sampler) == epochs[0]  # the seed and epoch decide


@pytest.mark.model
def test_token_budget_predictions_equal_row_batches(tmp_path, tiny_model_dir, tiny_base_dir):
    _, out, split_dir = train(tmp_path, tiny_model_dir, tiny_base_dir, "rows", **{"train.max_steps": 2})
    model, _, meta = load_trained_model(out / "model", tiny_base_dir)
    rng = np.random.default_rng(0)
    sequences = [rng.integers(3, 200, size=n).tolist() for n in rng.integers(3, 40, size=30)]
    rows = head_probabilities(model, sequences, meta["pad_token_id"], 8)
    budget = head_probabilities(model, sequences, meta["pad_token_id"], 8, max_tokens=64)
    np.testing.assert_allclose(budget, rows, atol=1e-5)


@pytest.mark.model
def test_training_on_token_budget_batches_counts_its_optimizer_steps(tmp_path, tiny_model_dir, tiny_base_dir):
    summary, out, _ = train(
        tmp_path,
        tiny_model_dir,
        tiny_base_dir,
        "budget",
        **{
            "train.max_tokens": 96,
            "train.max_steps": -1,
            "train.min_steps": 0,
            "train.epochs": 2,
            "train.eval_steps": 100,
        },
    )
    lengths = [int(n) for n in pd.read_parquet(tmp_path / "split" / "train.parquet")["length"]]
    assert summary["steps"] == 2 * len(cut(sorted(lengths, reverse=True), 96))
    assert summary["global_batch_size"] == "96 tokens"
    meta = json.loads((out / "model" / "llmcls.json").read_text())
    assert meta["params"]["train"]["max_tokens"] == 96


def test_the_loss_is_a_per_row_mean_over_the_optimizer_step():
    """Uneven token-budget batches of one optimizer step: with the step's row count (what the Trainer passes as
    num_items_in_batch), their summed losses are the mean over all its rows, not a mean of batch means."""
    from llmcls.train.losses import weighted_loss

    loss = weighted_loss(None, 0.0)
    logits = torch.randn(7, 3)
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    whole = torch.nn.functional.cross_entropy(logits, labels)
    parts = [loss({"logits": logits[a:b]}, labels[a:b], num_items_in_batch=7) for a, b in ((0, 1), (1, 7))]
    torch.testing.assert_close(sum(parts), whole)


@pytest.mark.parametrize(
    ("mode", "base_precision", "precision", "expected"),
    [
        ("lora", "compute", "bf16", torch.bfloat16),
        ("lora", "compute", "fp32", torch.float32),  # no reduced precision to compute in
        ("lora", "fp32", "bf16", torch.float32),
        ("full", "compute", "bf16", torch.float32),  # full fine-tuning keeps fp32 master weights
        ("lora", "auto", "bf16", torch.bfloat16 if torch.cuda.is_available() else torch.float32),
    ],
)
def test_frozen_base_dtype(tiny_model_dir, mode, base_precision, precision, expected):
    params = params_for(tiny_model_dir, **{"train.mode": mode, "train.base_precision": base_precision})
    assert frozen_base_dtype(params.train.replace(precision=precision)) == expected


@pytest.mark.model
def test_a_bf16_frozen_base_trains_fp32_adapter_and_head_and_evaluates(tmp_path, tiny_model_dir, tiny_base_dir):
    params = params_for(tiny_model_dir, **{"train.base_precision": "compute", "train.precision": "bf16"})
    labels = LabelSet(("negative", "positive"))
    model = build_classifier(tiny_base_dir, labels, 0, params.model, params.train)
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for n, p in model.named_parameters() if not p.requires_grad and "layers" in n}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}
    summary, out, _ = train(
        tmp_path,
        tiny_model_dir,
        tiny_base_dir,
        "bf16",
        **{"train.base_precision": "compute", "train.precision": "bf16"},
    )
    assert summary["steps"] > 0
    reloaded, _, _ = load_trained_model(out / "model", tiny_base_dir)
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}  # inference merges into an fp32 base


@pytest.mark.model
def test_one_optimizer_step_over_uneven_token_batches_follows_the_per_row_mean_gradient(
    tmp_path, tiny_model_dir, tiny_base_dir
):
    """Through the real Trainer: 2 accumulated token-budget batches of different row counts, one SGD step. The
    update is -lr x the gradient of the mean loss over all the step's rows (a mean of the two batch means
    would weight the smaller batch's rows more)."""
    import copy

    from test_training import make_split_dir

    from llmcls.model.base import load_tokenizer
    from llmcls.train.losses import weighted_loss
    from llmcls.train.trainer import make_trainer, training_arguments

    changes = {"train.max_tokens": 150, "train.lora.dropout": 0.0, "train.gradient_accumulation_steps": 2}
    params = params_for(tiny_model_dir, **changes)
    split_dir = make_split_dir(tmp_path / "split", tiny_base_dir)
    frame = pd.read_parquet(split_dir / "train.parquet")
    tokenizer = load_tokenizer(tiny_base_dir)
    torch.manual_seed(0)
    model = build_classifier(tiny_base_dir, LabelSet(("negative", "positive")), tokenizer.pad_token_id,
                             params.model, params.train)  # fmt: skip
    before = copy.deepcopy(model)
    settings = dict(max_steps=1, optim="sgd", learning_rate=1.0, lr_scheduler_type="constant", warmup_steps=0)
    args = training_arguments(
        params, tmp_path / "out", "fp32", max_grad_norm=0.0, eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False, **settings,
    )  # fmt: skip
    trainer = make_trainer(model, args, tokenizer, frame, frame, loss_func=weighted_loss(None, 0.0), max_tokens=150)
    batches = [dict(b) for _, b in zip(range(2), trainer.get_train_dataloader(), strict=False)]
    sizes = [len(b["labels"]) for b in batches]
    assert sizes[0] != sizes[1]
    trainer.train()

    total = sum(sizes)
    for batch in batches:  # the per-row mean's gradient, by hand, on the untrained copy
        labels = batch.pop("labels")
        logits = before(**batch).logits
        (torch.nn.functional.cross_entropy(logits, labels, reduction="sum") / total).backward()
    trained = dict(model.named_parameters())
    checked = 0
    for name, p in before.named_parameters():
        if p.requires_grad and p.grad is not None and p.grad.abs().max() > 0:
            torch.testing.assert_close(trained[name].detach() - p.detach(), -p.grad, atol=1e-5, rtol=1e-3)
            checked += 1
    assert checked > 0
