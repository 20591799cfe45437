"""Exact dynamic programming over any enumerable state space, and the exact composed policies built on it.

A space is a DAG of ``N`` states (index 0 = the initial state s0) with ``A`` actions per state:

- ``child[N, A]`` (long): the state each action leads to, −1 where the action is invalid and in the stop column;
  several actions may lead to the same child (e.g. isomorphic successors of a graph);
- ``levels``: long tensors of state indices in topological order (``levels[0] = [0]``; every child of a
  level-L state lies on a later level);
- ``can_stop[N]`` (bool): the stop action is valid in the state (the state is a complete object).

Everything is float64 log space. A *policy table* is ``log_pf[N, A]``: masked, normalised forward log-probs.

- reaching probability: u(s0) = 1, u(s') = Σ_{(s, a) → s'} u(s) p_F(a|s);
- terminal distribution: p(x) = u(x) p_F(stop|x) where stop is valid;
- backward expectation: V(s) = p_F(stop|s) v(s) + Σ_a p_F(a|s) V(child(s, a)) = E[v(x) | s on the trajectory].

:func:`oracle_log_policy` (exact guidance for any composition), :func:`exact_reaching_log_policy` (reaching
mixing with exact u_i) and :func:`exact_log_target` run on any object with the :class:`ExactSpace` interface,
so a domain with a faster DP of its own (the grid's anti-diagonals) subclasses it and overrides the three DPs.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.core.guidance import guided_log_policy
from sculpt_core.core.reaching import reaching_log_policy
from sculpt_core.errors import SculptError

NEG_INF = float("-inf")


class ExactSpace:
    """An enumerated DAG given by its child table; see the module docstring for the layout."""

    def __init__(self, child: torch.Tensor, levels: list[torch.Tensor], can_stop: torch.Tensor, stop_action: int) -> None:
        if child.dim() != 2:
            raise SculptError(f"child table must be [n_states, n_actions], got shape {tuple(child.shape)}")
        if can_stop.shape != (child.shape[0],):
            raise SculptError(f"can_stop must have {child.shape[0]} entries, got shape {tuple(can_stop.shape)}")
        self.child = child.long()
        self.levels = [torch.as_tensor(lv, dtype=torch.long).reshape(-1) for lv in levels]
        self.can_stop = can_stop.bool()
        self.stop_action = int(stop_action)

    @property
    def n_states(self) -> int:
        return self.child.shape[0]

    @property
    def n_actions(self) -> int:
        return self.child.shape[1]

    def _check_table(self, log_pf: torch.Tensor) -> torch.Tensor:
        if tuple(log_pf.shape) != (self.n_states, self.n_actions):
            raise SculptError(f"policy table must have shape {(self.n_states, self.n_actions)}, got {tuple(log_pf.shape)}")
        return log_pf.double()

    @cached_property
    def _edges(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level: (parent, action, child) of every move out of that level's states (the stop column has none)."""
        out = []
        for idx in self.levels:
            ch = self.child[idx]
            rows, acts = torch.nonzero(ch >= 0, as_tuple=True)
            out.append((idx[rows], acts, ch[rows, acts]))
        return out

    # ----- the three dynamic programmes ---------------------------------------------------------------
    @torch.no_grad()
    def log_reaching(self, log_pf: torch.Tensor) -> torch.Tensor:
        """log u(s) for every state ``[N]``: forward DP, level by level, scatter-logsumexp into the children
        (a level's states are complete once every earlier level has been pushed forward)."""
        log_pf = self._check_table(log_pf)
        u = torch.full((self.n_states,), NEG_INF, dtype=torch.float64, device=log_pf.device)
        u[0] = 0.0
        for par, act, chi in self._edges:
            if par.numel() == 0:
                continue
            par, act, chi = par.to(u.device), act.to(u.device), chi.to(u.device)
            vals = u[par] + log_pf[par, act]
            peak = torch.full_like(u, NEG_INF).scatter_reduce(0, chi, vals, "amax")
            safe = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
            total = torch.zeros_like(u).index_add(0, chi, (vals - safe[chi]).exp())
            hit = torch.unique(chi)
            u[hit] = torch.logaddexp(u[hit], safe[hit] + total[hit].log())  # children may have parents on several levels
        return u

    @torch.no_grad()
    def log_terminal(self, log_pf: torch.Tensor, log_u: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) = log u(x) + log p_F(stop|x) (−inf where stop is invalid); sums to 1 for a proper policy."""
        log_pf = self._check_table(log_pf)
        log_u = self.log_reaching(log_pf) if log_u is None else log_u.double()
        out = log_u + log_pf[:, self.stop_action]
        return out.masked_fill(~self.can_stop.to(out.device), NEG_INF)

    @torch.no_grad()
    def backward_expectation(self, log_pf: torch.Tensor, log_value: torch.Tensor) -> torch.Tensor:
        """log E[v(x) | the trajectory passes through s] for every state, given log v(x) ``[N, ...]`` at
        terminals (trailing dims are processed together). Backward DP in reverse topological order."""
        log_pf = self._check_table(log_pf)
        extra = log_value.shape[1:]
        v = log_value.double().reshape(self.n_states, -1).to(log_pf.device)
        out = torch.full_like(v, NEG_INF)
        can_stop = self.can_stop.to(v.device)
        for idx in reversed(self.levels):
            idx = idx.to(v.device)
            stop_term = torch.where(can_stop[idx, None], log_pf[idx, self.stop_action, None] + v[idx],
                                    torch.full_like(v[idx], NEG_INF))
            ch = self.child[idx].to(v.device)  # [L, A]
            vals = out[ch.clamp(min=0)] + log_pf[idx].unsqueeze(-1)  # [L, A, r]
            vals = vals.masked_fill((ch < 0).unsqueeze(-1), NEG_INF)
            out[idx] = torch.logaddexp(stop_term, torch.logsumexp(vals, 1))
        return out.reshape((self.n_states,) + tuple(extra))

    def child_values(self, log_v: torch.Tensor, log_stop: torch.Tensor) -> torch.Tensor:
        """Value of each action's successor ``[N, A, ...]``: ``log_v`` of the child state for moves (−inf where
        there is none), ``log_stop`` ``[N, ...]`` (the terminal object's value) in the stop column."""
        ch = self.child.to(log_v.device)
        out = log_v[ch.clamp(min=0)]
        out = out.masked_fill((ch < 0).reshape(ch.shape + (1,) * (log_v.dim() - 1)), NEG_INF)
        out[:, self.stop_action] = log_stop.to(out.dtype)
        return out


# ----- exact composed policies ----------------------------------------------------------------------------
def _reaching_and_terminal(space: ExactSpace, log_pf_models: torch.Tensor, log_u: torch.Tensor | None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    log_pf_models = log_pf_models.double()
    if log_u is None:
        log_u = torch.stack([space.log_reaching(t) for t in log_pf_models])
    log_u = log_u.double()
    log_p = torch.stack([space.log_terminal(t, u) for t, u in zip(log_pf_models, log_u)])
    return log_u, log_p


def exact_log_target(space: ExactSpace, log_pf_models: torch.Tensor, composition: Composition,
                     log_z: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised log target ``[N]`` of ``composition`` from the bases' exact terminal distributions."""
    return composition.log_target(_reaching_and_terminal(space, log_pf_models, None)[1], log_z)


def oracle_log_policy(space: ExactSpace, log_pf_models: torch.Tensor, composition: Composition,
                      log_z: torch.Tensor | None = None, log_u: torch.Tensor | None = None) -> torch.Tensor:
    """Exact guidance for ANY composition ``[N, A]``: the mixture p_M ∝ Σ c_i p_i (c_i: the composition's prior
    weights), whose policy at s mixes the bases with weights c_i u_i(s), h-transformed by L(x) = target(x)/p_M(x)
    with V(s) = E[L | s] by backward DP. For label compositions L(x) ∝ p(y | x) and V(s) = p(y | s), so this is
    classifier guidance with a perfect classifier. ``log_u`` ``[m, N]``: the bases' reaching probabilities, if
    already known."""
    log_pf_models = log_pf_models.double()
    log_u, log_p = _reaching_and_terminal(space, log_pf_models, log_u)
    log_c = composition.prior_log_weights(log_z).to(log_u.device)
    log_w = log_c[:, None] + log_u
    log_w = log_w - torch.logsumexp(log_w, 0, keepdim=True)  # [m, N]
    log_lik = composition.log_combine(log_p, log_z) - torch.logsumexp(log_c[:, None] + log_p, 0)
    log_lik = log_lik.masked_fill(torch.isnan(log_lik), NEG_INF)  # log L(x), up to a constant
    mix = torch.logsumexp(log_pf_models + log_w.unsqueeze(-1), 0)
    log_v = space.backward_expectation(mix, log_lik)
    return guided_log_policy(log_pf_models, log_w.T, log_v, space.child_values(log_v, log_lik))


def exact_reaching_log_policy(space: ExactSpace, log_pf_models: torch.Tensor, composition: Composition,
                              log_z: torch.Tensor | None = None, ensemble: bool = False,
                              log_u: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reaching mixing with EXACT u_i ``[N, A]``, log N_M(s) ``[N]``); ``ensemble``: u_i = 1 instead."""
    log_pf_models = log_pf_models.double()
    if ensemble:
        log_u = torch.zeros(log_pf_models.shape[:2], dtype=torch.float64, device=log_pf_models.device)
    elif log_u is None:
        log_u = torch.stack([space.log_reaching(t) for t in log_pf_models])
    return reaching_log_policy(composition, log_pf_models, log_u, log_z)


# ----- exact label posteriors: the chain posterior and the fixed points of Algorithm A.1 ---------------------------
#: Kinds of exact non-terminal label posterior (:func:`exact_label_posterior`).
POSTERIOR_KINDS = ("chain", "a1", "a1_d6")


def exact_label_posterior(space: ExactSpace, log_pf_models: torch.Tensor, n_labels: int,
                          alpha: float | None = None, kind: str = "chain", log_u: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log joint Q(y_1..y_n | s) ``[N, m, …, m]``, log mixture weights P(i | s) ``[N, m]``, log terminal
    posterior Q(y = i | x) ``[N, m]``) of the augmented model with equal priors, by ``kind``:

    - ``"chain"``: E_{p_M}[Π_k Q(y_k | x) | s] over the mixture chain p_M = Σ_i P(i | s) p_iF, P(i | s) ∝
      u_i(s): the posterior Theorem 5.3 needs (guidance with it is exact). Its y1-marginal is not P(i | s) on a
      DAG, hence the separate weights;
    - ``"a1"``: the fixed point of Algorithm A.1 with the final object kept as a non-terminal state,
      P(i | s) · E_i[Π_{k≥2} Q(y_k | x) | s]: each state continued by the generating model's own policy. Its
      y1-marginal is P(i | s); on a tree it equals the chain posterior, on a DAG it does not;
    - ``"a1_d6"``: the A.1 fixed point when the final object is never a non-terminal training state (a state's
      posterior learned only from trajectories that continue past it).

    ``alpha``: label y2 α-weighted (eq. 7, two models). Unreachable entries are −inf."""
    from sculpt_core.core.labels import terminal_joint

    if kind not in POSTERIOR_KINDS:
        raise SculptError(f"unknown exact posterior kind {kind!r}; one of {', '.join(POSTERIOR_KINDS)}")
    log_pf_models = log_pf_models.double()
    m = log_pf_models.shape[0]
    log_u, log_p = _reaching_and_terminal(space, log_pf_models, log_u)
    weights = (log_u - torch.logsumexp(log_u, 0, keepdim=True)).T  # [N, m]
    weights = weights.masked_fill(torch.isnan(weights), -math.log(m))
    single = (log_p - torch.logsumexp(log_p, 0, keepdim=True)).T
    single = single.masked_fill(torch.isnan(single), -math.log(m))  # [N, m]
    term = terminal_joint(single, n_labels, alpha)  # [N, m, ..., m]
    N = single.shape[0]
    if kind == "chain":
        mix = torch.logsumexp(log_pf_models + weights.T.unsqueeze(-1), 0)
        out = space.backward_expectation(mix, term)
    else:
        rest = term.reshape(N, m, -1)[:, 0] - single[:, :1]  # log Π_{k≥2} Q(y_k | x)  [N, r]
        per = torch.stack([space.backward_expectation(log_pf_models[i], rest) for i in range(m)])  # [m, N, r]
        log_w = log_u.clone()
        if kind == "a1_d6":  # condition on continuing past s
            stop = space.stop_action
            keep = torch.log1p(-log_pf_models[:, :, stop].exp().clamp(max=1 - 1e-15))  # [m, N]
            child = space.child.to(log_pf_models.device)
            moves = log_pf_models.clone()
            moves[:, :, stop] = NEG_INF
            moves = moves.masked_fill((child < 0).unsqueeze(0), NEG_INF)
            per = torch.logsumexp(moves.unsqueeze(-1) + per[:, child.clamp(min=0)], 2) - keep.unsqueeze(-1)
            log_w = log_w + keep
        log_w = log_w - torch.logsumexp(log_w, 0, keepdim=True)
        out = (log_w.unsqueeze(-1) + per).permute(1, 0, 2).reshape(term.shape)
    return out.masked_fill(torch.isnan(out), NEG_INF), weights, single


__all__ = ["ExactSpace", "POSTERIOR_KINDS", "exact_label_posterior", "exact_log_target", "exact_reaching_log_policy",
           "oracle_log_policy"]
