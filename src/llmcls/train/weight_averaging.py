"""Tail weight averaging (params `train.average_last`): the kept model is the mean of the trainable weights
after every optimizer step of the last part of training (stochastic weight averaging over the tail of the
learning-rate schedule), instead of the weights of the last step alone.

Runs of different seeds disagree on a few percent of rows, and the mean of their predictions beats each of
them (docs/results.md, zh-reviews); averaging along one run's own trajectory is the cheapest share of that:
one run, no extra forward pass.

While the average is running, every validation and every checkpoint sees the averaged weights, so the best
checkpoint, early stopping and the DVCLive curves all describe the model that would be kept. A checkpoint also
holds the live (unaveraged) weights and the step count, so a resumed run continues both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from transformers import TrainerCallback

LIVE_WEIGHTS = "llmcls_live_weights.safetensors"  # inside a checkpoint folder: the weights training continues from
AVERAGE_STATE = "llmcls_average.json"


def first_averaged_step(fraction: float, max_steps: int) -> int:
    """The first optimizer step whose weights join the average of the last ``fraction`` of ``max_steps``
    (at least the last step)."""
    return max_steps - max(1, math.floor(fraction * max_steps)) + 1


class TailAverage(TrainerCallback):
    """Keep the running mean of ``model``'s trainable parameters from ``first_averaged_step`` on, and swap it
    into the model for each evaluation and checkpoint (the Trainer evaluates, then saves, after on_step_end)."""

    def __init__(self, model: torch.nn.Module, fraction: float):
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.fraction = fraction
        self.mean: dict[str, torch.Tensor] = {}
        self.count = 0
        self.start = 1
        self.live: dict[str, torch.Tensor] | None = None  # the live weights while the mean is swapped in
        self.swap_back_on = ""

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = first_averaged_step(self.fraction, state.max_steps)
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.global_step and (checkpoint / AVERAGE_STATE).is_file():
            # Resumed: the checkpoint's model weights are the average; its live weights are the side file.
            from safetensors.torch import load_file

            self.count = json.loads((checkpoint / AVERAGE_STATE).read_text())["count"]
            live = load_file(checkpoint / LIVE_WEIGHTS)
            with torch.no_grad():
                for name, p in self.params.items():
                    self.mean[name] = p.detach().clone().float()
                    p.copy_(live[name].to(p.device, p.dtype))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.start:
            self.count += 1
            with torch.no_grad():
                for name, p in self.params.items():
                    if name not in self.mean:
                        self.mean[name] = p.detach().clone().float()
                    else:
                        self.mean[name].add_(p.detach().float() - self.mean[name], alpha=1 / self.count)
        if self.count and (control.should_evaluate or control.should_save):
            self._swap_in()
            # Evaluation comes first; when a checkpoint follows, it must hold the average too.
            self.swap_back_on = "save" if control.should_save else "evaluate"

    def on_evaluate(self, args, state, control, **kwargs):
        if self.swap_back_on == "evaluate":
            self._swap_out()

    def on_save(self, args, state, control, **kwargs):
        if self.swap_back_on != "save":
            return
        if state.is_world_process_zero:
            from safetensors.torch import save_file

            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_file({name: t.contiguous() for name, t in self.live.items()}, checkpoint / LIVE_WEIGHTS)
            (checkpoint / AVERAGE_STATE).write_text(json.dumps({"count": self.count, "first_step": self.start}))
        self._swap_out()

    def record(self) -> dict[str, int | float]:
        """What the model folder's llmcls.json says of the average."""
        return {"fraction": self.fraction, "first_step": self.start, "steps_averaged": self.count}

    def _swap_in(self) -> None:
        with torch.no_grad():
            self.live = {name: p.detach().clone() for name, p in self.params.items()}
            for name, p in self.params.items():
                p.copy_(self.mean[name].to(p.dtype))

    def _swap_out(self) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.live[name])
        self.live, self.swap_back_on = None, ""
