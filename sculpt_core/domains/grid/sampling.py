"""Sampling on the grid: padded trajectory batches, policy tables as policies, and the training roll-out.

:func:`sample_trajectories` is the core roll-out loop (:func:`sculpt_core.core.sampling.rollout`) with grid
states stored as a tensor; :func:`rollout_from_tables` is a leaner loop for training, reading stacked policy
tables by flat state index (no policy object, no per-step state tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from sculpt_core.core.protocols import Policy
from sculpt_core.core.sampling import TensorStore, check_rollout_args, rollout, sample_categorical
from sculpt_core.domains.grid.env import GridEnv


@dataclass
class TablePolicy:
    """A stateless policy given by a table of log-probs over all states of the grid."""

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


@torch.no_grad()
def sample_trajectories(
    env: GridEnv,
    policy: Policy,
    n: int,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
) -> Trajectories:
    """Roll out ``n`` trajectories; with ``epsilon`` > 0 actions come from (1-ε)·policy + ε·uniform(valid)."""
    check_rollout_args(n, epsilon)
    store = TensorStore(env.initial_states(n), env.max_trajectory_length)
    actions, length = rollout(env, policy, n, store, generator, epsilon, device=env.device)
    return Trajectories(store.paths, actions, length)


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
    ``[B, T]`` (-1 after stop), valid-step mask ``[B, T]``). ε-exploration only affects which actions are drawn.
    Every trajectory stays in the batch (finished ones draw and discard), which keeps the loop free of gathers."""
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


__all__ = ["TablePolicy", "Trajectories", "rollout_from_tables", "sample_trajectories", "terminal_histogram"]
