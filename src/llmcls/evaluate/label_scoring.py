"""Scoring the label as text: the log-likelihood a causal LM gives each label's words after the prompt,
normalised over the label set into class probabilities.

One function serves the prompt-only row (the base model, no fine-tuning) and any causal LM that writes the
label. The prompt is run once: labels that are single tokens (" positive", " negative") all read its
next-token distribution; a longer label (" money-fx") continues from the prompt's key/value cache with its
own tokens, a pass of a few tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmcls.core.devices import autocast_dtype, enable_fast_matmul, process_state
from llmcls.core.outputs import read_json
from llmcls.data.preprocess import LabelSet
from llmcls.evaluate.metrics import macro_prf
from llmcls.evaluate.scoring import SPLITS, score_splits
from llmcls.model.base import load_tokenizer
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
        # Vocabulary logits only where some row ends (not at every position: 20% of the compute and most of
        # the memory of a batch at SmolLM2's 49k vocabulary).
        ends = torch.unique(lengths - 1)
        out = lm(**batch, use_cache=bool(prefixes), logits_to_keep=ends)
        last = out.logits[rows, torch.searchsorted(ends, lengths - 1)]
        first = torch.log_softmax(last.float(), dim=-1)  # [b, vocab]
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


def normalise(log_likelihoods: np.ndarray) -> np.ndarray:
    """Class probabilities: a softmax over the label set of the summed log-likelihoods."""
    # In float64: float32 rows sum to 1 only within ~1e-7, and by how much depends on the CPU's kernels.
    scores = np.asarray(log_likelihoods, dtype=np.float64)
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(axis=1, keepdims=True)


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
    # Keep a batch near 16k tokens (the cache of a multi-token label is copied once per pass).
    longest = max((len(p) for p in prompts), default=1)
    size = max(1, min(batch_size, 16384 // longest))
    return normalise(label_log_likelihoods(lm, prompts, targets, pad_id, size, precision, device, progress))


def evaluate_prompt_only(
    base_dir: Path, split_dir: Path, label_texts: list[str], batch_size: int, precision: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """(summary, report, predictions) of the base model with no fine-tuning: each class's probability is its
    label text's likelihood after the prompt (the same prompt the classifier reads), normalised over the
    classes. The row that shows what fine-tuning adds."""
    from llmcls.model.build import base_lm

    enable_fast_matmul()
    tokenizer = load_tokenizer(base_dir)
    lm = base_lm(base_dir).to(process_state().device).eval()
    labels = LabelSet.from_json(read_json(split_dir / "labels.json"))
    targets = label_token_ids(tokenizer, label_texts)
    frames = {split: pd.read_parquet(split_dir / f"{split}.parquet") for split in SPLITS}
    probs = {
        split: scored_probabilities(
            lm, frame["input_ids"].tolist(), targets, tokenizer.pad_token_id, batch_size, precision
        )
        for split, frame in frames.items()
    }
    return score_splits(frames, probs, labels)


def generate_answers(
    lm: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    tokenizer,
    max_new_tokens: int,
    batch_size: int,
    precision: str,
    device: torch.device | None = None,
) -> list[str]:
    """Greedy answers after each prompt (the generated mode), batched with the KV cache; prompts are padded
    on the left here, as batched generation needs. Longest first, input order restored."""
    device = device or next(lm.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    dtype = autocast_dtype(precision)
    pad = tokenizer.pad_token_id
    answers: dict[int, str] = {}
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, width - len(prompts[i]) :] = torch.as_tensor(np.asarray(prompts[i]), dtype=torch.long)
                mask[r, width - len(prompts[i]) :] = 1
            out = lm.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
            for r, i in enumerate(rows):
                answers[i] = tokenizer.decode(out[r, width:], skip_special_tokens=True)
    return [answers[i] for i in range(len(prompts))]


def answer_class(answer: str, label_texts: Sequence[str]) -> int:
    """The class an answer names: its first line, stripped, equal to a label text (case-insensitive); -1 for an
    answer outside the label set."""
    words = answer.strip().split("\n")[0].strip().casefold()
    return next((c for c, text in enumerate(label_texts) if words == text.strip().casefold()), -1)


def generated_metrics(answers: Sequence[str], label_texts: Sequence[str], truth: Sequence[int]) -> dict[str, Any]:
    """The generated mode's numbers: how many answers are in the label set and how many are not, and accuracy
    and macro P / R / F1 that count an answer outside the set as wrong."""
    predicted = np.array([answer_class(a, label_texts) for a in answers])
    truth = np.asarray(truth)
    inside = int((predicted >= 0).sum())
    summary: dict[str, Any] = {"in_label_set": inside, "not_in_label_set": len(predicted) - inside}
    summary["in_label_set_share"] = inside / max(len(predicted), 1)
    if len(truth) and (truth >= 0).all():
        p, r, f1 = macro_prf(truth, predicted)
        summary |= {
            "accuracy": float((predicted == truth).mean()),
            "precision_macro": p,
            "recall_macro": r,
            "f1_macro": f1,
        }
    return summary
