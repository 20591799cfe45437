"""Sample-quality figures against the exact composed target, each with its noise floor.

- binned L1 on [−L, L]² with B×B bins between the histogram of the samples inside the square (normalised by
  their number) and the exact per-bin target (normalised over the square), with the **noise floor**: the
  mean L1 of n exact draws from that same binned target (Monte Carlo, ``repeats`` repeats) — an L1 at the
  floor is as good as n exact samples can show;
- the fraction of samples outside the square (with the target's own mass outside, for comparison);
- EMD (exact optimal transport, POT ``ot.emd2``, Euclidean ground cost, uniform weights) between the samples
  and an equal-size exact sample of the target (drawn by ``ExactComposition.sample``), on at most
  ``emd_points`` points of each (random subsets: exact OT is cubic in the size), averaged over
  ``emd_repeats`` fresh reference samples, with its own floor: the mean EMD between two independent exact
  samples of that size (EMD between finite samples fluctuates strongly when the target has separated modes,
  so only the pair (emd, emd_floor) is meaningful).
"""

from __future__ import annotations

import numpy as np
import torch

from sculpt_core.errors import SculptError


def histogram(samples: np.ndarray, extent: float, bins: int) -> tuple[np.ndarray, int]:
    """Counts ``[B, B]`` (index [ix, iy], ix bins the first coordinate) of the samples inside [−L, L]², and that number."""
    samples = np.asarray(samples, dtype=np.float64)
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=bins, range=[[-extent, extent], [-extent, extent]])
    return counts, int(counts.sum())


def binned_l1(samples: np.ndarray, q: np.ndarray, extent: float) -> tuple[float, float]:
    """(L1 between the inside-normalised histogram and ``q``, fraction of samples outside the square)."""
    counts, inside = histogram(samples, extent, q.shape[0])
    frac_out = 1.0 - inside / max(1, len(samples))
    if inside == 0:
        return 2.0, frac_out
    return float(np.abs(counts / inside - q).sum()), frac_out


def noise_floor(q: np.ndarray, n: int, repeats: int = 5, seed: int = 0) -> float:
    """Mean L1 between the histogram of ``n`` exact draws from the binned target ``q`` and ``q``."""
    rng = np.random.default_rng(seed)
    p = q.reshape(-1) / q.sum()
    return float(np.mean([np.abs(rng.multinomial(n, p) / n - p).sum() for _ in range(repeats)]))


def emd(a: np.ndarray, b: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """Exact EMD (Euclidean cost, uniform weights) between random subsets of at most ``max_points`` of each."""
    import ot

    rng = np.random.default_rng(seed)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) > max_points:
        a = a[rng.choice(len(a), max_points, replace=False)]
    if len(b) > max_points:
        b = b[rng.choice(len(b), max_points, replace=False)]
    cost = ot.dist(a, b, metric="euclidean")
    return float(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10_000_000))


def evaluate(samples: torch.Tensor | np.ndarray, exact, extent: float = 3.5, bins: int = 40, repeats: int = 5,
             emd_points: int = 2000, emd_repeats: int = 3, seed: int = 0) -> dict:
    """Every figure of the module docstring for ``samples`` ``[n, 2]`` against ``exact`` (an ExactComposition)."""
    x = np.asarray(samples.cpu() if isinstance(samples, torch.Tensor) else samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise SculptError(f"samples must be an (n, 2) array, got shape {list(x.shape)}")
    q, info = exact.bin_masses(extent, bins)
    l1, frac_out = binned_l1(x, q, extent)
    n = len(x)
    gen = torch.Generator(device=exact.device).manual_seed(seed + 1)
    m = min(n, emd_points)
    emds, floors = [], []
    for r in range(emd_repeats):
        ref = exact.sample(2 * m, gen).cpu().numpy()
        emds.append(emd(x, ref[:m], emd_points, seed + r))
        floors.append(emd(ref[m:], ref[:m], emd_points, seed + r))
    return {
        "n": n, "extent": extent, "bins": bins,
        "l1": round(l1, 5), "l1_floor": round(noise_floor(q, n, repeats, seed), 5),
        "frac_outside": round(frac_out, 5), "target_outside": round(1.0 - info["mass_in_square"], 5),
        "emd": round(float(np.mean(emds)), 5), "emd_floor": round(float(np.mean(floors)), 5),
        "emd_points": m,
    }
