"""Distributions and the distances between them (as used in every table and the app).

:func:`log_normalize` is the one way an unnormalised log-weight array becomes a distribution (in log space,
shifted by its maximum first, so huge constant log-rewards still normalise exactly); :func:`l1_distance`
refuses anything that is not a pair of distributions, so an L1 outside [0, 2] is never reported.
"""

from __future__ import annotations

import numpy as np
import torch

from sculpt_core.errors import SculptError

#: How far from 1 the total mass of a distribution handed to :func:`l1_distance` may be (float32 tables
#: normalise to ~1e-7; a histogram or a float64 DP to ~1e-12).
MASS_TOLERANCE = 1e-4


def log_normalize(log_w: torch.Tensor, what: str = "distribution") -> torch.Tensor:
    """log(w / Σ w) of unnormalised log-weights (any shape, float64). The maximum is subtracted before the
    log-sum-exp, so the result is exact however large the log-weights (a constant 1.8e19 gives the uniform
    distribution, where ``x − logsumexp(x)`` would round every entry to 0). SculptError when the normaliser is
    not finite: NaN, +inf, or no entry above −inf."""
    flat = log_w.double()
    top = flat.max() if flat.numel() else torch.tensor(float("-inf"), dtype=torch.float64)
    if not bool(torch.isfinite(top)):
        why = "is empty" if not flat.numel() else "has NaN or +inf entries" if not bool(top == float("-inf")) else \
            "is −inf everywhere (no mass anywhere)"
        raise SculptError(f"{what} cannot be normalised: its log-weight array {why}")
    shifted = flat - top
    return shifted - torch.logsumexp(shifted.flatten(), dim=0)


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64)


def l1_distance(p: np.ndarray | torch.Tensor, q: np.ndarray | torch.Tensor) -> float:
    """Sum |p - q| over all cells of two probability arrays of the same shape: a number in [0, 2].
    SculptError if either is not a distribution (NaN, negative, or total mass off 1 by more than
    :data:`MASS_TOLERANCE`), so a wrong L1 is never shown."""
    p_arr, q_arr = _as_numpy(p), _as_numpy(q)
    if p_arr.shape != q_arr.shape:
        raise SculptError(f"L1 distance between arrays of different shapes {p_arr.shape} and {q_arr.shape}")
    for name, arr in (("first", p_arr), ("second", q_arr)):
        total = float(arr.sum())
        if not np.isfinite(arr).all() or (arr < -1e-12).any() or abs(total - 1.0) > MASS_TOLERANCE:
            raise SculptError(f"L1 distance needs two probability distributions; the {name} one has total mass "
                              f"{total:.6g}" + ("" if np.isfinite(arr).all() else " and NaN or infinite entries"))
    return float(min(2.0, np.abs(p_arr - q_arr).sum()))
