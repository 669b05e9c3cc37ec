"""Batched class-probability prediction: longest-first batches, dynamic padding, inference mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from accelerate.utils import find_executable_batch_size
from torch.nn.utils.rnn import pad_sequence

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from llmcls.core.devices import autocast_dtype, process_state
from llmcls.core.progress import Progress, current_phase
from llmcls.model.batches import budget_batches


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch (not to max_length): on the right for classification and
    label scoring (the pooler reads the last non-pad token), on the left for batched generation."""
    rows = [torch.tensor(np.asarray(seq), dtype=torch.long) for seq in sequences]
    ids = pad_sequence(rows, batch_first=True, padding_value=pad_id, padding_side=side)
    mask = pad_sequence([torch.ones_like(row) for row in rows], batch_first=True, padding_value=0, padding_side=side)
    return {"input_ids": ids, "attention_mask": mask}


# Whether this process has run a model forward on CPU yet (see warm_up).
_WARM = {"cpu": False}


def warm_up(fn: Callable[[dict[str, torch.Tensor]], Any], sequences: Sequence[Sequence[int]], pad_id: int) -> None:
    """One throwaway forward of two short rows, the first time a process runs a model on CPU.

    Even with MKL's reproducible mode pinned, the first forward of a process now and then came out with other
    bits than the same batch in the next process: always the first batch, never a later one (docs/results.md
    has the runs). What differs is state the CPU kernels set up lazily on their first parallel call (PyTorch's
    attention calls MKL and oneDNN from inside its thread pool); a first forward whose result is thrown away
    takes that effect, so every kept batch runs on warm kernels.
    It costs one tiny batch per process, and leaves the random state as it was (a model in training mode, as in
    head_init, would draw dropout masks)."""
    if _WARM["cpu"] or not sequences:
        return
    _WARM["cpu"] = True
    shortest = list(min(sequences, key=len))[:8]
    with torch.random.fork_rng(devices=[]):
        fn(pad_batch([shortest, shortest], pad_id))


def map_batches(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    fn: Callable[[dict[str, torch.Tensor]], np.ndarray],
    precision: str = "fp32",
    device: torch.device | None = None,
    progress: Callable[[int], Any] | None = None,
    max_tokens: int | None = None,
) -> np.ndarray:
    """``fn`` over padded batches of ``sequences`` (on the model's device, in inference mode), one output row
    per sequence, in input order. Sorting by length (longest first, so memory peaks at once) keeps padding
    near zero; the order is restored before returning.

    A batch holds ``batch_size`` rows, or with ``max_tokens`` as many rows as fit in that many padded tokens
    (short rows in big batches, long rows in small ones). That is where it starts: when a batch runs out of
    memory, accelerate shrinks it (x0.9) and starts over, so the largest batch that fits is used.
    ``progress(n)`` is told of every n rows done; without it, progress is shown under the running phase's name
    (core/progress.py).
    """
    device = device or next(model.parameters()).device
    lengths = [len(s) for s in sequences]
    order = sorted(range(len(sequences)), key=lambda i: -lengths[i])
    dtype = autocast_dtype(precision)

    @find_executable_batch_size(starting_batch_size=max_tokens or batch_size)
    def run(size: int) -> list[np.ndarray]:
        batches = (
            budget_batches(lengths, size, order)
            if max_tokens
            else [order[start : start + size] for start in range(0, len(order), size)]
        )
        out: list[np.ndarray] = []
        shown = Progress(current_phase() or "inference", len(order)) if progress is None else None
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
            if device.type == "cpu":
                warm_up(fn, sequences, pad_id)
            for rows in batches:
                batch = pad_batch([sequences[i] for i in rows], pad_id)
                out.append(fn({k: v.to(device) for k, v in batch.items()}))
                (progress or shown.update)(len(out[-1]))
        if shown is not None:
            shown.close()
        return out

    out = run() if order else []
    rows = np.concatenate(out) if out else np.zeros((0, 0))
    restored = np.empty_like(rows)
    restored[order] = rows
    return restored


def head_transform(logits: torch.Tensor, task: str, scale: dict[str, float] | None) -> torch.Tensor:
    """What a task reads from the head's logits (see head_probabilities)."""
    if task == MULTI_LABEL:
        return torch.sigmoid(logits)
    if task == REGRESSION:
        return logits[:, :1] * scale["std"] + scale["mean"] if scale else logits[:, :1]
    return torch.softmax(logits, dim=-1)


def head_probabilities(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    precision: str = "fp32",
    device: torch.device | None = None,
    progress: Callable[[int], Any] | None = None,
    max_tokens: int | None = None,
    *,
    task: str = SINGLE_LABEL,
    scale: dict[str, float] | None = None,
) -> np.ndarray:
    """The head's outputs in input order (see map_batches for batching): class probabilities (softmax), label
    probabilities (sigmoid, multi-label) or scores (regression: one column, put back on the training scores'
    ``scale``, their mean and std, where the head learned standardised ones)."""

    def probabilities(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return head_transform(model(**batch).logits.float(), task, scale).cpu().numpy()

    return map_batches(model, sequences, pad_id, batch_size, probabilities, precision, device, progress, max_tokens)


def head_probabilities_parallel(
    model,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    precision: str,
    max_tokens: int | None = None,
    *,
    task: str = SINGLE_LABEL,
    scale: dict[str, float] | None = None,
):
    """head_probabilities with the rows shared between the processes of `accelerate launch` (one process: all
    rows here); every process gets all outputs back, in input order."""
    from accelerate.utils import gather_object

    state = process_state()
    how = {"max_tokens": max_tokens, "task": task, "scale": scale}
    if state.num_processes == 1:
        return head_probabilities(model, sequences, pad_id, batch_size, precision, **how)
    with state.split_between_processes(list(range(len(sequences)))) as mine:
        probs = head_probabilities(model, [sequences[i] for i in mine], pad_id, batch_size, precision, **how)
        parts = gather_object([(list(mine), probs)])
    rows = {i: p for indices, part in parts for i, p in zip(indices, part, strict=True)}
    return np.stack([rows[i] for i in range(len(sequences))])
