"""One vectorised roll-out loop for every domain: a whole batch of trajectories advances one step per iteration.

The loop (:func:`rollout`) only needs an environment and a policy with the interfaces of
:mod:`sculpt_core.core.protocols`, and a :class:`StateStore` that says how a batch of states is indexed and
recorded: a tensor ``[B, ...]`` (:class:`TensorStore`, e.g. grid cells) or a list of objects
(:class:`ListStore`, e.g. fragment graphs). Each step it takes the active (not yet stopped) trajectories,
asks the policy for masked log-probs, optionally mixes in ε-uniform exploration over valid actions, draws by
Gumbel-max, steps the environment, advances the policy's per-trajectory carry, and drops the trajectories
that took the stop action. One generator draw per step, always in the same order, so a seed fixes the result.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Protocol

import torch

from sculpt_core.core.limits import MAX_TRAJECTORIES, check_int, check_seed
from sculpt_core.core.protocols import Env, Policy
from sculpt_core.errors import SculptError


def sample_categorical(log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row by the Gumbel-max trick (works on unnormalised log-weights, -inf = impossible)."""
    u = torch.rand(log_probs.shape, generator=generator, device=log_probs.device, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
    return torch.argmax(log_probs.double() + gumbel, dim=-1)


class StateStore(Protocol):
    """Where the roll-out keeps the current state and the path of every trajectory."""

    def current(self, idx: torch.Tensor) -> Any:
        """The current states of trajectories ``idx`` (a batch the env and policy take)."""
        ...

    def record(self, idx: torch.Tensor, t: int, next_states: Any) -> None:
        """Trajectories ``idx`` moved to ``next_states`` by their action number ``t``."""
        ...


class TensorStore:
    """States as a tensor ``[n, *state_shape]``; paths padded to ``[n, max_len + 1, *state_shape]``."""

    def __init__(self, initial: torch.Tensor, max_len: int) -> None:
        self.states = initial.clone()
        self.paths = torch.zeros((initial.shape[0], max_len + 1) + tuple(initial.shape[1:]), dtype=initial.dtype,
                                 device=initial.device)
        self.paths[:, 0] = initial

    def current(self, idx: torch.Tensor) -> torch.Tensor:
        return self.states[idx]

    def record(self, idx: torch.Tensor, t: int, next_states: torch.Tensor) -> None:
        self.states[idx] = next_states
        self.paths[idx, t + 1] = next_states


class ListStore:
    """States as a list of objects; ``paths[b]`` lists trajectory b's states (its length = actions taken + 1)."""

    def __init__(self, initial: list) -> None:
        self.states = list(initial)
        self.paths: list[list] = [[s] for s in initial]

    def current(self, idx: torch.Tensor) -> list:
        return [self.states[i] for i in idx.tolist()]

    def record(self, idx: torch.Tensor, t: int, next_states: list) -> None:
        for k, i in enumerate(idx.tolist()):
            self.states[i] = next_states[k]
            self.paths[i].append(next_states[k])


def seeded_generator(seed: Any, device: torch.device | str | None = None) -> torch.Generator:
    """A torch generator seeded with ``seed`` (an integer in [0, 2^63 − 1]; SculptError otherwise, where
    torch would raise an overflow error)."""
    gen = torch.Generator() if device is None else torch.Generator(device=device)
    return gen.manual_seed(check_seed(seed))


def check_rollout_args(n: Any, epsilon: float) -> None:
    """SculptError unless ``n`` is a positive integer (at most :data:`~sculpt_core.core.limits.MAX_TRAJECTORIES`,
    checked before the ``[n, T]`` buffers are allocated) and 0 ≤ ε < 1."""
    if not (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1):
        raise SculptError(f"number of trajectories must be a positive integer, got {n!r}")
    check_int(int(n), "number of trajectories", 1, MAX_TRAJECTORIES, "trajectories per roll-out")
    if not 0.0 <= epsilon < 1.0:
        raise SculptError(f"epsilon must be in [0, 1), got {epsilon}")


@torch.no_grad()
def rollout(
    env: Env,
    policy: Policy,
    n: int,
    store: StateStore,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll out ``n`` trajectories from the states already in ``store``; returns (actions ``[n, T]``, −1 after
    stop, and lengths ``[n]`` = actions taken including stop), both on ``device`` (CPU by default), where the
    draws are made too. With ``epsilon`` > 0 actions come from (1−ε)·policy + ε·uniform(valid actions)
    (training exploration). SculptError if the policy leaves a state without a valid action or a trajectory
    does not stop within ``env.max_trajectory_length`` actions."""
    check_rollout_args(n, epsilon)
    device = torch.device("cpu") if device is None else torch.device(device)
    max_len = env.max_trajectory_length
    actions = torch.full((n, max_len), -1, dtype=torch.long, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    carry = policy.start(n)
    active = torch.arange(n, device=device)
    log_keep = math.log1p(-epsilon)
    log_eps = math.log(epsilon) if epsilon > 0 else None
    for t in range(max_len):
        if active.numel() == 0:
            break
        cur = store.current(active)
        sub = None if carry is None else carry[active.to(carry.device)]
        logp = policy.log_probs(cur, sub).detach().double().to(device)
        if log_eps is not None:
            mask = env.forward_mask(cur).to(device)
            uniform = torch.log(mask.double() / mask.sum(-1, keepdim=True))
            logp = torch.logaddexp(logp + log_keep, uniform + log_eps)
        if not torch.isfinite(logp).any(-1).all():
            raise SculptError("the policy gave no valid action to some state (all log-probs -inf or NaN)")
        a = sample_categorical(logp, generator)
        nxt = env.step(cur, a)
        if carry is not None:
            new = policy.advance(sub, cur, a, nxt)
            carry = carry.clone()
            carry[active.to(carry.device)] = new
        actions[active, t] = a
        lengths[active] = t + 1
        store.record(active, t, nxt)
        active = active[a != env.stop_action]
    if active.numel():
        raise SculptError(f"{active.numel()} trajectories did not stop within {max_len} steps")
    return actions, lengths


__all__ = ["ListStore", "Policy", "StateStore", "TensorStore", "check_rollout_args", "rollout", "sample_categorical",
           "seeded_generator"]
