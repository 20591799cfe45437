"""The grid GFlowNet: one MLP with forward logits, backward logits and a state log-flow head, plus log Z.

Output columns of the trunk: ``[0 : ndim+1]`` forward logits (moves, stop), ``[ndim+1 : 2ndim+1]``
backward logits (used when the backward policy is learned), ``[2ndim+1]`` log F(s) (used by detailed
balance and by reaching-probability composition). An optional conditioning vector (e.g. a thermometer
encoding of β) is concatenated to the state encoding and also feeds a conditional log Z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.domains.grid.exact import normalize_log_policy
from sculpt_core.core.nets import mlp


@dataclass(frozen=True)
class GridPolicyConfig:
    """Architecture of a grid policy; stored in checkpoints."""

    height: int = 32
    ndim: int = 2
    hidden: int = 256
    n_hidden: int = 2
    cond_dim: int = 0
    learned_pb: bool = False
    flow_hidden: int = 0  # > 0: log F(s) comes from its own MLP, so training the flow never moves the policy

    def to_dict(self) -> dict:
        return asdict(self)


class GridPolicyNet(nn.Module):
    """MLP over one-hot coordinates (‖ conditioning) → forward/backward logits and log-flow; scalar or conditional log Z."""

    def __init__(self, cfg: GridPolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.env = GridEnv(cfg.height, cfg.ndim)
        self.trunk = mlp(self.env.input_dim + cfg.cond_dim, cfg.hidden, cfg.n_hidden, 2 * cfg.ndim + 2)
        if cfg.flow_hidden:
            self.flow_net = mlp(self.env.input_dim + cfg.cond_dim, cfg.flow_hidden, cfg.n_hidden, 1)
        if cfg.cond_dim:
            self.log_z_net = mlp(cfg.cond_dim, 64, 1, 1)
        else:
            self.log_z_param = nn.Parameter(torch.zeros(()))

    def raw(self, states: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised outputs ``[B, 2ndim+2]`` for a batch of states (cond ``[B, cond_dim]`` if conditional)."""
        x = self.env.encode(states)
        if self.cfg.cond_dim:
            if cond is None:
                raise ValueError("this model is conditional: pass cond")
            x = torch.cat([x, cond.expand(x.shape[0], -1)], dim=-1)
        return self.body(x)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for already-encoded inputs (state encoding ‖ conditioning)."""
        out = self.trunk(x)
        if self.cfg.flow_hidden:
            out = torch.cat([out[:, :-1], self.flow_net(x)], dim=-1)
        return out

    def log_z(self, cond: torch.Tensor | None = None) -> torch.Tensor:
        """log Z (scalar, or one per conditioning row)."""
        if self.cfg.cond_dim:
            return self.log_z_net(cond).squeeze(-1)
        return self.log_z_param

    def split(self, out: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(masked log p_F ``[B, ndim+1]``, log p_B over parents ``[B, ndim]``, log F ``[B]``), float64 policies."""
        nd = self.cfg.ndim
        log_pf = normalize_log_policy(self.env, out[:, : nd + 1], states)
        bmask = self.env.backward_mask(states)
        if self.cfg.learned_pb:
            b_logits = out[:, nd + 1 : 2 * nd + 1].double()
        else:
            b_logits = torch.zeros_like(out[:, nd + 1 : 2 * nd + 1], dtype=torch.float64)
        # s0 has no parents: keep a harmless finite row there (it is never used as a child)
        no_parent = ~bmask.any(-1, keepdim=True)
        log_pb = torch.log_softmax(b_logits.masked_fill(~bmask & ~no_parent, float("-inf")), dim=-1)
        return log_pf, log_pb, out[:, 2 * nd + 1].double()
