"""The generative objective (train.objective: generative): the causal LM learns to write the label's text after
the prompt, with the loss on the label tokens only; validation scores each label's text (label_scoring), so
the best checkpoint is chosen on the same accuracy / F1 / log loss as the head's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmcls.core.artifacts import LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.evaluate.label_scoring import scored_probabilities
from llmcls.evaluate.metrics import summary_metrics
from llmcls.train.sampler import TokenBudgetTrainer

IGNORE = -100  # the label id PyTorch's cross-entropy (and the Trainer's collators) skip


def label_texts(labels: LabelSet, prompt: dict[str, Any], verbalizer: dict[str, str] | None) -> list[str]:
    """What the model writes for each class: params train.verbalizer, else the name the prompt shows it by."""
    chosen = verbalizer or {}
    unknown = sorted(set(chosen) - set(labels.names))
    if unknown:
        raise LlmclsError(
            f"params.yaml train.verbalizer: {unknown} are not classes of this dataset {list(labels.names)}"
        )
    texts = [chosen.get(name, shown) for name, shown in zip(labels.names, prompt["label_texts"], strict=True)]
    if len(set(texts)) != len(texts):
        raise LlmclsError(f"train.verbalizer: two classes would be written alike: {texts}")
    return texts


def lm_rows(frame: pd.DataFrame, targets: Sequence[Sequence[int]], eos_id: int | None) -> dict[str, list]:
    """Prompt + the row's label tokens (+ EOS, so a generated answer stops); labels mask the prompt out."""
    rows: dict[str, list] = {"input_ids": [], "labels": [], "length": []}
    for prompt, label in zip(frame["input_ids"], frame["label_id"], strict=True):
        answer = list(targets[label]) + ([eos_id] if eos_id is not None else [])
        ids = [int(i) for i in prompt] + answer
        rows["input_ids"].append(ids)
        rows["labels"].append([IGNORE] * len(prompt) + answer)
        rows["length"].append(len(ids))
    return rows


def lm_dataset(frame: pd.DataFrame, targets: Sequence[Sequence[int]], eos_id: int | None):
    import datasets

    return datasets.Dataset.from_dict(lm_rows(frame, targets, eos_id))


class ScoredTrainer(TokenBudgetTrainer):
    """A Trainer whose evaluation adds the scored classification metrics of the validation prompts (eval_accuracy,
    eval_f1_macro, eval_log_loss...) to the label-token loss, so metric_for_best picks checkpoints as for the
    head."""

    def __init__(self, *args, scoring: dict[str, Any], **kwargs):
        super().__init__(*args, **kwargs)
        self.scoring = scoring

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The causal-LM loss on the label tokens, with vocabulary logits only at the positions that predict one.
        The model's own loss would project every prompt position onto the vocabulary and throw it away: most of
        a row, and at SmolLM2's 49k words (Qwen's 152k) the biggest activation of the step."""
        inputs = dict(inputs)
        targets = inputs.pop("labels")[:, 1:]  # position p predicts token p + 1
        keep = torch.nonzero((targets != IGNORE).any(dim=0)).flatten()
        outputs = model(**inputs, logits_to_keep=keep)
        logits = outputs.logits.float()
        picked = targets[:, keep]
        total = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), picked.reshape(-1), ignore_index=IGNORE, reduction="sum"
        )
        # A mean over the label tokens of the whole optimizer step (all accumulated batches, all processes), as
        # the Trainer counts them; DDP then averages the processes' gradients, hence the process count.
        loss = total / (num_items_in_batch if num_items_in_batch is not None else (picked != IGNORE).sum())
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        # Added inside the loop's output, so the logged metrics, the callbacks (early stopping) and the
        # best-checkpoint choice all see them.
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        s = self.scoring
        model = self.model
        training = model.training
        model.eval()
        probs = scored_probabilities(model, s["prompts"], s["targets"], s["pad_id"], s["batch_size"], s["precision"])
        model.train(training)
        output.metrics.update(
            {f"{metric_key_prefix}_{k}": v for k, v in summary_metrics(np.asarray(s["truth"]), probs).items()}
        )
        return output
