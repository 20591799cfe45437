"""Routing by Reaching: training-free mixing of forward policies weighted by reaching probabilities.

    a_i(s, s') = log u_i(s) + log p_iF(s'|s)             (u_i(s): probability model i's trajectory visits s)
    p_M(s'|s)  = G(exp a_1, …, exp a_m) / N_M(s),        N_M(s) = Σ_{s''} G(…)

G is the composition's own combination (:meth:`Composition.log_combine`), so at a stop action
G(u_i(x) p_iF(⊤|x)) = G(p_i(x)) is exactly the target's unnormalised value. The composed terminal law is
p_M(x) = δ(x) G(p_1(x), …) with the distortion δ(x) = u_M(x) / N_M(x); δ is constant (exactness) for the
linear and mixture operators. With all u_i = 1 the same rule is the *ensemble* baseline.

u_i comes from (a) the exact DP (enumerable envs), (b) a learned state flow, log F_i(s) − log Z_i, or
(c) the running product of p_iF/p_iB along the trajectory being generated (:class:`TrajectoryProductPolicy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.core.guidance import safe_log_softmax


def reaching_log_policy(
    composition: Composition,
    log_pf_models: torch.Tensor,
    log_u_models: torch.Tensor,
    log_z: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised composed log-policy ``[B, A]``, log N_M(s) ``[B]``).

    ``log_pf_models`` ``[m, B, A]``; ``log_u_models`` ``[m, B]`` (zeros for the ensemble baseline).
    """
    a = log_u_models.double().unsqueeze(-1) + log_pf_models.double()
    g = composition.log_combine(a, log_z)
    valid = torch.isfinite(log_pf_models).any(0)
    log_norm = torch.logsumexp(g.masked_fill(~valid, float("-inf")), dim=-1)
    return safe_log_softmax(g, valid), log_norm


# A per-model callable giving (log p_F [B, A], log p_B of the transition's parent step [B]) on batches.
ForwardFn = Callable[[torch.Tensor], torch.Tensor]
BackwardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrajectoryProductPolicy:
    """Reaching mixing with u_i estimated along the generated trajectory ("DB F" for TB-trained models):

        log u_i(s_t) = Σ_{j<t} [log p_iF(s_{j+1}|s_j) − log p_iB(s_j|s_{j+1})],   log u_i(s0) = 0.

    ``forward_fns[i](states)`` gives model i's masked log p_F ``[B, A]``; ``backward_fns[i](states, actions,
    next_states)`` its log p_B(s|s') ``[B]`` (its own training backward policy). The carry is log u ``[B, m]``.
    States are whatever the forward functions take (a tensor batch on the grid, a list of graphs on molecules);
    :meth:`moved` says which transitions are moves (Stop does not change the state, so it leaves u unchanged).
    The per-model log p_F computed for :meth:`log_probs` is reused by :meth:`advance` on the same batch (one
    forward pass per step).
    """

    composition: Composition
    forward_fns: list[ForwardFn]
    backward_fns: list[BackwardFn]
    log_z: torch.Tensor | None = None
    _cached: tuple | None = field(default=None, init=False, repr=False)

    def start(self, n: int) -> torch.Tensor:
        self._cached = None
        return torch.zeros(n, len(self.forward_fns), dtype=torch.float64)

    def forward_log_probs(self, states) -> torch.Tensor:
        """Every model's log p_F on ``states`` ``[m, B, A]`` (float64)."""
        return torch.stack([f(states).double() for f in self.forward_fns])

    def moved(self, states, actions: torch.Tensor, next_states) -> torch.Tensor:
        """``[B]`` bool: the transition changed the state (tensor states: any coordinate differs)."""
        return (next_states != states).any(-1) if next_states.dim() > 1 else next_states != states

    def _per_model(self, states) -> torch.Tensor:
        if self._cached is not None and self._cached[0] is states:
            return self._cached[1]
        out = self.forward_log_probs(states)
        self._cached = (states, out)
        return out

    def log_probs(self, states, carry: torch.Tensor) -> torch.Tensor:
        log_pf = self._per_model(states)
        return reaching_log_policy(self.composition, log_pf, carry.T.to(log_pf.device), self.log_z)[0]

    def advance(self, carry: torch.Tensor, states, actions: torch.Tensor, next_states) -> torch.Tensor:
        log_pf = self._per_model(states)  # [m, B, A]
        self._cached = None
        acts = actions.reshape(-1).to(log_pf.device)
        step_pf = log_pf.gather(2, acts.view(1, -1, 1).expand(log_pf.shape[0], -1, 1)).squeeze(-1)  # [m, B]
        step_pb = torch.stack([b(states, actions, next_states).double().to(log_pf.device) for b in self.backward_fns])
        moved = self.moved(states, actions, next_states).reshape(1, -1).to(log_pf.device)
        delta = torch.where(moved, step_pf - step_pb, torch.zeros_like(step_pf))
        return carry + delta.T.to(carry.device)
