"""Token-budget batches (params `train.max_tokens`, `evaluate.max_tokens`): as many length-sorted rows as fit
in N padded tokens, so short rows travel in big batches and long ones in small batches at the same cost.

Train: the cut points depend only on the sorted lengths, so every epoch has the same number of batches (the
learning-rate schedule counts optimizer steps from it); which rows of equal length share a batch, and the
order of the batches, are reshuffled each epoch from the seed. The loss stays a per-row mean over the whole
optimizer step (all processes, all accumulated batches): the Trainer counts the rows of each step
(`num_items_in_batch`) and the loss divides by that count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer


def cut(lengths: Sequence[int], max_tokens: int) -> list[int]:
    """Row counts of consecutive batches over ``lengths`` sorted longest first: each batch takes rows while
    rows x its longest row (the first) stays within ``max_tokens``; a row longer than the budget goes alone."""
    sizes, start = [], 0
    while start < len(lengths):
        rows = max(1, min(len(lengths) - start, max_tokens // max(1, lengths[start])))
        sizes.append(rows)
        start += rows
    return sizes


def budget_batches(lengths: Sequence[int], max_tokens: int, order: Sequence[int] | None = None) -> list[list[int]]:
    """Index batches of at most ``max_tokens`` padded tokens. ``order`` (default: longest first, stable) is a
    longest-first ordering of the indices; the batches follow it."""
    if order is None:
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return split(order, cut([lengths[i] for i in order], max_tokens))


def split(order: Sequence[int], sizes: Sequence[int]) -> list[list[int]]:
    """``order`` cut into consecutive batches of ``sizes`` rows."""
    bounds = [0, *itertools.accumulate(sizes)]
    return [list(order[a:b]) for a, b in itertools.pairwise(bounds)]


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
