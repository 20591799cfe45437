"""Distances between distributions (as used in every table and the app)."""

from __future__ import annotations

import numpy as np
import torch


def l1_distance(p: np.ndarray | torch.Tensor, q: np.ndarray | torch.Tensor) -> float:
    """Sum |p - q| over all cells (both are probability arrays of the same shape)."""
    p_arr = p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p)
    q_arr = q.detach().cpu().numpy() if isinstance(q, torch.Tensor) else np.asarray(q)
    return float(np.abs(p_arr.astype(np.float64) - q_arr.astype(np.float64)).sum())

