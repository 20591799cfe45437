"""The environment interface shared by every domain (grid, fragments).

A state batch is whatever tensor/list type the environment uses; composition code only needs
forward masks, successor states, encodings and backward (parent) counts, so it never inspects states.
Action ``env.stop_action`` (always the last index for fixed-action environments) terminates.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch


class Env(Protocol):
    """Minimal contract that samplers, trainers and composition code rely on."""

    n_actions: int
    stop_action: int

    def initial_states(self, n: int) -> torch.Tensor:
        """A batch of ``n`` copies of the start state s0."""
        ...

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Bool ``[B, n_actions]``: which actions are valid in each state."""
        ...

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Successor states for non-stop ``actions`` (stop leaves the state unchanged)."""
        ...

    def log_n_parents(self, states: torch.Tensor) -> torch.Tensor:
        """log of the number of parents of each state (uniform backward policy is its negative)."""
        ...

    def encode(self, states: torch.Tensor) -> torch.Tensor:
        """Float features for the policy network, ``[B, input_dim]``."""
        ...


class EnumerableEnv(Env, Protocol):
    """An environment whose states can all be listed: exact distributions by dynamic programming."""

    n_states: int

    def all_states(self) -> torch.Tensor:
        """Every state, in flat-index order."""
        ...

    def levels(self) -> Sequence[torch.Tensor]:
        """Flat indices of states grouped in topological levels (all parents in earlier levels)."""
        ...
