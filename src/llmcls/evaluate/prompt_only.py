"""The prompt_only stage's logic: the base model with no fine-tuning, scored by its label texts' likelihood after
the same prompt the classifier reads. The row that shows what fine-tuning adds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.core.artifacts import SINGLE_LABEL, SplitFolder
from llmcls.core.devices import enable_fast_matmul, process_state
from llmcls.core.progress import phase
from llmcls.evaluate.label_scoring import label_token_ids, scored_probabilities
from llmcls.evaluate.scoring import score_splits
from llmcls.model.base import load_tokenizer
from llmcls.model.build import base_lm


def evaluate_prompt_only(
    base_dir: Path,
    split_dir: Path,
    label_texts: list[str],
    batch_size: int,
    precision: str,
    trust_remote_code: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """(summary, report, predictions) of the base model with no fine-tuning: each class's probability is its
    label text's likelihood after the prompt (the same prompt the classifier reads), normalised over the
    classes. Single-label only: a label set or a score is not one label text to rank against the others, so
    for those tasks the summary says why it was skipped and there are no predictions."""
    split = SplitFolder(split_dir)
    if (task := split.labels.task) != SINGLE_LABEL:
        why = f"prompt-only scoring ranks one class name against the others; a {task} task has no such answer"
        return {"skipped": why}, {"task": task, "skipped": why}, {}
    enable_fast_matmul()
    tokenizer = load_tokenizer(base_dir, trust_remote_code)
    with phase("load"):
        lm = base_lm(base_dir, trust_remote_code=trust_remote_code).to(process_state().device).eval()
    targets = label_token_ids(tokenizer, label_texts)
    frames = split.frames()
    probs = {}
    for name, frame in frames.items():
        with phase(f"score {name}"):
            ids = frame["input_ids"].tolist()
            probs[name] = scored_probabilities(lm, ids, targets, tokenizer.pad_token_id, batch_size, precision)
    return score_splits(frames, probs, split.labels)
