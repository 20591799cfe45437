"""Exact t-SNE of a precomputed distance matrix for small n, vectorised: the same optimisation as scikit-learn's
``TSNE(method="exact", metric="precomputed", init="random")``, step by step, at a fraction of its time.

Why: scikit-learn's exact gradient loops over the points in Python (one ``np.dot`` per point per iteration), so
the paper's 20000 iterations on a 20-point map take seconds. Here every iteration is about 30 whole-array
operations, whatever n. The arithmetic is kept the same as scikit-learn's so that the coordinates are the same, not just an
equally good embedding:

* perplexity calibration: a binary search on each point's precision, on the squared distances rounded to float32,
  sequential sums and the C library's ``exp``/``log`` (as the compiled search uses), the target perplexity
  rounded to float32, tolerance 1e-5 (float32), at most 100 steps, a zero row sum floored at 1e-8 (float32);
  then ``P = (P + Pᵀ) / max(ΣP, ε)`` on the pairs i < j, floored at ε (machine epsilon);
* start: ``1e-4 · N(0, 1)`` from ``RandomState(seed)``, rounded to float32; the coordinates stay float32 and the
  gradient is rounded to float32, as scikit-learn's are;
* Student-t kernel with ``max(n_components − 1, 1)`` degrees of freedom; the gradient row by row with the same
  BLAS matrix-vector product (batched), so its sums round the same way;
* two phases of gradient descent with momentum and per-coordinate gains (+0.2 / ×0.8, at least 0.01): 250
  iterations with P × ``early_exaggeration`` and momentum 0.5, then momentum 0.8 up to ``max_iter``; each phase
  starts with zero momentum and unit gains; every 50 iterations the KL divergence is evaluated, and a phase stops
  when it has not improved for ``n_iter_without_progress`` iterations (250 in the first phase) or the gradient norm
  is at most ``min_grad_norm``; learning rate "auto" = ``max(n / early_exaggeration / 4, 50)``.

:func:`tsne_exact` is tested against ``sklearn.manifold.TSNE`` (coordinates, iterations run and KL divergence;
written against scikit-learn 1.9, where they agree to the last bit);
it is meant for up to :data:`MAX_EXACT_N` points (memory and time grow as n²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

#: Floors of probabilities (double precision machine epsilon), as scikit-learn.
MACHINE_EPSILON = float(np.finfo(np.double).eps)
#: Iterations of the early-exaggeration phase; the stopping rules are checked every N_ITER_CHECK iterations.
EXPLORATION_ITER = 250
N_ITER_CHECK = 50
MIN_GAIN = 0.01
#: The perplexity search: steps, tolerance on the entropy and the floor of a zero row sum (float32 constants).
SEARCH_STEPS = 100
PERPLEXITY_TOL = float(np.float32(1e-5))
ROW_SUM_FLOOR = float(np.float32(1e-8))
#: Largest n this implementation is used for (the gradient holds n × n × n_components arrays).
MAX_EXACT_N = 200


@dataclass
class TSNEResult:
    """Coordinates ``(n, n_components)`` float32, the KL divergence of the last evaluation, the index of the last
    iteration (scikit-learn's ``n_iter_``) and the learning rate used."""

    coords: np.ndarray
    kl_divergence: float
    n_iter: int
    learning_rate: float


def _exp(x: np.ndarray) -> np.ndarray:
    """``exp`` elementwise through the C library (``math.exp``): numpy's SIMD ``exp`` may differ in the last bit."""
    return np.fromiter(map(math.exp, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


def conditional_probabilities(sq_distances: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-conditional Gaussian probabilities ``p_{j|i}`` (float64, zero diagonal) whose perplexity matches
    ``perplexity``, from squared distances (rounded to float32 first). All rows are searched together; a row
    keeps the probabilities of the step at which it met the tolerance (or of the last step)."""
    sq = np.asarray(sq_distances, dtype=np.float32).astype(np.float64)
    n = len(sq)
    target = math.log(float(np.float32(perplexity)))
    beta = np.ones(n)
    beta_min = np.full(n, -np.inf)
    beta_max = np.full(n, np.inf)
    out = np.zeros((n, n))
    active = np.arange(n)
    for _ in range(SEARCH_STEPS):
        if not active.size:
            break
        d = sq[active]
        b = beta[active]
        e = _exp(-d * b[:, None])
        e[np.arange(len(active)), active] = 0.0  # p_{i|i} = 0
        row_sum = np.cumsum(e, axis=1)[:, -1]  # sequential sums, as the compiled loop adds
        row_sum[row_sum == 0.0] = ROW_SUM_FLOOR
        p = e / row_sum[:, None]
        weighted = np.cumsum(d * p, axis=1)[:, -1]
        entropy = np.array([math.log(s) for s in row_sum.tolist()]) + b * weighted
        diff = entropy - target
        out[active] = p
        done = np.abs(diff) <= PERPLEXITY_TOL
        higher = diff > 0.0  # entropy too high: raise the precision
        lo, hi = beta_min[active], beta_max[active]
        new_lo = np.where(higher, b, lo)
        new_hi = np.where(higher, hi, b)
        raised = np.where(np.isinf(hi), b * 2.0, (b + hi) / 2.0)
        lowered = np.where(np.isinf(lo), b / 2.0, (b + lo) / 2.0)
        new_b = np.where(higher, raised, lowered)
        keep = ~done
        idx = active[keep]
        beta[idx], beta_min[idx], beta_max[idx] = new_b[keep], new_lo[keep], new_hi[keep]
        active = idx
    return out


def joint_probabilities(distances: np.ndarray, perplexity: float) -> np.ndarray:
    """Condensed joint probabilities ``p_ij`` (pairs i < j in row order) of a distance matrix: squared distances,
    :func:`conditional_probabilities`, symmetrised and normalised, floored at machine epsilon."""
    d = np.asarray(distances)
    d = d.astype(np.float32 if d.dtype == np.float32 else np.float64)
    cond = conditional_probabilities(d ** 2, perplexity)
    sym = cond + cond.T
    total = max(float(np.sum(sym)), MACHINE_EPSILON)
    upper = np.triu_indices(len(d), 1)
    return np.maximum(sym[upper] / total, MACHINE_EPSILON)


class _Objective:
    """KL(P ‖ Q) and its gradient for a float32 embedding, with the pair indices and buffers made once."""

    def __init__(self, n: int, n_components: int) -> None:
        self.n, self.k = n, n_components
        self.dof = max(n_components - 1, 1)
        rows, cols = np.triu_indices(n, 1)
        self.upper_flat = rows * n + cols
        self.lower_flat = cols * n + rows
        grid_i, grid_j, comp = np.meshgrid(np.arange(n), np.arange(n), np.arange(n_components), indexing="ij")
        self.take_i = (grid_i * n_components + comp).reshape(-1)  # x_i, x_j for every (i, j, component)
        self.take_j = (grid_j * n_components + comp).reshape(-1)
        self.full = np.zeros((n, n))
        self.full_rows = self.full[:, None, :]
        self.exponent = (self.dof + 1.0) / -2.0
        self.factor = 2.0 * (self.dof + 1.0) / self.dof

    def __call__(self, y: np.ndarray, p: np.ndarray, compute_error: bool) -> tuple[float, np.ndarray]:
        """(KL or nan, gradient float32 ``(n·k,)``) at coordinates ``y`` (float32, flat)."""
        n, k = self.n, self.k
        wide = y.astype(np.float64)
        # x_i − x_j of the widened coordinates, exact in float64 for float32 inputs; rounded back to float32 it is
        # the float32 difference (double precision has more than 2·24 + 2 bits)
        diff = np.take(wide, self.take_i)
        diff -= np.take(wide, self.take_j)
        pair = np.take(diff.reshape(n * n, k), self.upper_flat, axis=0)
        pair *= pair
        w = pair[:, 0].copy()  # squared distances of the pairs i < j, summed over the components in order
        for c in range(1, k):
            w += pair[:, c]
        if self.dof != 1:
            w /= self.dof
        w += 1.0
        w **= self.exponent
        q = w / (2.0 * w.sum())  # numpy's pairwise sum, as np.sum
        np.maximum(q, MACHINE_EPSILON, out=q)
        error = 2.0 * float(np.dot(p, np.log(np.maximum(p, MACHINE_EPSILON) / q))) if compute_error else math.nan
        pq = p - q
        pq *= w
        flat = self.full.reshape(-1)
        flat[self.upper_flat] = pq
        flat[self.lower_flat] = pq
        rounded = diff.astype(np.float32).reshape(n, n, k)  # matmul widens it back to float64
        grad = np.matmul(self.full_rows, rounded).reshape(-1).astype(np.float32)
        grad *= self.factor
        return error, grad


def _descend(objective: _Objective, p: np.ndarray, y: np.ndarray, start: int, stop: int, momentum: float,
             learning_rate: float, n_iter_without_progress: int,
             min_grad_norm: float) -> tuple[np.ndarray, float, int]:
    """One phase of gradient descent over iterations ``start … stop − 1`` (fresh momentum and gains):
    (coordinates, last KL evaluated or the largest float if none, index of the last iteration)."""
    y = y.copy()
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    error = best_error = float(np.finfo(float).max)
    best_iter = i = start
    for i in range(start, stop):
        check = (i + 1) % N_ITER_CHECK == 0
        error, grad = objective(y, p, check or i == stop - 1)
        keeps = update * grad < 0.0  # gains grow where the last step still points downhill, shrink elsewhere
        gains = np.where(keeps, gains + 0.2, gains * 0.8)
        np.maximum(gains, MIN_GAIN, out=gains)
        grad *= gains
        update = momentum * update - learning_rate * grad
        y += update
        if check:
            grad_norm = linalg.norm(grad)
            if error < best_error:
                best_error, best_iter = error, i
            elif i - best_iter > n_iter_without_progress:
                break
            if grad_norm <= min_grad_norm:
                break
    return y, error, i


def tsne_exact(distances: np.ndarray, n_components: int = 2, perplexity: float = 30.0,
               early_exaggeration: float = 12.0, learning_rate: float | str = "auto", max_iter: int = 1000,
               n_iter_without_progress: int = 300, min_grad_norm: float = 1e-7,
               random_state: int | np.random.RandomState | None = None) -> TSNEResult:
    """Exact t-SNE of a square distance matrix with a random start: what
    ``sklearn.manifold.TSNE(method="exact", metric="precomputed", init="random", ...)`` computes for the same
    arguments (see the module docstring). ValueError for a perplexity not below n or fewer than 250 iterations."""
    from sklearn.utils import check_random_state

    d = np.asarray(distances)
    n = int(d.shape[0]) if d.ndim == 2 else 0
    if d.ndim != 2 or d.shape[1] != n or n < 2:
        raise ValueError(f"a square distance matrix with at least 2 points is needed, got shape {d.shape}")
    if not perplexity < n:
        raise ValueError(f"perplexity ({perplexity}) must be less than n_samples ({n})")
    if int(max_iter) < EXPLORATION_ITER:
        raise ValueError(f"max_iter must be at least {EXPLORATION_ITER}, got {max_iter}")
    if learning_rate == "auto":
        rate = np.maximum(n / early_exaggeration / 4, 50)  # a numpy float64: the update is computed in float64
    else:
        rate = learning_rate
    p = joint_probabilities(d, perplexity)
    rng = check_random_state(random_state)
    y = 1e-4 * rng.standard_normal(size=(n, n_components)).astype(np.float32)
    objective = _Objective(n, n_components)
    exaggerated = p * early_exaggeration
    y, error, it = _descend(objective, exaggerated, y.reshape(-1), 0, EXPLORATION_ITER, 0.5, rate,
                            EXPLORATION_ITER, min_grad_norm)
    y, error, it = _descend(objective, exaggerated / early_exaggeration, y, it + 1, int(max_iter), 0.8, rate,
                            n_iter_without_progress, min_grad_norm)
    return TSNEResult(y.reshape(n, n_components), float(error), int(it), float(rate))


__all__ = ["MAX_EXACT_N", "TSNEResult", "conditional_probabilities", "joint_probabilities", "tsne_exact"]
