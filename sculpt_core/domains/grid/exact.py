"""Exact distributions on enumerable environments by dynamic programming over the DAG.

Everything is float64 log space. A *policy table* is ``log_pf[n_states, n_actions]``: normalised,
masked forward log-probabilities of every state (invalid actions are -inf, stop is the last action).

- Reaching probability u(s): u(s0) = 1, u(s') = sum over parents s of u(s) p_F(s'|s).
- Terminal distribution:    p(x) = u(x) p_F(stop | x).
Processing anti-diagonals (levels) keeps the loop at ndim*(H-1) vectorised steps, never per cell.
:class:`GridSpace` offers these as an :class:`~sculpt_core.core.exact.ExactSpace`, so the generic exact
composed policies (oracle, exact reaching) run on the grid with the fast DPs.
"""

from __future__ import annotations

import math

import torch

from sculpt_core.core.exact import ExactSpace
from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError


def normalize_log_policy(env: GridEnv, logits: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
    """Mask invalid actions with -inf and log-softmax in float64 (rows are states, in flat order by default)."""
    states = env.all_states() if states is None else states
    mask = env.forward_mask(states)
    return torch.log_softmax(logits.double().masked_fill(~mask, float("-inf")), dim=-1)


@torch.no_grad()
def log_reaching(env: GridEnv, log_pf: torch.Tensor) -> torch.Tensor:
    """log u(s) for every state (flat order) under the policy table ``log_pf``."""
    if log_pf.shape != (env.n_states, env.n_actions):
        raise SculptError(f"policy table must have shape {(env.n_states, env.n_actions)}, got {tuple(log_pf.shape)}")
    log_pf = log_pf.double()
    log_u = torch.full((env.n_states,), float("-inf"), dtype=torch.float64, device=log_pf.device)
    log_u[0] = 0.0
    dims = torch.arange(env.ndim, device=log_pf.device)
    for idx, parents, exists in env.level_tables:
        cand = log_u[parents] + log_pf[parents, dims]
        log_u[idx] = torch.logsumexp(cand.masked_fill(~exists, float("-inf")), dim=-1)
    return log_u


@torch.no_grad()
def log_terminal(env: GridEnv, log_pf: torch.Tensor, log_u: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) = log u(x) + log p_F(stop|x), flat order; sums to 1 for any proper policy."""
    log_u = log_reaching(env, log_pf) if log_u is None else log_u
    return log_u + log_pf[:, env.stop_action].double()


@torch.no_grad()
def backward_expectation(env: GridEnv, log_pf: torch.Tensor, log_terminal_value: torch.Tensor) -> torch.Tensor:
    """log E[ v(x) | trajectory passes through s ] for every state s, given log v(x) at terminals.

    Backward DP in reverse topological order (the label posterior p(y|s) when v = p(y|x)):
    V(s) = p_F(stop|s) v(s) + sum_d p_F(move d|s) V(s + e_d). ``log_terminal_value`` may carry extra
    trailing dimensions (e.g. one column per label combination); they are processed together.
    """
    log_pf = log_pf.double()
    extra = log_terminal_value.shape[1:]
    flat_v = log_terminal_value.double().reshape(env.n_states, -1)
    out = torch.full_like(flat_v, float("-inf"))
    child_idx = env.child_index
    level_lists = [torch.zeros(1, dtype=torch.long, device=log_pf.device)] + [t[0] for t in env.level_tables]
    for idx in reversed(level_lists):
        terms = [log_pf[idx, env.stop_action, None] + flat_v[idx]]
        for d in range(env.ndim):
            terms.append(log_pf[idx, d, None] + out[child_idx[idx, d]])  # -inf policy masks edge moves
        out[idx] = torch.logsumexp(torch.stack(terms, dim=0), dim=0)
    return out.reshape((env.n_states,) + tuple(extra))


class GridSpace(ExactSpace):
    """The grid as an :class:`~sculpt_core.core.exact.ExactSpace` whose three dynamic programmes are the
    anti-diagonal vectorised ones above (the generic child table and levels are kept for ``child_values`` and
    for checking the fast DP against the generic one)."""

    def __init__(self, env: GridEnv) -> None:
        self.env = env
        super().__init__(grid_child_table(env), grid_levels(env),
                         torch.ones(env.n_states, dtype=torch.bool, device=env.device), env.stop_action)

    def log_reaching(self, log_pf: torch.Tensor) -> torch.Tensor:
        return log_reaching(self.env, log_pf)

    def log_terminal(self, log_pf: torch.Tensor, log_u: torch.Tensor | None = None) -> torch.Tensor:
        return log_terminal(self.env, log_pf, log_u)

    def backward_expectation(self, log_pf: torch.Tensor, log_value: torch.Tensor) -> torch.Tensor:
        return backward_expectation(self.env, log_pf, log_value)


def grid_child_table(env: GridEnv) -> torch.Tensor:
    """``child[N, ndim+1]``: flat index of z + e_d where that move is valid, −1 at the edge and in the stop column."""
    moves = env.forward_mask(env.all_states())[:, : env.ndim]
    child = torch.where(moves, env.child_index, torch.full_like(env.child_index, -1))
    return torch.cat([child, torch.full_like(child[:, :1], -1)], 1)


def grid_levels(env: GridEnv) -> list[torch.Tensor]:
    """Anti-diagonals (sum of coordinates) in order, s0 first: a topological order of the grid DAG."""
    return [torch.zeros(1, dtype=torch.long, device=env.device)] + [t[0] for t in env.level_tables]


def generic_grid_space(env: GridEnv) -> ExactSpace:
    """The grid as a plain :class:`ExactSpace` (generic DPs over its child table): the reference for :class:`GridSpace`."""
    return ExactSpace(grid_child_table(env), grid_levels(env), torch.ones(env.n_states, dtype=torch.bool), env.stop_action)


class ExactGridClassifier:
    """Exact label posteriors of grid bases in the :class:`~sculpt_core.domains.grid.classifier.GridClassifier`
    interface (ground truth of tests and benches): ``kind`` "chain" (exact guidance), "a1" or "a1_d6" (fixed
    points of Algorithm A.1, see :func:`~sculpt_core.core.exact.exact_label_posterior`). ``log_pf`` ``[m, N, A]``."""

    def __init__(self, env: GridEnv, log_pf: torch.Tensor, n_labels: int = 2, alpha_cond: bool = False,
                 kind: str = "chain") -> None:
        from types import SimpleNamespace

        self.env, self.space, self.log_pf, self.kind = env, GridSpace(env), log_pf.double(), kind
        self.cfg = SimpleNamespace(n_models=log_pf.shape[0], n_labels=n_labels, alpha_cond=alpha_cond)
        self._log_u = torch.stack([self.space.log_reaching(t) for t in self.log_pf])
        self._joint: dict = {}
        _, self._weights, self._single = self._posterior(None)

    def _posterior(self, alpha: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from sculpt_core.core.exact import exact_label_posterior

        return exact_label_posterior(self.space, self.log_pf, self.cfg.n_labels, alpha, self.kind, self._log_u)

    def _rows(self, states: torch.Tensor) -> torch.Tensor:
        return self.env.flat_index(states) if states.dim() > 1 else states.long()

    def log_q_nonterminal(self, states: torch.Tensor, logit_alpha: float | None = None) -> torch.Tensor:
        key = None if (logit_alpha is None or not self.cfg.alpha_cond) else round(float(logit_alpha), 12)
        if key not in self._joint:
            self._joint[key] = self._posterior(None if key is None else 1.0 / (1.0 + math.exp(-key)))[0]
        return self._joint[key][self._rows(states)]

    def log_q_terminal_single(self, states: torch.Tensor) -> torch.Tensor:
        return self._single[self._rows(states)]

    def log_mixture_weights(self, states: torch.Tensor, logit_alpha: float | None = None) -> torch.Tensor | None:
        """P(i | s) for the chain posterior; None for the A.1 fixed points (their y1-marginal is P(i | s))."""
        return self._weights[self._rows(states)] if self.kind == "chain" else None
