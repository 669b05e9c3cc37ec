"""Scoring the label as text: the log-likelihood a causal LM gives each label's words after the prompt,
normalised over the label set into class probabilities.

One function serves the prompt-only row (the base model, no fine-tuning) and any causal LM that writes the
label. The prompt is run once: labels that are single tokens (" positive", " negative") all read its
next-token distribution; a longer label (" money-fx") continues from the prompt's key/value cache with its
own tokens, a pass of a few tokens.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from llmcls.model.inference import map_batches


def label_token_ids(tokenizer, label_texts: Sequence[str], prompt_ends_with_space: bool = False) -> list[list[int]]:
    """Each label's tokens as they follow the prompt: with a leading space after `...answer:`, the way the
    model would write the word there."""
    texts = [text if prompt_ends_with_space else " " + text for text in label_texts]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    empty = [text for text, tokens in zip(label_texts, ids, strict=True) if not tokens]
    if empty:
        raise ValueError(f"labels {empty} encode to no tokens")
    return ids


@contextlib.contextmanager
def last_positions_only(lm: torch.nn.Module, rows: torch.Tensor, positions: torch.Tensor) -> Iterator[None]:
    """Inside it, ``lm``'s vocabulary logits are computed for one position per row (``positions[i]`` of row i):
    logits [rows, 1, vocab]. The output layer reads only those hidden states, so with a vocabulary of tens of
    thousands of words (262k for Gemma 3: more weights than the rest of a 270M model) it costs one row's
    matmul, not one for every position where some row of the batch ends."""

    def gather(_module: torch.nn.Module, args: tuple) -> tuple:
        return (args[0][rows, positions][:, None, :], *args[1:])

    handle = lm.get_output_embeddings().register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


def label_log_likelihoods(
    lm: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    precision: str = "fp32",
    device: torch.device | None = None,
    progress: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """[rows, classes]: sum over label c's tokens of log p(token | prompt, earlier label tokens).

    The prompt runs once; every label's first token is read at its last position. A label of several tokens
    continues from the prompt's cached keys and values with its tokens but the last (labels that share those
    tokens share the pass), so eight multi-token class names cost one prompt pass plus a few tokens each,
    not eight passes over the prompt.
    """
    prefixes = sorted({tuple(label[:-1]) for label in labels if len(label) > 1})

    def read(batch: dict[str, torch.Tensor]) -> np.ndarray:
        mask = batch["attention_mask"]
        lengths = mask.sum(dim=1)
        rows = torch.arange(mask.shape[0], device=mask.device)
        with last_positions_only(lm, rows, lengths - 1):
            out = lm(**batch, use_cache=bool(prefixes))
        first = torch.log_softmax(out.logits[:, 0].float(), dim=-1)  # [b, vocab]
        scores = torch.stack([first[:, label[0]] for label in labels], dim=1)  # [b, classes]
        for prefix in prefixes:
            k = len(prefix)
            # Right-padded prompts: the continuation sits after the padding in the cache, but its positions
            # follow each row's own last token and the padding stays masked, so it reads what an unpadded
            # prompt + prefix would.
            cont = lm(
                input_ids=torch.tensor([prefix], device=mask.device).expand(len(rows), k),
                attention_mask=torch.cat([mask, mask.new_ones(len(rows), k)], dim=1),
                position_ids=lengths[:, None] + torch.arange(k, device=mask.device)[None, :],
                past_key_values=copy.deepcopy(out.past_key_values),
                use_cache=True,
            )
            logp = torch.log_softmax(cont.logits.float(), dim=-1)  # [b, k, vocab]: token i + 1 of the label
            for c, label in enumerate(labels):
                if tuple(label[:-1]) == prefix:
                    scores[:, c] += sum(logp[:, j - 1, token] for j, token in enumerate(label) if j >= 1)
        return scores.cpu().numpy()

    return map_batches(lm, list(prompts), pad_id, batch_size, read, precision, device, progress)


def scoring_batch_size(prompts: Sequence[Sequence[int]], batch_size: int) -> int:
    """Rows a label-scoring batch takes: ``batch_size``, fewer where the longest prompt would take it past 16k
    tokens (the cache of a multi-token label is copied once per pass)."""
    longest = max((len(p) for p in prompts), default=1)
    return max(1, min(batch_size, 16384 // longest))


def scored_probabilities(
    lm: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    precision: str,
    device: torch.device | None = None,
    progress: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """Class probabilities of the label texts ``targets`` after each prompt (the scored mode)."""
    size = scoring_batch_size(prompts, batch_size)
    scores = label_log_likelihoods(lm, prompts, targets, pad_id, size, precision, device, progress)
    # In float64: float32 rows sum to 1 only within ~1e-7, and by how much depends on the CPU's kernels.
    return softmax(np.asarray(scores, dtype=np.float64), axis=1)
