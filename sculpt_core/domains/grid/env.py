"""The H^ndim hypergrid: start at the origin, move +1 along one dimension, or stop.

Indexing convention (used by every array Sculpt writes): a state is an integer vector
z = (z0, z1, ...), its flat index is the row-major ``np.ravel_multi_index(z, (H,)*ndim)``, so a flat
distribution reshaped to ``(H,)*ndim`` is indexed ``p[z0, z1, ...]``. Reward formulas see
x = z / (H - 1) * 2 - 1 in [-1, 1]^ndim.

Actions: ``d in 0..ndim-1`` moves +1 along dimension d (invalid at the edge z_d = H-1);
``ndim`` is stop (always valid). Parents of z are z - e_d for every d with z_d > 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from sculpt_core.errors import SculptError


@dataclass(frozen=True)
class GridEnv:
    """An ``height``^``ndim`` grid. All methods are batched over a leading state dimension."""

    height: int = 32
    ndim: int = 2
    device: torch.device = field(default_factory=lambda: torch.device("cpu"), compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.height, int) and 2 <= self.height <= 512):
            raise SculptError(f"grid height must be an integer in [2, 512], got {self.height!r}")
        if not (isinstance(self.ndim, int) and 1 <= self.ndim <= 6):
            raise SculptError(f"grid ndim must be an integer in [1, 6], got {self.ndim!r}")
        if self.height**self.ndim > 2_000_000:
            raise SculptError("grid too large to enumerate (more than 2e6 states)")

    # ----- sizes -------------------------------------------------------------------------------
    @property
    def n_actions(self) -> int:
        return self.ndim + 1

    @property
    def stop_action(self) -> int:
        return self.ndim

    @property
    def n_states(self) -> int:
        return self.height**self.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height,) * self.ndim

    @property
    def input_dim(self) -> int:
        return self.ndim * self.height

    @property
    def max_trajectory_length(self) -> int:
        """Moves in the longest trajectory, plus the stop action."""
        return self.ndim * (self.height - 1) + 1

    # ----- states ------------------------------------------------------------------------------
    def initial_states(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.ndim, dtype=torch.long, device=self.device)

    def flat_index(self, states: torch.Tensor) -> torch.Tensor:
        """Row-major flat index of each state ``[B, ndim] -> [B]``."""
        return (states * self._strides).sum(-1)

    def from_flat(self, index: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`flat_index`."""
        return (index.unsqueeze(-1) // self._strides) % self.height

    @cached_property
    def _strides(self) -> torch.Tensor:
        return torch.tensor([self.height ** (self.ndim - 1 - d) for d in range(self.ndim)], device=self.device)

    def all_states(self) -> torch.Tensor:
        """All states ``[n_states, ndim]`` in flat-index order."""
        return self._all_states

    @cached_property
    def _all_states(self) -> torch.Tensor:
        return self.from_flat(torch.arange(self.n_states, device=self.device))

    def to_unit_cube(self, states: torch.Tensor) -> torch.Tensor:
        """Reward coordinates x = z/(H-1)*2 - 1 in [-1, 1]^ndim (float64)."""
        return states.double() / (self.height - 1) * 2 - 1

    # ----- dynamics ----------------------------------------------------------------------------
    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Bool ``[B, ndim+1]``: moves valid below the edge, stop always valid."""
        moves = states < self.height - 1
        return torch.cat([moves, torch.ones_like(moves[:, :1])], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Bool ``[B, ndim]``: parent z - e_d exists iff z_d > 0."""
        return states > 0

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Apply moves; the stop action (and any invalid move) leaves the state unchanged."""
        move = torch.nn.functional.one_hot(actions.clamp(max=self.ndim), self.ndim + 1)[:, : self.ndim]
        nxt = states + move
        return torch.where(nxt < self.height, nxt, states)

    def log_n_parents(self, states: torch.Tensor) -> torch.Tensor:
        """log(#parents); 0 at s0 (which has none) so the value is harmless there."""
        return self.backward_mask(states).sum(-1).clamp(min=1).double().log()

    def encode(self, states: torch.Tensor) -> torch.Tensor:
        """Concatenated one-hots of the coordinates: ``[B, ndim*H]`` float32."""
        return torch.nn.functional.one_hot(states, self.height).flatten(1).float()

    # ----- topology for exact dynamic programming -----------------------------------------------
    @cached_property
    def level_tables(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """For each anti-diagonal level L >= 1 (sum of coordinates): (flat indices of its states,
        flat indices of their parents ``[n, ndim]`` (0 where missing), parent-exists mask ``[n, ndim]``).
        Every parent of a level-L state lies on level L-1, so levels are a topological order."""
        states = self.all_states()
        level = states.sum(-1)
        tables = []
        for lv in range(1, int(level.max()) + 1):
            idx = torch.nonzero(level == lv).squeeze(1)
            zs = states[idx]
            exists = zs > 0
            parents = zs.unsqueeze(1) - torch.eye(self.ndim, dtype=torch.long, device=self.device)
            parent_idx = self.flat_index(parents.clamp(min=0))
            tables.append((idx, torch.where(exists, parent_idx, 0), exists))
        return tables

    @cached_property
    def child_index(self) -> torch.Tensor:
        """Flat index of z + e_d for every state and dimension ``[n_states, ndim]`` (clamped at the edge, where
        the move is invalid anyway)."""
        states = self.all_states()
        cols = []
        for d in range(self.ndim):
            child = states.clone()
            child[:, d] = (child[:, d] + 1).clamp(max=self.height - 1)
            cols.append(self.flat_index(child))
        return torch.stack(cols, dim=1)
