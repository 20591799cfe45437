r"""The forward SDE of the diffusion domain, in one place.

Variance-exploding SDE  dx = σ^t dw,  t ∈ [ε, 1],  σ = 25 (the choice of the paper's diffusion code):

- diffusion coefficient  g(t) = σ^t;
- marginal std           σ(t) = sqrt((σ^{2t} − 1) / (2 ln σ)),  so x_t = x_0 + σ(t) ε exactly (no drift);
- prior at t = 1         N(0, σ(1)² I)  (σ(1) ≈ 9.85, large against the data scale ~2).

Because the noise is additive and isotropic, the noisy marginal of a Gaussian mixture is the same mixture
with every covariance Σ_k replaced by Σ_k + σ(t)² I, which is what makes exact scores available at every t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VESDE:
    """dx = sigma^t dw on t ∈ [t_eps, 1]."""

    sigma: float = 25.0
    t_eps: float = 1e-3

    def marginal_std(self, t: float | torch.Tensor) -> float | torch.Tensor:
        """σ(t): the std of x_t − x_0."""
        if isinstance(t, torch.Tensor):
            return torch.sqrt((self.sigma ** (2 * t) - 1.0) / (2 * math.log(self.sigma)))
        return math.sqrt((self.sigma ** (2 * t) - 1.0) / (2 * math.log(self.sigma)))

    def diffusion(self, t: float | torch.Tensor) -> float | torch.Tensor:
        """g(t) = σ^t."""
        return self.sigma ** t

    @property
    def prior_std(self) -> float:
        """σ(1): the std of the reference prior N(0, σ(1)² I) at t = 1."""
        return float(self.marginal_std(1.0))

    def prior_sample(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu", shape: tuple[int, ...] = (2,)) -> torch.Tensor:
        """``n`` draws ``[n, *shape]`` of the reference prior N(0, σ(1)² I) (points ``(2,)``, images ``(3, H, W)``)."""
        return self.prior_std * torch.randn(n, *shape, dtype=torch.float64, device=device, generator=generator)

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, σ(1)² I) ``[N]`` for points ``[N, d]``."""
        var = self.prior_std ** 2
        return -0.5 * (x ** 2).sum(-1) / var - 0.5 * x.shape[-1] * math.log(2 * math.pi * var)


#: The SDE every module of the domain uses.
SDE = VESDE()
