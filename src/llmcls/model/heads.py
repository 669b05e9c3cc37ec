"""The classification heads llmcls puts on a base model: a linear layer with a bias, or an MLP."""

from __future__ import annotations

import torch

from llmcls.core.errors import LlmclsError
from llmcls.model.modeling_llmcls import head_layers


def head_attribute(model: torch.nn.Module) -> str:
    """The name of the classification head: `score` for decoder LLMs, `classifier` for encoders."""
    for name in ("score", "classifier"):
        if isinstance(getattr(model, name, None), torch.nn.Module):
            return name
    raise LlmclsError(f"{type(model).__name__}: no `score` or `classifier` head to replace")


def mlp_head(hidden: int, num_labels: int, dropout: float) -> torch.nn.Sequential:
    """hidden -> 512 -> 256 -> classes with ReLU and dropout, Xavier-initialised (the seed-001 head)."""
    head = head_layers("mlp", hidden, num_labels, dropout)
    for layer in head:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return head


def linear_head(hidden: int, num_labels: int) -> torch.nn.Linear:
    """hidden -> classes with a bias (the architectures' own score layers have none): a warm-started head
    needs the probe's intercept, and an imbalanced dataset its class priors."""
    head = head_layers("linear", hidden, num_labels, 0.0)
    torch.nn.init.normal_(head.weight, std=0.02)  # the score layers' own initialiser range
    torch.nn.init.zeros_(head.bias)
    return head


def fp32_output(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """A forward hook: the head's output computed again in fp32, outside autocast. Under bf16 autocast the
    logits keep 8 significant bits; read as multi-label probabilities against thresholds (a rare label's lie
    near 0.01-0.05) they tie in a few hundred values over thousands of rows, which no threshold can split."""
    weight = next(module.parameters())
    with torch.autocast(inputs[0].device.type, enabled=False):
        return module.forward(inputs[0].to(weight.dtype))


def install_head(model: torch.nn.Module, head: str, dropout: float, fp32: bool = False) -> torch.nn.Module:
    """Put the configured head (params `model.head`) on ``model``. The model's pooler still picks the last
    non-pad token, so the head sees that token's hidden state either way. ``fp32``: the head computes in fp32
    whatever the autocast precision (fp32_output; a hook, so the weights' names stay those of the head)."""
    name = head_attribute(model)
    current = getattr(model, name)
    hidden, num_labels = current.in_features, current.out_features
    new = mlp_head(hidden, num_labels, dropout) if head == "mlp" else linear_head(hidden, num_labels)
    if fp32:
        new.register_forward_hook(fp32_output)
    setattr(model, name, new.to(current.weight.device))
    return model
