"""Grid distribution maps: exact earth mover's distances between exact distributions on the 32×32 grid.

* A distribution is a probability table ``p[z0, z1]`` (``grid dist`` / ``grid compose`` write them); the ground
  cost between cells is their Euclidean distance in cell units, ``‖z − z'‖₂``.
* Exact EMD, fast: the cost is a metric, so the optimal transport between p and q moves only the difference
  ``(p − q)⁺ → (q − p)⁺`` (mass both share stays in place at cost 0; Kantorovich–Rubinstein). The network simplex
  then runs on the two disjoint supports (e.g. 250 × 780 cells instead of 1024 × 1024), and the same value as
  ``ot.emd2(p, q, C)`` on the full tables (tested).
* The same problem, posed faster: the larger support as the rows and both supports in a fixed pseudo-random order
  (:func:`_solver_order`). POT's network simplex searches its arcs for pivots block by block in their order, and
  this order finds them sooner than row-major cells: on the 20-distribution map of ``bench/maps.py``, about 13 ms
  a pair instead of about 23 ms (one core of a shared machine; about 200 ms on the full tables). The value is the
  same linear program's optimum (equal to ~1e-15 relative).
* :func:`map_distributions` computes the distributions of a map (bases and compositions by any grid method,
  α sweeps included) exactly, in milliseconds each.
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any, Sequence

import numpy as np

from sculpt_core.core.maps import MapItem, Progress, emd, emd_command, pairwise_matrix, sinkhorn
from sculpt_core.errors import SculptError


@functools.lru_cache(maxsize=4)
def cell_cost(shape: tuple[int, ...]) -> np.ndarray:
    """Euclidean distances between all cells of a grid of ``shape`` (row-major flat index), float64, read-only."""
    coords = np.stack(np.meshgrid(*[np.arange(h) for h in shape], indexing="ij"), -1).reshape(-1, len(shape))
    diff = coords[:, None, :].astype(np.float64) - coords[None, :, :]
    cost = np.sqrt((diff ** 2).sum(-1))
    cost.setflags(write=False)
    return cost


def check_distribution(p: Any, what: str = "distribution") -> np.ndarray:
    """A probability table as float64 summing to 1; SculptError if it is not finite, non-negative and non-zero."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim < 1 or arr.size < 2:
        raise SculptError(f"{what}: expected a probability table such as (32, 32), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise SculptError(f"{what}: probabilities must be finite and non-negative")
    total = float(arr.sum())
    if total <= 0:
        raise SculptError(f"{what}: all probabilities are zero")
    return arr / total


def load_distribution(path: str) -> np.ndarray:
    """A probability table from ``.npy`` / ``.csv`` (as ``grid dist --out`` writes), checked and normalised."""
    from sculpt_core.core.io import load_array

    return check_distribution(load_array(path), str(path))


def grid_emd(p: np.ndarray, q: np.ndarray, solver: str = "exact", reg: float = 0.01) -> float:
    """EMD between two probability tables of the same shape, Euclidean ground cost in cell units. ``exact``: the
    network simplex on the difference's supports (equal to the full problem); ``sinkhorn``: entropic, on the
    full tables (ε = ``reg`` × mean cost)."""
    p, q = check_distribution(p, "first distribution"), check_distribution(q, "second distribution")
    if p.shape != q.shape:
        raise SculptError(f"distributions live on different grids: {p.shape} and {q.shape}")
    cost = cell_cost(tuple(p.shape))
    a, b = p.reshape(-1), q.reshape(-1)
    if solver == "sinkhorn":
        return sinkhorn(cost, a, b, reg)
    if solver != "exact":
        raise SculptError(f"unknown transport solver {solver!r}; choose 'exact' or 'sinkhorn'")
    d = a - b
    pos, neg = np.flatnonzero(d > 0), np.flatnonzero(d < 0)
    mass_pos, mass_neg = float(d[pos].sum()), float(-d[neg].sum())
    if not pos.size or not neg.size or max(mass_pos, mass_neg) <= 1e-15:
        return 0.0
    rows, cols, w_rows, w_cols = pos, neg, d[pos], -d[neg]
    if rows.size < cols.size:  # the cost is symmetric: moving (q − p)⁺ → (p − q)⁺ costs the same
        rows, cols, w_rows, w_cols = cols, rows, w_cols, w_rows
    order_rows, order_cols = _solver_order(rows.size), _solver_order(cols.size)
    rows, cols = rows[order_rows], cols[order_cols]
    sub = cost[np.ix_(rows, cols)]
    return emd(sub, w_rows[order_rows], w_cols[order_cols]) * (mass_pos + mass_neg) / 2.0


@functools.lru_cache(maxsize=64)
def _solver_order(n: int) -> np.ndarray:
    """A fixed pseudo-random permutation of ``range(n)`` (``RandomState(0)``, the same on every run and numpy
    version): the order in which :func:`grid_emd` hands a support to the network simplex (speed only)."""
    order = np.random.RandomState(0).permutation(n)
    order.setflags(write=False)
    return order


def emd_matrix(dists: Sequence[np.ndarray], solver: str = "exact", reg: float = 0.01,
               progress: Progress | None = None, workers: int | None = None) -> np.ndarray:
    """Symmetric ``(k, k)`` EMD matrix between probability tables of one grid (``workers``: processes, see
    ``core.maps.pairwise_matrix``; default 2 on a multi-core machine)."""
    tables = [check_distribution(p, f"distribution {i + 1}") for i, p in enumerate(dists)]
    shapes = {t.shape for t in tables}
    if len(shapes) > 1:
        raise SculptError(f"distributions live on different grids: {sorted(shapes)}")
    return pairwise_matrix(len(tables), lambda i, j: grid_emd(tables[i], tables[j], solver, reg), progress,
                           workers)


def map_distributions(names: Sequence[str], items: Sequence[MapItem], beta: float | None = None,
                      classifier: Any = None, u_source: str = "exact",
                      progress: Progress | None = None) -> list[np.ndarray]:
    """The exact probability table of every item over the grid models ``names`` (a composition's ``method`` is
    one of oracle, classifier, reaching, ensemble; classifier needs ``classifier``)."""
    from sculpt_core.domains.grid.compose import compose, prepare_bases
    from sculpt_core.domains.grid.zoo import load_grid_model

    bases = prepare_bases([load_grid_model(n) for n in names], beta)
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    for i, item in enumerate(items):
        if item.base is not None:
            p = bases.log_p[item.base].exp().reshape(bases.env.shape).numpy()
        else:
            clf = classifier if item.method == "classifier" else None
            p = compose(bases, item.composition(bases.m), item.method, clf, u_source).p
        out.append(check_distribution(p, item.label))
        if progress is not None:
            spent = time.perf_counter() - t0
            progress(i + 1, len(items), spent / (i + 1) * (len(items) - i - 1))
    return out


def cmd_grid_emd(args: argparse.Namespace) -> dict[str, Any]:
    """``grid emd --dists p.npy,q.npy[,…] --out d.npy``."""
    from sculpt_core.core.cli import parse_list

    return emd_command(parse_list(args.dists, str, "--dists"), load_distribution, emd_matrix, args.out, args.solver,
                       args.reg, "--dists", "p.npy,q.npy", describe=lambda dists: {"shape": list(dists[0].shape)})


__all__ = ["cell_cost", "check_distribution", "cmd_grid_emd", "emd_matrix", "grid_emd", "load_distribution",
           "map_distributions"]
