"""GFlowNet objectives as pure functions of per-trajectory / per-transition log-quantities."""

from __future__ import annotations

import torch


def trajectory_balance_loss(
    log_z: torch.Tensor, sum_log_pf: torch.Tensor, sum_log_pb: torch.Tensor, log_reward: torch.Tensor
) -> torch.Tensor:
    """TB: mean over trajectories of (log Z + Σ log p_F − Σ log p_B − log R(x))²."""
    return (log_z + sum_log_pf - sum_log_pb - log_reward).pow(2).mean()


def detailed_balance_loss(
    log_flow_s: torch.Tensor,
    log_pf: torch.Tensor,
    log_flow_next: torch.Tensor,
    log_pb: torch.Tensor,
) -> torch.Tensor:
    """DB: mean over transitions of (log F(s) + log p_F(s'|s) − log F(s') − log p_B(s|s'))².

    For the stop transition pass log F(s') = log R(x) and log p_B = 0 (the terminal flow is the reward).
    """
    return (log_flow_s + log_pf - log_flow_next - log_pb).pow(2).mean()
