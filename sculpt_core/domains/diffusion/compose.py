r"""Composition methods as score fields: what drives the reverse SDE of a composed sampler.

The seam is small so that learned networks stand in for the exact specs later:

- a **score model** (:class:`ScoreModel`) gives s_i(x, t) ≈ ∇ log p_{i,t}(x); an exact spec is one
  (:class:`ExactScoreModel`, which also offers ``log_prob``), a trained score network will be another;
- a **label posterior** (:class:`LabelPosterior`) gives log Q(y_1 = i | x_t) and ∇_x log Q(y_obs | x_t); the
  exact one comes from quadrature (:class:`ExactLabelPosterior`), a time-conditioned classifier plugs in the
  same way (its gradient by autograd);
- a **score field** (:class:`ScoreField`) is what a sampler integrates: ``start(x)`` gives the per-particle
  carry, ``score(x, t, carry, noise, dt)`` the drift score of the step about to be taken (``noise`` and ``dt``
  are that step's, for fields whose weights depend on them) and ``advance`` updates the carry.

Methods:

- ``oracle``: Σ_i Q(y_1 = i | x_t) s_i + γ ∇ log Q(y | x_t) with the exact posterior (γ = 1: the exact
  composed score; for mixtures the second term vanishes and the weights are the exact posterior);
- ``classifier``: the same with a learned time-conditioned classifier (``classifier.py``), the paper's method;
- ``score-sum``: Σ_i s_i, the common shortcut; it is NOT the score of the diffused composed target;
- ``base``: one model alone;
- ``superdiff``: training-free superposition: every model's log-density is tracked along the trajectory
  by the Itô density estimator  d log p_{i,t}(x_t) = ⟨dx, s_i⟩ − ½ g² |s_i|² dτ  (reverse time, VE SDE), and
  the weights κ follow from it: OR (mixture) κ = softmax(log ω_i + ℓ_i); AND (``--y 1,2[,3..]``, every base
  once) the κ that keeps ℓ_1 = … = ℓ_m after every step (:func:`and_weights`; a target that differs from the
  harmonic mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.domains.diffusion.exact import ExactComposition, gmm_log_prob, gmm_score
from sculpt_core.domains.diffusion.sde import SDE, VESDE
from sculpt_core.domains.diffusion.spec import GaussianMixture
from sculpt_core.errors import SculptError

METHODS = ("oracle", "classifier", "superdiff", "score-sum", "base")


# ----- the seam -------------------------------------------------------------------------------------
@runtime_checkable
class ScoreModel(Protocol):
    """s(x, t) ≈ ∇_x log p_t(x) for a batch ``x`` ``[N, 2]`` at time ``t`` (a float)."""

    name: str

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor: ...


@runtime_checkable
class DensityModel(ScoreModel, Protocol):
    """A score model that also knows its log-density log p_t(x) ``[N]`` (exact specs do)."""

    def log_prob(self, x: torch.Tensor, t: float) -> torch.Tensor: ...


@runtime_checkable
class LabelPosterior(Protocol):
    """log Q(y_1 = i | x_t) ``[N, m]`` and ∇_x log Q(y_obs | x_t) ``[N, 2]`` (None when nothing is observed),
    both at once (a learned classifier gets them from one forward and backward pass)."""

    def weights_and_grad(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@runtime_checkable
class ScoreField(Protocol):
    """What a sampler integrates (see the module docstring)."""

    def start(self, x: torch.Tensor) -> Any: ...

    def score(self, x: torch.Tensor, t: float, carry: Any, noise: torch.Tensor | None = None,
              dt: float | None = None) -> torch.Tensor: ...

    def advance(self, carry: Any, x: torch.Tensor, x_next: torch.Tensor, t: float, dt: float) -> Any: ...


def all_scores(models: list[ScoreModel], x: torch.Tensor, t: float) -> list[torch.Tensor]:
    """s_i(x, t) of every model; models that can score a group at once (``score_group``: bases sharing one
    network, e.g. the image family) do so in one batched pass."""
    group = getattr(models[0], "score_group", None) if models else None
    if group is not None:
        out = group(models, x, t)
        if out is not None:
            return out
    return [m.score(x, t) for m in models]


# ----- exact pieces ---------------------------------------------------------------------------------
class ExactScoreModel:
    """A Gaussian-mixture spec as a diffusion model: closed-form score and log-density at every t."""

    def __init__(self, spec: GaussianMixture, sde: VESDE = SDE, device: torch.device | str = "cpu") -> None:
        self.spec = spec.to(device)
        self.name = spec.name
        self.sde = sde

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return gmm_score(self.spec, x, self.sde.marginal_std(t) ** 2)

    def log_prob(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return gmm_log_prob(self.spec, x, self.sde.marginal_std(t) ** 2)


class ExactLabelPosterior:
    """The exact label posterior of the diffused augmented model (quadrature over x_0, ``exact.py``)."""

    def __init__(self, exact: ExactComposition, sde: VESDE = SDE) -> None:
        self.exact = exact
        self.sde = sde

    def weights_and_grad(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        sigma = self.sde.marginal_std(t)
        log_w = self.exact.mixture_log_weights(x, sigma)
        return log_w, None if self.exact.closed_form else self.exact.grad_log_label_posterior(x, sigma)


# ----- fields ---------------------------------------------------------------------------------------
class _Stateless:
    needs_em = False

    def start(self, x: torch.Tensor) -> None:
        return None

    def advance(self, carry: Any, x: torch.Tensor, x_next: torch.Tensor, t: float, dt: float) -> Any:
        return carry


class BaseField(_Stateless):
    """One model alone."""

    def __init__(self, model: ScoreModel) -> None:
        self.model = model

    def score(self, x, t, carry, noise=None, dt=None):
        return self.model.score(x, t)


class ScoreSumField(_Stateless):
    """Σ_i s_i(x, t): the score of the product of the diffused densities, not of the diffused product."""

    def __init__(self, models: list[ScoreModel]) -> None:
        self.models = models

    def score(self, x, t, carry, noise=None, dt=None):
        return sum(all_scores(self.models, x, t))


class GuidedField(_Stateless):
    """Σ_i Q(y_1 = i | x_t) s_i(x, t) + γ ∇ log Q(y | x_t)."""

    def __init__(self, models: list[ScoreModel], posterior: LabelPosterior, gamma: float = 1.0) -> None:
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
            raise SculptError(f"the guidance scale γ must be a positive number, got {gamma!r}")
        self.models = models
        self.posterior = posterior
        self.gamma = float(gamma)

    def score(self, x, t, carry, noise=None, dt=None):
        log_w, grad = self.posterior.weights_and_grad(x, t)
        w = log_w.exp().reshape(len(x), -1, *([1] * (x.dim() - 1)))  # [N, m, 1, ...]: broadcasts over points or images
        out = sum(w[:, i] * s for i, s in enumerate(all_scores(self.models, x, t)))
        return out if grad is None else out + self.gamma * grad


@dataclass
class SuperDiffState:
    """Per-particle tracked log-densities ℓ_i ``[N, m]`` and the base scores of the step being taken."""

    log_q: torch.Tensor
    scores: torch.Tensor | None = None


class SuperDiffField:
    """SuperDiff OR (``mode="or"``: mixture with weights ω) or AND (``mode="and"``: every model at equal density)."""

    needs_em = True  # the density estimator follows the stochastic path of an Euler–Maruyama sampler

    def __init__(self, models: list[ScoreModel], mode: str, log_weights: torch.Tensor | None = None,
                 sde: VESDE = SDE) -> None:
        if mode not in ("or", "and"):
            raise SculptError(f"superdiff mode must be 'or' or 'and', got {mode!r}")
        if mode == "and" and len(models) < 2:
            raise SculptError("superdiff AND needs at least two models")
        self.models = models
        self.mode = mode
        self.sde = sde
        m = len(models)
        self.log_w = (torch.full((m,), -math.log(m), dtype=torch.float64) if log_weights is None
                      else log_weights.double().cpu())

    def start(self, x: torch.Tensor) -> SuperDiffState:
        """ℓ_i(x_1): the model's own log-density where it has one, else 0 (the shared prior cancels)."""
        cols = [m.log_prob(x, 1.0) if isinstance(m, DensityModel) else torch.zeros(len(x), dtype=torch.float64,
                                                                                      device=x.device)
                for m in self.models]
        return SuperDiffState(torch.stack(cols, 1))

    def score(self, x, t, carry: SuperDiffState, noise=None, dt=None):
        s = torch.stack(all_scores(self.models, x, t), 1)  # [N, m, *D]
        carry.scores = s
        if self.mode == "or":
            kappa = torch.softmax(carry.log_q + self.log_w.to(x.device), 1)
        else:
            if dt is None:
                raise SculptError("superdiff AND needs the step size")
            kappa = and_weights(s.flatten(2), carry.log_q, float(self.sde.diffusion(t)), dt,
                                None if noise is None else noise.flatten(1))
        return (kappa.reshape(kappa.shape + (1,) * (s.dim() - 2)) * s).sum(1)

    def advance(self, carry: SuperDiffState, x, x_next, t, dt):
        g2 = float(self.sde.diffusion(t)) ** 2
        s = carry.scores.flatten(2)
        dl = ((x_next - x).flatten(1)[:, None, :] * s).sum(-1) - 0.5 * g2 * dt * (s ** 2).sum(-1)
        return SuperDiffState(carry.log_q + dl)


