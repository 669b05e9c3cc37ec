"""Free answers of a model that writes its label (the generative objective's "generated" mode): greedy
generation, and the numbers that count an answer outside the label set as wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from llmcls.core.devices import autocast_dtype
from llmcls.evaluate.metrics import macro_prf
from llmcls.model.inference import pad_batch, warm_up


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
    on the left here, as batched generation needs. Longest first, input order restored. A batch that runs out
    of memory is retried smaller (accelerate's back-off, as head inference does), from the batch it failed on."""
    device = device or next(lm.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    dtype = autocast_dtype(precision)
    pad = tokenizer.pad_token_id
    answers: dict[int, str] = {}
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
        if device.type == "cpu":
            warm_up(lambda batch: lm(**batch), prompts, pad)
        generate_all(lm, prompts, tokenizer, max_new_tokens, batch_size, order, answers, device)
    return [answers[i] for i in range(len(prompts))]


def generate_all(lm, prompts, tokenizer, max_new_tokens: int, batch_size: int, order, answers, device) -> None:
    """Fill ``answers`` for the rows of ``order`` not answered yet, in batches of the largest size that fits."""
    from accelerate.utils import find_executable_batch_size

    pad = tokenizer.pad_token_id

    @find_executable_batch_size(starting_batch_size=batch_size)
    def run(size: int) -> None:
        todo = [i for i in order if i not in answers]  # a retry after an OOM keeps what was answered
        for start in range(0, len(todo), size):
            rows = todo[start : start + size]
            batch = pad_batch([prompts[i] for i in rows], pad, side="left")
            width = batch["input_ids"].shape[1]
            out = lm.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
            for r, i in enumerate(rows):
                answers[i] = tokenizer.decode(out[r, width:], skip_special_tokens=True)

    if order:
        run()


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
