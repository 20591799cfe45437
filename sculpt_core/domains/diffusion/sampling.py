r"""Reverse-time samplers of the VE SDE, vectorised over particles (one ``[N, *D]`` tensor: 2-D points or images).

- ``em``: Euler–Maruyama on the reverse SDE  x ← x + g(t)² s Δ + g(t) √Δ z;
- ``pc``: predictor–corrector: one Langevin corrector step (step 2 (snr · √d / mean‖s‖)², snr 0.16) at t, then
  the Euler–Maruyama predictor;
- ``ode``: Euler on the probability-flow ODE  x ← x + ½ g(t)² s Δ.

Times run on linspace(1, ε, steps + 1); the last step adds no noise (the sampler returns its mean). The field
(``compose.py``) gives the score; everything runs under ``torch.no_grad()`` (a field that needs a gradient, a
learned classifier's, enables it inside its own ``score``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from sculpt_core.domains.diffusion.compose import ScoreField
from sculpt_core.domains.diffusion.sde import SDE, VESDE
from sculpt_core.errors import SculptError

SAMPLERS = ("em", "pc", "ode")
MAX_STEPS = 5000


def time_grid(steps: int, sde: VESDE = SDE) -> torch.Tensor:
    """``steps + 1`` times from 1 down to ε."""
    return torch.linspace(1.0, sde.t_eps, steps + 1, dtype=torch.float64)


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A seeded generator on ``device`` (all draws of one run come from it)."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


@torch.no_grad()
def reverse_sample(field: ScoreField, x1: torch.Tensor, steps: int, sampler: str = "em", sde: VESDE = SDE,
                   generator: torch.Generator | None = None, snr: float = 0.16,
                   progress: Callable[[int, dict], None] | None = None) -> torch.Tensor:
    """Integrate ``field`` from the particles ``x1`` ``[N, *D]`` (points ``[N, 2]``, images ``[N, 3, H, W]``) at
    t = 1 down to t = ε; returns ``[N, *D]``.

    ``progress(step, {"t": t, "x": x})`` after every step: the time reached and the particles there (the live
    tensor: copy it to keep a snapshot, e.g. for an animation of the particles moving from noise to data)."""
    if sampler not in SAMPLERS:
        raise SculptError(f"unknown sampler {sampler!r}; one of {', '.join(SAMPLERS)}")
    if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise SculptError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    if getattr(field, "needs_em", False) and sampler != "em":
        raise SculptError("this method tracks densities along an Euler–Maruyama path: use --sampler em")
    x = x1.to(torch.float64).clone()
    times = time_grid(steps, sde).tolist()
    carry = field.start(x)

    def noise(last: bool) -> torch.Tensor:
        if last:
            return torch.zeros_like(x)
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)

    for n in range(steps):
        t, dt = times[n], times[n] - times[n + 1]
        g = float(sde.diffusion(t))
        last = n == steps - 1
        if sampler == "pc":
            s = field.score(x, t, carry)
            grad_norm = float(s.flatten(1).norm(dim=1).mean())
            eps = 2 * (snr * math.sqrt(x[0].numel()) / max(grad_norm, 1e-12)) ** 2
            x = x + eps * s + math.sqrt(2 * eps) * noise(False)
        if sampler == "ode":
            x_next = x + 0.5 * g * g * dt * field.score(x, t, carry, None, dt)
        else:
            z = noise(last)
            s = field.score(x, t, carry, z, dt)
            x_next = x + g * g * dt * s + g * math.sqrt(dt) * z
        carry = field.advance(carry, x, x_next, t, dt)
        x = x_next
        if progress is not None:
            progress(n + 1, {"t": times[n + 1], "x": x})
    if not bool(torch.isfinite(x).all()):
        raise SculptError("the sampler diverged (non-finite particles); try more steps")
    return x


PRIORS = ("exact", "gaussian")
MAX_PARTICLES = 1_000_000


def check_sample_args(n: int, steps: int, prior: str) -> None:
    """SculptError unless 1 ≤ n ≤ MAX_PARTICLES, 1 ≤ steps ≤ MAX_STEPS and ``prior`` is known."""
    if not (isinstance(n, int) and 1 <= n <= MAX_PARTICLES):
        raise SculptError(f"n must be an integer in 1..{MAX_PARTICLES}, got {n!r}")
    if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise SculptError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    if prior not in PRIORS:
        raise SculptError(f"unknown prior {prior!r}; one of {', '.join(PRIORS)}")


def sample_method(specs: list, composition, method: str, n: int, steps: int = 500, sampler: str = "em",
                  seed: int = 0, prior: str = "exact", gamma: float = 1.0, model_index: int = 1,
                  device: torch.device | str | None = None, sde: VESDE = SDE,
                  progress: Callable[[int, dict], None] | None = None, models: list | None = None,
                  classifier=None):
    """Sample ``n`` particles of ``method`` for ``composition`` over the exact ``specs``.

    ``models``: score models that stand in for the specs' exact scores (learned ones, ``model.py``), one
    per spec; the target, the start and the oracle's label posterior still come from the exact ``specs``.
    ``classifier``: the learned ``GuidanceClassifier`` of the ``classifier`` method (``classifier.py``).

    ``prior``: ``exact`` starts from the intended law's own marginal at t = 1 (the composition's: x_0 ~ q,
    then x_0 + σ(1) ε; for ``base``, that base's), so only the reverse dynamics differ between methods;
    ``gaussian`` starts from the reference prior N(0, σ(1)² I). Returns ``(samples [n, 2] float64 on the CPU,
    the ExactComposition of the target)``."""
    from sculpt_core.device import default_device
    from sculpt_core.domains.diffusion.compose import ExactLabelPosterior, ExactScoreModel, build_field
    from sculpt_core.domains.diffusion.exact import ExactComposition

    check_sample_args(n, steps, prior)
    device = torch.device(device) if device is not None else default_device()
    exact = ExactComposition(specs, composition, device)
    if models is None:
        models = [ExactScoreModel(s, sde, device) for s in specs]
    elif len(models) != len(specs):
        raise SculptError(f"{len(models)} score models for {len(specs)} specs")
    learned = None
    if method == "classifier" and classifier is not None:
        from sculpt_core.domains.diffusion.classifier import ClassifierPosterior

        learned = ClassifierPosterior(classifier.to(device), composition)
    field = build_field(method, models, composition, ExactLabelPosterior(exact, sde), gamma, model_index, sde, learned)
    gen = make_generator(seed, device)
    if prior == "gaussian":
        x1 = sde.prior_sample(n, gen, device)
    elif method == "base":
        spec = exact.bases[model_index - 1]
        x1 = spec.sample(n, gen) + sde.prior_std * torch.randn(n, 2, dtype=torch.float64, device=device, generator=gen)
    else:
        x1 = exact.sample_diffused(n, sde.prior_std, gen)
    x = reverse_sample(field, x1, steps, sampler, sde, gen, progress=progress)
    return x.cpu(), exact
