"""head_probabilities: batching by length must not change results or their order; out-of-memory shrinks the batch."""

import numpy as np
import torch

from llmcls.model import inference
from llmcls.model.inference import head_probabilities, map_batches


class LastTokenModel(torch.nn.Module):
    """Logits from the last real token's id, so every row's answer is known; can refuse large batches."""

    def __init__(self, max_batch: int | None = None):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []

    def forward(self, input_ids, attention_mask):
        self.batch_sizes.append(len(input_ids))
        if self.max_batch and len(input_ids) > self.max_batch:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        last = input_ids.gather(1, (attention_mask.sum(1, keepdim=True) - 1)).float()
        logits = torch.cat([last, -last], dim=1) * self.scale / 10
        return type("Output", (), {"logits": logits})()


SEQUENCES = [[5, 1], [1, 2, 3, 9], [7], [4, 4, 4, 4, 4, 2], [3, 8, 1]]


def expected(sequences):
    last = np.array([s[-1] for s in sequences], dtype=np.float64) / 10
    return torch.softmax(torch.tensor(np.stack([last, -last], 1)), 1).numpy()


def test_results_come_back_in_input_order_whatever_the_batch():
    for batch_size in (1, 2, 64):
        probs = head_probabilities(LastTokenModel(), SEQUENCES, pad_id=0, batch_size=batch_size)
        np.testing.assert_allclose(probs, expected(SEQUENCES), rtol=1e-5)


def test_batches_are_longest_first_and_padded_to_their_longest():
    model = LastTokenModel()
    seen = []
    original = model.forward

    def spy(input_ids, attention_mask):
        seen.append(input_ids.shape[1])
        return original(input_ids, attention_mask)

    model.forward = spy
    head_probabilities(model, SEQUENCES, pad_id=0, batch_size=2)
    assert seen == [6, 3, 1]  # lengths 6,4 | 3,2 | 1: no batch padded beyond its longest row


def test_out_of_memory_shrinks_the_batch_until_it_fits():
    model = LastTokenModel(max_batch=3)
    probs = head_probabilities(model, SEQUENCES, pad_id=0, batch_size=5)
    np.testing.assert_allclose(probs, expected(SEQUENCES), rtol=1e-5)
    assert model.batch_sizes == [5, 4, 3, 2]  # 5 and 4 refused (x0.9 each time), then 3 + the last 2


def test_the_first_forward_of_a_process_is_a_throwaway_that_leaves_the_random_state_alone():
    """A fresh process (the flag reset) runs one forward of two short rows before the kept batches, only once,
    and without moving the random state: a model drawing random numbers (dropout) draws what it would have."""
    inference._WARM["cpu"] = False
    shapes, draws = [], []

    def fn(batch):
        shapes.append(tuple(batch["input_ids"].shape))
        draws.append(torch.rand(1).item())
        return batch["input_ids"][:, :1].float().numpy()

    model = torch.nn.Linear(1, 1)  # (built before seeding: its initialisation draws too)
    torch.manual_seed(0)
    map_batches(model, SEQUENCES, 0, 2, fn)
    assert shapes == [(2, 1), (2, 6), (2, 3), (1, 1)]  # the warm-up: the shortest row twice, then lengths 6,4|3,2|1
    torch.manual_seed(0)
    assert draws[1:] == [torch.rand(1).item() for _ in range(3)]  # the kept batches drew the seed's own numbers
    map_batches(model, SEQUENCES, 0, 2, fn)
    assert len(shapes) == 4 + 3  # once per process
