"""Scoring the label as text (the prompt-only row): batched, prefix-shared log-likelihoods against a hand
computation, one sequence at a time, on the tiny random Llama."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from llmcls.evaluate.label_scoring import label_log_likelihoods, label_token_ids, scored_probabilities

pytestmark = pytest.mark.model


def by_hand(lm, prompt, label) -> float:
    """log p(label | prompt): the whole sequence run alone, no padding, no sharing."""
    ids = torch.tensor([list(prompt) + list(label)])
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=ids).logits[0].double(), dim=-1)
    start = len(prompt)
    return float(sum(logp[start - 1 + j, token] for j, token in enumerate(label)))


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_batched_scores_match_the_hand_computation(lm):
    prompts = [[1, 5, 9, 13, 2], [1, 7, 3], [1, 40, 41, 42, 43, 44, 45, 46], [1, 8]]
    # Two single-token labels (one shared pass), a two-token and a three-token one sharing a first token.
    labels = [[11], [12], [20, 21], [20, 22, 23]]
    scores = label_log_likelihoods(lm, prompts, labels, pad_id=0, batch_size=3)
    expected = np.array([[by_hand(lm, p, label) for label in labels] for p in prompts])
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    probs = scored_probabilities(lm, prompts, labels, pad_id=0, batch_size=3, precision="fp32")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(probs, np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True), atol=1e-4)


def test_the_prompt_runs_once_whatever_the_label_lengths(lm, monkeypatch):
    import llmcls.evaluate.label_scoring as scoring

    seen = []
    real = scoring.map_batches
    monkeypatch.setattr(
        scoring, "map_batches", lambda m, seqs, *a, **k: seen.append(len(seqs)) or real(m, seqs, *a, **k)
    )
    label_log_likelihoods(lm, [[1, 5], [1, 6, 7]], [[11], [12], [13]], pad_id=0, batch_size=8)
    assert seen == [2]
    # Multi-token labels continue from the prompt's cache instead of re-running the prompt.
    label_log_likelihoods(lm, [[1, 5], [1, 6, 7]], [[11], [12, 13], [20, 21, 22]], pad_id=0, batch_size=8)
    assert seen == [2, 2]


def test_the_output_layer_reads_one_position_per_row(lm):
    """Rows of three lengths in one batch: the vocabulary matmul still sees one hidden state per row."""
    seen = []
    hook = lm.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    try:
        label_log_likelihoods(lm, [[1, 5], [1, 6, 7], [1, 6, 7, 8, 9]], [[11], [12]], pad_id=0, batch_size=8)
    finally:
        hook.remove()
    assert seen == [(3, 1, lm.config.hidden_size)]


def test_label_texts_follow_the_prompt_with_a_space(tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    ids = label_token_ids(tokenizer, ["great", "dull"])
    assert ids == [
        tokenizer(" great", add_special_tokens=False)["input_ids"],
        tokenizer(" dull", add_special_tokens=False)["input_ids"],
    ]
    with pytest.raises(ValueError, match="encode to no tokens"):
        label_token_ids(tokenizer, [""], prompt_ends_with_space=True)
