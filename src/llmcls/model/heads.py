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


def install_head(model: torch.nn.Module, head: str, dropout: float) -> torch.nn.Module:
    """Put the configured head (params `model.head`) on ``model``. The model's pooler still picks the last
    non-pad token, so the head sees that token's hidden state either way."""
    name = head_attribute(model)
    current = getattr(model, name)
    hidden, num_labels = current.in_features, current.out_features
    new = mlp_head(hidden, num_labels, dropout) if head == "mlp" else linear_head(hidden, num_labels)
    setattr(model, name, new.to(current.weight.device))
    return model
