"""2-D Gaussian-mixture specifications: the data distributions of the diffusion domain.

A spec is JSON ``{"weights": [...], "means": [[x, y], ...], "stds": [...]}`` (isotropic components) or with
``"covs": [[[a, b], [b, c]], ...]`` (full 2×2 covariances) instead of ``"stds"``. Weights are normalised on
load. The bounds below keep every spec inside the range the exact quadrature of ``exact.py`` resolves
(component scales 0.05..5, means within ±10, at most 64 components).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sculpt_core.errors import SculptError

MIN_STD = 0.05
MAX_STD = 5.0
MAX_ABS_MEAN = 10.0
MAX_COMPONENTS = 64


@dataclass(frozen=True)
class GaussianMixture:
    """A normalised 2-D Gaussian mixture (float64 tensors on the CPU; ``to(device)`` moves a copy)."""

    name: str
    weights: torch.Tensor  # [K], sums to 1
    means: torch.Tensor  # [K, 2]
    covs: torch.Tensor  # [K, 2, 2], symmetric positive definite

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[0])

    def to(self, device: torch.device | str) -> "GaussianMixture":
        return GaussianMixture(self.name, self.weights.to(device), self.means.to(device), self.covs.to(device))

    def std_range(self) -> tuple[float, float]:
        """Smallest and largest standard deviation along any principal axis of any component."""
        eig = torch.linalg.eigvalsh(self.covs.cpu())
        return float(eig.min().sqrt()), float(eig.max().sqrt())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``[n, 2]`` (component by the weights, then a Gaussian through its Cholesky factor)."""
        device = self.weights.device
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, 2, dtype=torch.float64, device=device, generator=generator)
        chol = torch.linalg.cholesky(self.covs)
        return self.means[k] + torch.einsum("nij,nj->ni", chol[k], z)

    def to_json(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(), "covs": self.covs.tolist()}


def _floats(value: Any, what: str) -> torch.Tensor:
    try:
        t = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise SculptError(f"{what} must be an array of numbers") from None
    if not bool(torch.isfinite(t).all()):
        raise SculptError(f"{what} must be finite numbers (no NaN or infinity)")
    return t


def spec_from_dict(data: Any, name: str = "spec") -> GaussianMixture:
    """Validate a spec dictionary and build the normalised mixture; SculptError naming the problem otherwise."""
    where = f"diffusion spec {name!r}"
    if not isinstance(data, dict):
        raise SculptError(f"{where} must be a JSON object with weights, means and stds or covs")
    missing = [k for k in ("weights", "means") if k not in data]
    if missing:
        raise SculptError(f"{where} lacks {', '.join(missing)}")
    if ("stds" in data) == ("covs" in data):
        raise SculptError(f"{where} needs exactly one of 'stds' (isotropic) or 'covs' (full 2×2)")
    unknown = sorted(set(data) - {"weights", "means", "stds", "covs", "name"})
    if unknown:
        raise SculptError(f"{where} has unknown field(s) {unknown}")
    weights = _floats(data["weights"], f"{where}: weights")
    means = _floats(data["means"], f"{where}: means")
    if weights.dim() != 1 or weights.numel() == 0:
        raise SculptError(f"{where}: weights must be a non-empty list of numbers")
    k = weights.numel()
    if k > MAX_COMPONENTS:
        raise SculptError(f"{where}: at most {MAX_COMPONENTS} components, got {k}")
    if means.shape != (k, 2):
        raise SculptError(f"{where}: means must be one point [x, y] per weight ({k} × 2), got shape {list(means.shape)}")
    if bool((weights < 0).any()):
        raise SculptError(f"{where}: weights must be non-negative, got {weights.tolist()}")
    if not float(weights.sum()) > 0:
        raise SculptError(f"{where}: weights must have a positive sum")
    if "stds" in data:
        stds = _floats(data["stds"], f"{where}: stds")
        if stds.shape != (k,):
            raise SculptError(f"{where}: stds must be {k} numbers (one per weight), got shape {list(stds.shape)}")
        if bool((stds <= 0).any()):
            raise SculptError(f"{where}: stds must be positive, got {stds.tolist()}")
        covs = torch.diag_embed(torch.stack([stds ** 2, stds ** 2], 1))
    else:
        covs = _floats(data["covs"], f"{where}: covs")
        if covs.shape != (k, 2, 2):
            raise SculptError(f"{where}: covs must be {k} 2×2 matrices, got shape {list(covs.shape)}")
        if not torch.allclose(covs, covs.transpose(1, 2), rtol=1e-9, atol=1e-12):
            raise SculptError(f"{where}: every covariance must be symmetric")
        covs = 0.5 * (covs + covs.transpose(1, 2))
        det = covs[:, 0, 0] * covs[:, 1, 1] - covs[:, 0, 1] ** 2
        bad = ((covs[:, 0, 0] <= 0) | (det <= 0)).nonzero().flatten().tolist()
        if bad:
            raise SculptError(f"{where}: covariance of component(s) {bad} is not positive definite")
    if float(means.abs().max()) > MAX_ABS_MEAN:
        raise SculptError(f"{where}: means must lie within ±{MAX_ABS_MEAN:g}")
    eig = torch.linalg.eigvalsh(covs).sqrt()
    if float(eig.min()) < MIN_STD or float(eig.max()) > MAX_STD:
        raise SculptError(f"{where}: component standard deviations must lie in [{MIN_STD:g}, {MAX_STD:g}] along "
                          f"every axis, got {float(eig.min()):.4g}..{float(eig.max()):.4g}")
    keep = weights > 0
    weights = weights[keep] / weights[keep].sum()
    return GaussianMixture(name, weights, means[keep], covs[keep])


def _circle(n: int, radius: float, std: float) -> dict:
    angles = [2 * math.pi * k / n for k in range(n)]
    return {"weights": [1.0] * n, "means": [[radius * math.cos(a), radius * math.sin(a)] for a in angles],
            "stds": [std] * n}


#: Built-in specs: the data the zoo's learned models are trained on.
BUILTIN_SPECS: dict[str, dict] = {
    "ring": _circle(8, 2.0, 0.3),  # 8 Gaussians on the circle of radius 2
    "band": {"weights": [1.0] * 3, "means": [[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0]], "stds": [0.5] * 3},  # horizontal
    "column": {"weights": [1.0] * 3, "means": [[0.0, -2.0], [0.0, 0.0], [0.0, 2.0]], "stds": [0.5] * 3},  # vertical
}


def load_spec(name_or_path: str) -> GaussianMixture:
    """A built-in spec by name, or a JSON spec file by path."""
    if name_or_path in BUILTIN_SPECS:
        return spec_from_dict(BUILTIN_SPECS[name_or_path], name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise SculptError(f"unknown diffusion base {name_or_path!r}: neither a built-in spec "
                          f"({', '.join(BUILTIN_SPECS)}) nor a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SculptError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise SculptError(f"cannot read {path}: {exc.strerror or exc}") from None
    return spec_from_dict(data, path.stem)
