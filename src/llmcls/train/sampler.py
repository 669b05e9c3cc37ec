"""Token-budget training batches (params `train.max_tokens`): the cut points depend only on the sorted lengths,
so every epoch has the same number of batches (the learning-rate schedule counts optimizer steps from it);
which rows of equal length share a batch, and the order of the batches, are reshuffled each epoch from the
seed. The loss stays a per-row mean over the whole optimizer step (all processes, all accumulated batches):
the Trainer counts the rows of each step (`num_items_in_batch`) and the loss divides by that count.

Hand-written because neither transformers nor accelerate ships a sampler that packs batches by padded tokens
(the Trainer's length grouping keeps a fixed row count per batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer

from llmcls.model.batches import cut, split


class TokenBudgetSampler(Sampler[list[int]]):
    """A batch sampler of token-budget batches, reshuffled per epoch (see the module docstring)."""

    def __init__(self, lengths: Sequence[int], max_tokens: int, seed: int):
        self.lengths = [int(n) for n in lengths]
        self.max_tokens = max_tokens
        self.seed = seed
        self.epoch = 0
        self.sizes = cut(sorted(self.lengths, reverse=True), max_tokens)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        shuffled = torch.randperm(len(self.lengths), generator=g).tolist()
        # A stable sort of a random permutation: the same lengths in the same places every epoch (so the same
        # cuts), but rows of equal length land in different batches.
        order = sorted(shuffled, key=lambda i: -self.lengths[i])
        batches = split(order, self.sizes)
        # The longest batch first (memory peaks at once, as the length-grouped sampler does), the rest shuffled.
        rest = torch.randperm(len(batches) - 1, generator=g).tolist() if len(batches) > 1 else []
        yield batches[0]
        for i in rest:
            yield batches[i + 1]


def batches_per_process(lengths: Sequence[int], max_tokens: int, processes: int) -> int:
    """Batches each process runs in an epoch (accelerate deals the batches out in turn)."""
    return math.ceil(len(TokenBudgetSampler(lengths, max_tokens, seed=0)) / max(1, processes))


class TokenBudgetTrainer(Trainer):
    """A Trainer whose training batches hold up to ``max_tokens`` padded tokens (None: its own row batches)."""

    def __init__(self, *args, max_tokens: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_tokens = max_tokens

    def get_train_dataloader(self) -> DataLoader:
        if self.max_tokens is None:
            return super().get_train_dataloader()
        dataset = self._remove_unused_columns(self.train_dataset, description="Training")
        lengths = [len(ids) for ids in dataset["input_ids"]]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        sampler = TokenBudgetSampler(lengths, self.max_tokens, seed)
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        # accelerate deals the batches out to the processes in turn (DDP); each process then runs its own.
        return self.accelerator.prepare(loader)
