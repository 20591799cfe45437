"""Small MLP building blocks."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, n_hidden: int, out_dim: int) -> nn.Sequential:
    """in → (hidden, LeakyReLU) × n_hidden → out."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(dim, hidden), nn.LeakyReLU()]
        dim = hidden
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


def thermometer(beta: torch.Tensor, n_bins: int = 32, low: float = 0.0, high: float = 96.0) -> torch.Tensor:
    """Thermometer encoding of a temperature/exponent : bin k is clamp(β - b_k, 0, gap)/gap."""
    bins = torch.linspace(low, high, n_bins, device=beta.device, dtype=torch.float32)
    gap = (high - low) / (n_bins - 1)
    return ((beta.float().unsqueeze(-1) - bins).clamp(0, gap) / gap)
