"""Small shared builders for tests: random (untrained) grid models are valid policies with arbitrary
distributions, which is all the exactness theorems need."""

from __future__ import annotations

import torch

from sculpt_core.models.grid_model import GridBaseModel
from sculpt_core.models.grid_policy import GridPolicyConfig, GridPolicyNet


def random_model(height: int = 8, seed: int = 0, scale: float = 3.0, name: str | None = None,
                 log_reward: torch.Tensor | None = None) -> GridBaseModel:
    """An untrained grid policy with sharpened random logits (distinct, uneven distributions)."""
    torch.manual_seed(seed)
    net = GridPolicyNet(GridPolicyConfig(height=height, ndim=2, hidden=32, n_hidden=1))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    net.eval()
    return GridBaseModel(net, {"reward": "random", "temperature": 1.0, "has_flow": True}, log_reward, name or f"rand{seed}")
