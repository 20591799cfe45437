"""Distributions and the distances between them (as used in every table and the app).

:func:`log_normalize` is the one way an unnormalised log-weight array becomes a distribution (in log space,
shifted by its maximum first, so huge constant log-rewards still normalise exactly); :func:`l1_distance`
refuses anything that is not a pair of distributions, so an L1 outside [0, 2] is never reported.
:func:`paired_relative_change` and :func:`plateau_verdict` decide whether a training run's loss, scored on one
fixed evaluation set at each checkpoint, still falls.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def paired_relative_change(before: np.ndarray | torch.Tensor, after: np.ndarray | torch.Tensor,
                           n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Relative change of a mean over paired samples, (mean(after) − mean(before)) / mean(before), with a
    percentile bootstrap interval that resamples the PAIRS (item k scored before and after): (point, low, high).
    Used to decide whether a loss on a fixed evaluation set still falls between two checkpoints; pairing
    removes the spread between items, which dominates an unpaired comparison. SculptError unless both are
    1-D, equally long, finite, with a positive ``before`` mean."""
    b, a = _as_numpy(before), _as_numpy(after)
    if b.ndim != 1 or b.shape != a.shape or b.size < 2:
        raise SculptError(f"a paired comparison needs two 1-D arrays of equal length ≥ 2, got {b.shape} and "
                          f"{a.shape}")
    if not (np.isfinite(b).all() and np.isfinite(a).all()) or b.mean() <= 0:
        raise SculptError("a paired relative change needs finite values and a positive mean before")
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise SculptError(f"n_boot must be ≥ 1 and level in (0, 1), got {n_boot} and {level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, b.size, size=(n_boot, b.size))
    boot = a[idx].mean(axis=1) / np.maximum(b[idx].mean(axis=1), np.finfo(np.float64).tiny) - 1.0
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return float(a.mean() / b.mean() - 1.0), float(low), float(high)


def plateau_verdict(steps: Sequence[int], losses: Sequence[np.ndarray | torch.Tensor], window: int,
                    tolerance: float = 0.05) -> dict:
    """Whether a run's loss on a FIXED evaluation set has stopped falling: the last checkpoint against the
    latest one at least ``window`` steps before it (``losses[k]``: the per-item losses of checkpoint k, the same
    items in the same order for every k; ``steps`` increasing). ``plateau`` is true when, with 95% confidence,
    the loss fell by less than ``tolerance`` (relative) over that span: the most favourable end of the paired
    interval, −low, is below it. None (with ``why``) when no checkpoint is ``window`` steps older."""
    if len(steps) != len(losses) or not steps:
        raise SculptError(f"plateau test: {len(steps)} step counts for {len(losses)} loss arrays")
    if any(b <= a for a, b in zip(steps[:-1], steps[1:])):
        raise SculptError(f"plateau test: step counts must increase, got {list(steps)}")
    if window < 1 or not 0.0 < tolerance < 1.0:
        raise SculptError(f"plateau test: window must be ≥ 1 and tolerance in (0, 1), got {window} and {tolerance}")
    last = len(steps) - 1
    earlier = [k for k in range(last) if steps[last] - steps[k] >= window]
    if not earlier:
        return {"plateau": None, "why": f"no checkpoint at least {window} steps before the last ({steps[last]})"}
    k = earlier[-1]
    point, low, high = paired_relative_change(losses[k], losses[last])
    return {"from_steps": int(steps[k]), "to_steps": int(steps[last]), "relative_change": round(point, 4),
            "ci95": [round(low, 4), round(high, 4)], "tolerance": tolerance, "plateau": bool(-low < tolerance)}