def and_weights(s: torch.Tensor, log_q: torch.Tensor, g: float, dt: float, z: torch.Tensor | None) -> torch.Tensor:
    r"""SuperDiff AND weights κ ``[N, m]`` (Σ κ = 1) that keep every tracked log-density equal after the step.

    With the step dx = g² Δ Σ_j κ_j s_j + g √Δ z, each ℓ_i moves by ⟨dx, s_i⟩ − ½ g² Δ |s_i|², so ℓ_i + dℓ_i =
    ℓ_1 + dℓ_1 (i = 2..m) is linear in κ:  g² Δ Σ_j κ_j ⟨s_j, s_i − s_1⟩ = ℓ_1 − ℓ_i + g √Δ ⟨z, s_1 − s_i⟩ +
    ½ g² Δ (|s_i|² − |s_1|²). Two models have the closed form κ_1 = ½ + (ℓ_2 − ℓ_1 − g √Δ ⟨z, d⟩) / (g² Δ |d|²),
    d = s_1 − s_2; more models solve the (m − 1) equations with Σ κ = 1 per particle (least squares with a
    small ridge towards equal weights where the scores are nearly dependent). ``s`` ``[N, m, D]``, ``z`` ``[N, D]``."""
    n, m, _ = s.shape
    if m == 2:
        d = s[:, 0] - s[:, 1]
        d2 = (d ** 2).sum(1)
        z_term = 0.0 if z is None else g * math.sqrt(dt) * (z * d).sum(1)
        num = (log_q[:, 1] - log_q[:, 0]) - z_term
        k1 = torch.where(d2 > 1e-12, 0.5 + num / (g * g * dt * d2.clamp_min(1e-12)), torch.full_like(d2, 0.5))
        return torch.stack([k1, 1 - k1], 1)
    diff = s[:, 1:] - s[:, :1]  # [N, m-1, D]: s_i − s_1
    a = g * g * dt * torch.einsum("njd,nid->nij", s, diff)  # [N, m-1, m]
    sq = (s ** 2).sum(-1)
    b = (log_q[:, :1] - log_q[:, 1:]) + 0.5 * g * g * dt * (sq[:, 1:] - sq[:, :1])
    if z is not None:
        b = b - g * math.sqrt(dt) * torch.einsum("nd,nid->ni", z, diff)
    a = torch.cat([a, torch.ones(n, 1, m, dtype=s.dtype, device=s.device)], 1)  # append Σ κ = 1
    b = torch.cat([b, torch.ones(n, 1, dtype=s.dtype, device=s.device)], 1)
    ridge = 1e-9 * a.abs().amax((1, 2), keepdim=True).clamp_min(1e-30)
    eye = torch.eye(m, dtype=s.dtype, device=s.device)
    lhs = a.transpose(1, 2) @ a + ridge * eye
    rhs = (a.transpose(1, 2) @ b[..., None])[..., 0] + ridge[..., 0] * (1.0 / m)
    return torch.linalg.solve(lhs, rhs)


