"""Scoring the label as text: the log-likelihood a causal LM gives each label's words after the prompt,
normalised over the label set into class probabilities.

One function serves the prompt-only row (the base model, no fine-tuning) and any causal LM that writes the
label. A row is run once per distinct prefix its labels need: labels that are single tokens (" positive",
" negative") all read the same next-token distribution, so the whole label set costs one forward pass; a
longer label (" money-fx") adds a pass over the prompt plus its first tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmcls.base_model import load_tokenizer, weights_location
from llmcls.devices import enable_fast_matmul, process_state
from llmcls.inference import map_batches
from llmcls.outputs import read_json
from llmcls.preprocessing import LabelSet
from llmcls.scoring import SPLITS, score_splits


def label_token_ids(tokenizer, label_texts: Sequence[str], prompt_ends_with_space: bool = False) -> list[list[int]]:
    """Each label's tokens as they follow the prompt: with a leading space after `...answer:`, the way the
    model would write the word there."""
    texts = [text if prompt_ends_with_space else " " + text for text in label_texts]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    empty = [text for text, tokens in zip(label_texts, ids, strict=True) if not tokens]
    if empty:
        raise ValueError(f"labels {empty} encode to no tokens")
    return ids


def label_log_likelihoods(
    lm: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    precision: str = "fp32",
) -> np.ndarray:
    """[rows, classes]: sum over label c's tokens of log p(token | prompt, earlier label tokens)."""
    candidates = sorted({token for label in labels for token in label})
    column = {token: i for i, token in enumerate(candidates)}
    depth = max(len(label) for label in labels)  # positions read at the end of every sequence
    # The prefix each class needs: the prompt and all of its label but the last token. Classes with the same
    # prefix share one sequence (all single-token labels: the bare prompt).
    prefixes = sorted({tuple(label[:-1]) for label in labels})
    which = [prefixes.index(tuple(label[:-1])) for label in labels]
    sequences = [list(prompt) + list(prefix) for prompt in prompts for prefix in prefixes]
    index = torch.tensor(candidates)

    def read(batch: dict[str, torch.Tensor]) -> np.ndarray:
        logits = lm(**batch).logits  # [b, t, vocab]
        lengths = batch["attention_mask"].sum(dim=1)
        # The last `depth` positions of each row (right-padded), earliest first; clamped for short rows.
        offsets = torch.arange(-depth, 0, device=logits.device)
        positions = (lengths[:, None] + offsets[None, :]).clamp(min=0)
        rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
        picked = torch.log_softmax(logits[rows, positions].float(), dim=-1)  # [b, depth, vocab]
        return picked[..., index.to(logits.device)].cpu().numpy()

    read_out = map_batches(lm, sequences, pad_id, batch_size, read, precision)  # [rows * prefixes, depth, cand]
    read_out = read_out.reshape(len(prompts), len(prefixes), depth, len(candidates))
    scores = np.zeros((len(prompts), len(labels)))
    for c, label in enumerate(labels):
        # Token j of a label of length L is predicted at position L - 1 - j from the end of its sequence.
        for j, token in enumerate(label):
            scores[:, c] += read_out[:, which[c], depth - len(label) + j, column[token]]
    return scores


def normalise(log_likelihoods: np.ndarray) -> np.ndarray:
    """Class probabilities: a softmax over the label set of the summed log-likelihoods."""
    shifted = log_likelihoods - log_likelihoods.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(axis=1, keepdims=True)


def evaluate_prompt_only(
    base_dir: Path, split_dir: Path, label_texts: list[str], batch_size: int, precision: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """(summary, report, predictions) of the base model with no fine-tuning: each class's probability is its
    label text's likelihood after the prompt (the same prompt the classifier reads), normalised over the
    classes. The row that shows what fine-tuning adds."""
    from transformers import AutoModelForCausalLM

    enable_fast_matmul()
    tokenizer = load_tokenizer(base_dir)
    name, pinned = weights_location(base_dir)
    lm = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32, attn_implementation="sdpa", **pinned)
    lm = lm.to(process_state().device).eval()
    labels = LabelSet.from_json(read_json(split_dir / "labels.json"))
    targets = label_token_ids(tokenizer, label_texts)
    frames = {split: pd.read_parquet(split_dir / f"{split}.parquet") for split in SPLITS}
    probs = {}
    for split, frame in frames.items():
        prompts = frame["input_ids"].tolist()
        # Full-vocabulary logits for every position: keep a batch near 16k tokens.
        longest = max((len(p) for p in prompts), default=1) + max(map(len, targets))
        size = max(1, min(batch_size, 16384 // longest))
        scores = label_log_likelihoods(lm, prompts, targets, tokenizer.pad_token_id, size, precision)
        probs[split] = normalise(scores)
    return score_splits(frames, probs, labels)
