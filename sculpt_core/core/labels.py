"""Label posteriors of the augmented model, one copy for every domain.

In the augmented model a label y_k ∈ {1..m} names the base model that generated x. A classifier gives the
single-label terminal posterior Q(y = i | x); everything else is built from it here:

- the factorised terminal joint Q(y_1..y_n | x) = Π_k Q(y_k | x) (labels are independent given x);
- the α-likelihood of eq. 7: label y2 weights the two models by (α, 1 − α);
- the observed log-probability of a label tuple, marginalising unobserved label axes;
- the classifier-training label target: Π_{k≥2} w_{y_k}(x), the weight a trajectory of model y1 ending in x
  gives each (y_2..y_n) (the target network's terminal posterior stands in for w).
"""

from __future__ import annotations

import math

import torch

from sculpt_core.errors import SculptError


def alpha_label_log_likelihood(log_q_single: torch.Tensor, alpha: float | torch.Tensor | None) -> torch.Tensor:
    """log Q(y2 = i | x; α) ∝ (α, 1-α)_i Q(i|x) for two models (eq. 7); identity when α is None."""
    if alpha is None:
        return log_q_single
    alpha_t = torch.as_tensor(alpha, dtype=log_q_single.dtype, device=log_q_single.device).reshape(-1, 1)
    shift = torch.cat([torch.log(alpha_t), torch.log1p(-alpha_t)], 1)
    shifted = log_q_single + shift
    return shifted - torch.logsumexp(shifted, 1, keepdim=True)


def terminal_joint(log_q_single: torch.Tensor, n_labels: int, alpha: float | torch.Tensor | None = None) -> torch.Tensor:
    """Factorised terminal joint Σ_k log Q_T(y_k | x): ``[B, m, ..., m]``. With α, y2 uses the α-likelihood."""
    b, m = log_q_single.shape
    out = torch.zeros((b,) + (m,) * n_labels, dtype=log_q_single.dtype, device=log_q_single.device)
    for k in range(n_labels):
        lk = alpha_label_log_likelihood(log_q_single, alpha) if (k == 1 and alpha is not None) else log_q_single
        shape = [b] + [1] * n_labels
        shape[k + 1] = m
        out = out + lk.reshape(shape)
    return out


def observed_log_prob(log_joint: torch.Tensor, labels: tuple[int, ...]) -> torch.Tensor:
    """log Q(y_1..y_k = labels | ·) from a joint over n ≥ k label axes, marginalising the unobserved ones."""
    n_axes = log_joint.dim() - 1
    if len(labels) > n_axes:
        raise SculptError(f"this classifier knows {n_axes} labels, the composition observes {len(labels)}")
    out = log_joint
    for y in labels:
        out = out[:, y - 1]
    if out.dim() > 1:
        out = torch.logsumexp(out.flatten(1), 1)
    return out


def logit(alpha: float) -> float:
    return math.log(alpha) - math.log1p(-alpha)


def rest_label_log_weights(w_single: torch.Tensor, n_labels: int, alpha: float | torch.Tensor | None = None
                           ) -> torch.Tensor:
    """log Π_{k≥2} w_{y_k}(x) for every (y_2..y_n), row-major ``[B, m^(n−1)]`` (``[B, 1]`` zeros for one label).

    ``w_single`` ``[B, m]``: log w_i(x); label y2 uses the α-likelihood when ``alpha`` is given (a float, or one
    α per row)."""
    parts = [alpha_label_log_likelihood(w_single, alpha) if (k == 1 and alpha is not None) else w_single
             for k in range(1, n_labels)]
    if not parts:
        return torch.zeros(len(w_single), 1, dtype=w_single.dtype, device=w_single.device)
    return outer_log(parts)


def outer_log(parts: list[torch.Tensor]) -> torch.Tensor:
    """log of the outer product of per-label weight vectors ``[B, m]`` → ``[B, m^n]`` (row-major)."""
    out = parts[0]
    for p in parts[1:]:
        out = (out.unsqueeze(-1) + p.unsqueeze(1)).flatten(1)
    return out
