"""Token-budget batches (params `train.max_tokens`, `evaluate.max_tokens`): as many length-sorted rows as fit
in N padded tokens, so short rows travel in big batches and long ones in small batches at the same cost.
Training's sampler over these cuts is train/sampler.py."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


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
