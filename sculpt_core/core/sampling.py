"""Vectorised roll-outs: a whole batch of trajectories advances one step per iteration.

A *policy* here is any object with ``start(n)`` (per-trajectory carry, or None),
``log_probs(states, carry)`` (masked, normalised forward log-probs ``[B, n_actions]``) and
``advance(carry, states, actions, next_states)``. Stateless table policies ignore the carry; the
trajectory-product reaching policy keeps its running log u_i there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from sculpt_core.domains.grid.env import GridEnv


class Policy(Protocol):
    def start(self, n: int) -> Any: ...

    def log_probs(self, states: torch.Tensor, carry: Any) -> torch.Tensor: ...

    def advance(self, carry: Any, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor) -> Any: ...


@dataclass
class TablePolicy:
    """A stateless policy given by a table of log-probs over all states of an enumerable env."""

    env: GridEnv
    log_pf: torch.Tensor  # [n_states, n_actions], normalised and masked

    def start(self, n: int) -> None:
        return None

    def log_probs(self, states: torch.Tensor, carry: Any) -> torch.Tensor:
        return self.log_pf[self.env.flat_index(states)]

    def advance(self, carry: Any, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor) -> None:
        return None


@dataclass
class Trajectories:
    """A padded batch: ``states[B, T+1, ndim]``, ``actions[B, T]`` (-1 after stop), ``length[B]`` = #actions incl. stop."""

    states: torch.Tensor
    actions: torch.Tensor
    length: torch.Tensor

    @property
    def terminal_states(self) -> torch.Tensor:
        """The state in which stop was taken, ``[B, ndim]``."""
        return self.states[torch.arange(len(self.length), device=self.length.device), self.length - 1]


def sample_categorical(log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row by the Gumbel-max trick (works on unnormalised log-weights, -inf = impossible)."""
    u = torch.rand(log_probs.shape, generator=generator, device=log_probs.device, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
    return torch.argmax(log_probs.double() + gumbel, dim=-1)


@torch.no_grad()
def sample_trajectories(
    env: GridEnv,
    policy: Policy,
    n: int,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
) -> Trajectories:
    """Roll out ``n`` trajectories; with ``epsilon`` > 0 actions come from (1-ε)·policy + ε·uniform(valid)."""
    device = env.device
    states = env.initial_states(n)
    carry = policy.start(n)
    max_len = env.max_trajectory_length
    all_states = torch.zeros(n, max_len + 1, env.ndim, dtype=torch.long, device=device)
    actions = torch.full((n, max_len), -1, dtype=torch.long, device=device)
    length = torch.zeros(n, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    all_states[:, 0] = states
    for t in range(max_len):
        active = torch.nonzero(~done).squeeze(1)
        if active.numel() == 0:
            break
        s = states[active]
        logp = policy.log_probs(s, None if carry is None else _select(carry, active))
        if epsilon > 0:
            mask = env.forward_mask(s)
            uniform = torch.log(mask.double() / mask.sum(-1, keepdim=True))
            logp = torch.logaddexp(logp.double() + torch.log1p(torch.tensor(-epsilon, dtype=torch.float64)),
                                   uniform + torch.log(torch.tensor(epsilon, dtype=torch.float64)))
        a = sample_categorical(logp, generator)
        nxt = env.step(s, a)
        if carry is not None:
            carry = _scatter(carry, active, policy.advance(_select(carry, active), s, a, nxt))
        actions[active, t] = a
        stopped = a == env.stop_action
        length[active] = t + 1
        states[active] = nxt
        all_states[active, t + 1] = nxt
        done[active[stopped]] = True
    return Trajectories(all_states, actions, length)


def _select(carry: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return carry[idx]


def _scatter(carry: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    carry = carry.clone()
    carry[idx] = values
    return carry


def terminal_histogram(env: GridEnv, traj: Trajectories) -> torch.Tensor:
    """Empirical terminal distribution of a batch, shape ``(H,)*ndim`` (float64)."""
    counts = torch.bincount(env.flat_index(traj.terminal_states), minlength=env.n_states).double()
    return (counts / counts.sum()).reshape(env.shape)


@torch.no_grad()
def rollout_from_tables(
    env: GridEnv, log_pf: torch.Tensor, row_offset: torch.Tensor, epsilon: float = 0.0, gen: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Roll out one trajectory per entry of ``row_offset`` from stacked policy tables (trajectory b reads rows
    ``row_offset[b] + flat state index`` of ``log_pf``). Returns (flat state indices ``[B, T+1]``, actions
    ``[B, T]`` (-1 after stop), valid-step mask ``[B, T]``). ε-exploration only affects which actions are drawn."""
    n = len(row_offset)
    t_max = env.max_trajectory_length
    strides = env._strides
    cur = torch.zeros(n, dtype=torch.long, device=log_pf.device)
    coords = torch.zeros(n, env.ndim, dtype=torch.long, device=log_pf.device)
    traj = torch.zeros(n, t_max + 1, dtype=torch.long, device=log_pf.device)
    actions = torch.full((n, t_max), -1, dtype=torch.long, device=log_pf.device)
    done = torch.zeros(n, dtype=torch.bool, device=log_pf.device)
    base = row_offset
    log_eps, log_keep = math.log(epsilon) if epsilon > 0 else None, math.log1p(-epsilon)
    for t in range(t_max):
        logp = log_pf[base + cur]
        if log_eps is not None:
            valid = torch.isfinite(logp)
            uniform = torch.log(valid.double() / valid.sum(-1, keepdim=True))
            logp = torch.logaddexp(logp + log_keep, uniform + log_eps)
        a = sample_categorical(logp, gen)
        a = torch.where(done, torch.full_like(a, -1), a)
        actions[:, t] = a
        move = (a >= 0) & (a < env.ndim)
        coords = coords + torch.nn.functional.one_hot(a.clamp(0, env.ndim), env.ndim + 1)[:, : env.ndim] * move[:, None]
        cur = (coords * strides).sum(-1)
        traj[:, t + 1] = cur
        done = done | (a == env.stop_action)
        if bool(done.all()):
            break
    return traj, actions, actions >= 0