# ----- building a method ----------------------------------------------------------------------------
def build_field(method: str, models: list[ScoreModel], composition: Composition,
                posterior: LabelPosterior | None = None, gamma: float = 1.0, model_index: int = 1,
                sde: VESDE = SDE, classifier: LabelPosterior | None = None) -> ScoreField:
    """The score field of ``method`` for ``composition`` over ``models`` (see the module docstring);
    ``posterior``: the exact label posterior (oracle), ``classifier``: a learned one (classifier)."""
    m = len(models)
    if m != composition.n_models:
        raise SculptError(f"{composition.describe()} needs {composition.n_models} bases, got {m}")
    if method == "oracle":
        if posterior is None:
            raise SculptError("the oracle needs the exact label posterior")
        return GuidedField(models, posterior, gamma)
    if method == "classifier":
        if classifier is None:
            raise SculptError("no guidance classifier for these bases: train one with "
                              "`python -m sculpt_core diffusion train-classifier`")
        return GuidedField(models, classifier, gamma)
    if method == "score-sum":
        if m < 2:
            raise SculptError("score-sum needs at least two bases")
        return ScoreSumField(models)
    if method == "base":
        if not (isinstance(model_index, int) and 1 <= model_index <= m):
            raise SculptError(f"--model must be a base index in 1..{m}, got {model_index!r}")
        return BaseField(models[model_index - 1])
    if method == "superdiff":
        if composition.kind in ("mixture", "linear"):
            return SuperDiffField(models, "or", composition.prior_log_weights(torch.zeros(m, dtype=torch.float64)), sde)
        if (composition.kind == "labels" and m >= 2 and sorted(composition.labels) == list(range(1, m + 1))
                and composition.alpha is None):
            return SuperDiffField(models, "and", sde=sde)
        raise SculptError("superdiff composes a mixture (--weights) or the AND of all bases (--y 1,2[,3...], each base "
                          f"once); {composition.describe()} is neither")
    raise SculptError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
