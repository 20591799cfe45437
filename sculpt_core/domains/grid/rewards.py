"""The grid rewards of the sculpting paper, a temperature, and user-supplied log-reward arrays.

Every function maps coordinates x in [-1, 1]^2 (float64 tensor ``[..., 2]``) to log R(x). The training
target of a base model is p(x) ∝ R(x)^(1/T) = exp(log R(x) / T).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sculpt_core.core.io import read_npy
from sculpt_core.core.metrics import log_normalize
from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError

LogReward = Callable[[torch.Tensor], torch.Tensor]


def corners(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    r = 0.5 * ((a[..., 0] > 0.5) & (a[..., 1] > 0.5)) + 2.0 * (
        (a[..., 0] > 0.6) & (a[..., 0] < 0.8) & (a[..., 1] > 0.6) & (a[..., 1] < 0.8)
    )
    return torch.log(r.double() + 1e-3)


def currin(x: torch.Tensor) -> torch.Tensor:
    x0, x1 = x[..., 0] / 2 + 0.5, x[..., 1] / 2 + 0.5
    factor = 1 - torch.exp(-1 / (2 * x1 + 1e-10))
    poly = (2300 * x0**3 + 1900 * x0**2 + 2092 * x0 + 60) / (100 * x0**3 + 500 * x0**2 + 4 * x0 + 20)
    return torch.log(factor * poly / 13.77 + 1e-8)


def branin(x: torch.Tensor) -> torch.Tensor:
    u, v = 15 * (x[..., 0] / 2 + 0.5) - 5, 15 * (x[..., 1] / 2 + 0.5)
    t1 = v - 5.1 / (4 * math.pi**2) * u**2 + 5 / math.pi * u - 6
    t2 = 10 * (1 - 1 / (8 * math.pi)) * torch.cos(u)
    return torch.log(1 - (t1**2 + t2 + 10) / 308.13 + 1e-8)


_SHUBERT_MIN, _SHUBERT_MAX = -186.6157949555621, 210.27662470796076


def _shubert_1d(t: torch.Tensor) -> torch.Tensor:
    return sum(i * torch.cos((i + 1) * t + i) for i in range(1, 6))


def _shubert_unit(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    w = 2.3
    a, b = -7.15 - w + x0 * w, -7.15 - w + x1 * w
    r = (_shubert_1d(a) * _shubert_1d(b) - _SHUBERT_MIN) / (_SHUBERT_MAX - _SHUBERT_MIN)
    return torch.log(r + 1e-3)


def shubert(x: torch.Tensor) -> torch.Tensor:
    return _shubert_unit(x[..., 0] / 2 + 0.5, x[..., 1] / 2 + 0.5)


def symmetric_shubert(x: torch.Tensor) -> torch.Tensor:
    return _shubert_unit(x[..., 0].abs() / 2 + 0.5, x[..., 1].abs() / 2 + 0.5)


def diag_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.sigmoid(5 * (x[..., 0] + x[..., 1])) + 1e-5)


def _circle(center: tuple[float, float], offsets: list[tuple[float, float]], sigma: float, a: float, b: float) -> LogReward:
    """Reward A·g(x)+B inside the disk |x-c| < 0.6 (g: mixture of isotropic Gaussians), 0.1 outside."""
    c = torch.tensor(center, dtype=torch.float64)
    mus = c + torch.tensor(offsets, dtype=torch.float64)

    def log_reward(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        sq = ((x.unsqueeze(-2) - mus.to(x.device)) ** 2).sum(-1)
        g = (torch.exp(-sq / (2 * sigma**2)) / (2 * math.pi * sigma**2)).mean(-1)
        inside = ((x - c.to(x.device)) ** 2).sum(-1).sqrt() < 0.6
        return torch.log(torch.where(inside, a * g + b, torch.full_like(g, 0.1)) + 1e-8)

    return log_reward


_H, _HM = 0.3, 0.32
_S3 = math.sqrt(3)
circle1 = _circle((-_H, 0.0), [(0.0, 0.0)], 0.30, 2.5, 6.5)
circle2 = _circle((_H / 2, _H * _S3 / 2), [(-_HM * _S3 / 2, _HM / 2), (_HM * _S3 / 2, -_HM / 2)], 0.21, 3.5, 10.5)
circle3 = _circle((_H / 2, -_H * _S3 / 2), [(-_HM, 0.0), (_HM / 2, _HM * _S3 / 2), (_HM / 2, -_HM * _S3 / 2)], 0.18, 2.5, 5.5)

GRID_REWARDS: dict[str, LogReward] = {
    "corners": corners,
    "currin": currin,
    "branin": branin,
    "shubert": shubert,
    "symmetric_shubert": symmetric_shubert,
    "diag_sigmoid": diag_sigmoid,
    "circle1": circle1,
    "circle2": circle2,
    "circle3": circle3,
}


def grid_log_reward(env: GridEnv, name: str) -> torch.Tensor:
    """log R of a named paper reward at every cell, shape ``(H,)*ndim`` (float64)."""
    if name not in GRID_REWARDS:
        raise SculptError(f"unknown grid reward {name!r}; choose one of: {', '.join(GRID_REWARDS)}")
    if env.ndim != 2:
        raise SculptError(f"the paper's grid rewards are 2-D; use a reward file for ndim={env.ndim}")
    return GRID_REWARDS[name](env.to_unit_cube(env.all_states())).reshape(env.shape)


def validate_log_reward(env: GridEnv, log_r: np.ndarray | torch.Tensor, source: str = "log-reward array") -> torch.Tensor:
    """Check shape and values of a user log-reward array; return it as float64 tensor ``(H,)*ndim``."""
    arr = np.asarray(log_r.cpu() if isinstance(log_r, torch.Tensor) else log_r)
    if arr.dtype.kind not in "fiu":
        raise SculptError(f"{source}: expected a numeric array, got dtype {arr.dtype}")
    if arr.shape != env.shape:
        raise SculptError(f"{source}: expected shape {env.shape} (one log-reward per cell p[z0, z1]), got {arr.shape}")
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise SculptError(f"{source}: contains NaN values; every cell needs a finite log-reward")
    if np.isposinf(arr).any():
        raise SculptError(f"{source}: contains +inf; log-rewards must be finite (use -inf only to forbid a cell)")
    if not np.isfinite(arr).any():
        raise SculptError(f"{source}: every cell is -inf, so no distribution is defined")
    return torch.from_numpy(arr)


def load_log_reward_file(env: GridEnv | None, path: str | Path) -> torch.Tensor:
    """Read a ``.npy`` array of log-rewards (never pickles) and validate it.

    With ``env=None`` the grid is inferred from the array: it must be square, ``(H,)*ndim`` with H ≥ 2.
    """
    path = Path(path)
    if not path.is_file():
        raise SculptError(f"reward file not found: {path}")
    arr = read_npy(path, f"reward file {path}")
    if env is None:
        if arr.ndim < 1 or len(set(arr.shape)) != 1 or arr.shape[0] < 2:
            raise SculptError(f"{path}: expected a square log-reward array such as (H, H), got shape {arr.shape}")
        env = GridEnv(int(arr.shape[0]), int(arr.ndim))
    return validate_log_reward(env, arr, source=str(path))


def target_log_distribution(log_r: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log of the normalised target p(x) ∝ R(x)^(1/T)."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise SculptError(f"temperature must be a positive finite number, got {temperature!r}")
    return log_normalize(log_r.double() / temperature, "the target R^(1/T)")
