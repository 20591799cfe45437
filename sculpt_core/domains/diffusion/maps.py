"""Diffusion distribution maps: earth mover's distances between 2-D sample sets.

* A sample set is an ``(N, 2)`` array of points (``diffusion sample --out`` writes them); the ground cost is the
  Euclidean distance, the weights uniform, the solver exact (``ot.emd2``; Sinkhorn as an option). So the value is
  the empirical Wasserstein-1 distance between the two sets.
* :func:`map_samples` draws the sets of a map: a base (exact samples of its Gaussian mixture), or a label
  composition (α for two bases) by exact sampling of the composed target (``exact``) or by one of the reverse-SDE
  methods of :func:`~sculpt_core.domains.diffusion.sampling.sample_method` (oracle, score-sum, superdiff).
* ``python -m sculpt_core diffusion emd --in a.npy,b.npy[,…] --out d.npy`` (:func:`add_emd_command`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Sequence

import numpy as np

from sculpt_core.core.maps import MapItem, Progress, emd_command, pairwise_matrix, transport
from sculpt_core.errors import SculptError

#: Cost matrices above this many entries (6000 × 6000, ≈ 290 MB float64) are refused: subsample first.
MAX_ENTRIES = 36_000_000


def check_points(x: Any, what: str = "sample set") -> np.ndarray:
    """An ``(N, 2)`` float64 array of finite points, N ≥ 1; SculptError otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise SculptError(f"{what}: expected an (N, 2) array of points, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SculptError(f"{what}: points must be finite")
    return arr


def load_sample_set(path: str) -> np.ndarray:
    """Points from ``.npy`` / ``.csv`` (as ``diffusion sample --out`` writes), checked."""
    from sculpt_core.core.io import load_array

    return check_points(load_array(path), str(path))


def point_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[len(x), len(y)]`` (not squared: the EMD is W1)."""
    if len(x) * len(y) > MAX_ENTRIES:
        raise SculptError(f"EMD between {len(x)} and {len(y)} points needs a {len(x)}×{len(y)} cost matrix; the "
                          f"limit is {MAX_ENTRIES} entries. Subsample the sets.")
    diff = x[:, None, :] - y[None, :, :]
    return np.sqrt((diff ** 2).sum(-1))


def emd_matrix(sets: Sequence[np.ndarray], solver: str = "exact", reg: float = 0.01,
               progress: Progress | None = None, workers: int | None = None) -> np.ndarray:
    """Symmetric ``(k, k)`` EMD matrix between 2-D sample sets (``workers``: see ``core.maps.pairwise_matrix``)."""
    pts = [check_points(s, f"sample set {i + 1}") for i, s in enumerate(sets)]
    return pairwise_matrix(len(pts), lambda i, j: transport(point_cost(pts[i], pts[j]), solver=solver, reg=reg),
                           progress, workers)


MAP_METHODS = ("exact", "oracle", "score-sum", "superdiff")


def map_samples(names: Sequence[str], items: Sequence[MapItem], n: int = 1000, seed: int = 0, steps: int = 200,
                progress: Progress | None = None) -> list[np.ndarray]:
    """``n`` points of every item over the bases ``names`` (built-in spec names, zoo models, spec files). Item
    ``i`` is drawn with seed ``seed + i``; a composition's ``method`` is one of :data:`MAP_METHODS`."""
    import torch

    from sculpt_core.domains.diffusion.exact import ExactComposition
    from sculpt_core.domains.diffusion.zoo import resolve_base

    if n < 1:
        raise SculptError(f"the number of points must be positive, got {n}")
    specs = [resolve_base(name).spec for name in names]
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    for i, item in enumerate(items):
        gen = torch.Generator().manual_seed(int(seed) + i)
        if item.base is not None:
            x = specs[item.base].sample(n, gen)
        elif item.method == "exact":
            x = ExactComposition(specs, item.composition(len(specs)), "cpu").sample(n, gen)
        elif item.method in MAP_METHODS:
            from sculpt_core.domains.diffusion.sampling import sample_method

            x, _ = sample_method(specs, item.composition(len(specs)), item.method, n, steps, seed=int(seed) + i,
                                 device="cpu")
        else:
            raise SculptError(f"unknown diffusion map method {item.method!r}; one of {', '.join(MAP_METHODS)}")
        out.append(check_points(x.detach().cpu().numpy(), item.label))
        if progress is not None:
            spent = time.perf_counter() - t0
            progress(i + 1, len(items), spent / (i + 1) * (len(items) - i - 1))
    return out


def cmd_diffusion_emd(args: argparse.Namespace) -> dict[str, Any]:
    """``diffusion emd --in a.npy,b.npy[,…] --out d.npy``."""
    from sculpt_core.core.cli import parse_list

    return emd_command(parse_list(args.infiles, str, "--in"), load_sample_set, emd_matrix, args.out, args.solver,
                       args.reg, "--in", "a.npy,b.npy")


def add_emd_command(commands: argparse._SubParsersAction) -> None:
    """Add ``diffusion emd`` (called from the diffusion cli's ``register``)."""
    p = commands.add_parser("emd", help="pairwise earth mover's distances between 2-D sample sets")
    p.add_argument("--in", dest="infiles", required=True, help="comma-separated .npy/.csv (N, 2) point sets")
    p.add_argument("--out", required=True, help="output .npy (or .csv): the (k, k) float64 distance matrix")
    p.add_argument("--solver", choices=["exact", "sinkhorn"], default="exact")
    p.add_argument("--reg", type=float, default=0.01, help="Sinkhorn ε relative to the mean ground cost")
    p.set_defaults(func=cmd_diffusion_emd)


__all__ = ["MAP_METHODS", "add_emd_command", "check_points", "cmd_diffusion_emd", "emd_matrix", "load_sample_set",
           "map_samples", "point_cost"]
