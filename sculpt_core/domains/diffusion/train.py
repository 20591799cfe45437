r"""Denoising score matching of a :class:`ScoreBaseModel` on a Gaussian-mixture spec, and its score error.

Every step draws a fresh batch x_0 ~ spec (exact draws, ``GaussianMixture.sample``), t ~ U[ε, 1] and
ε ~ N(0, I), forms x_t = x_0 + σ(t) ε and minimises the σ(t)²-weighted DSM loss

    σ(t)² |s_θ(x_t, t) + ε / σ(t)|² = |F_θ + ε|²    (F_θ = σ(t) s_θ, ``model.py``),

with Adam and a cosine learning-rate decay. Its minimum is not zero: it equals E|σ ∇ log p_t + ε|², the
irreducible part, so the loss alone does not say how close the score is. :func:`score_error` measures that
against the exact diffused score of the spec (closed form, ``exact.py``):

- ``grid``: relative L2 error ‖σ s_θ − σ s‖ / ‖σ s‖ over a regular grid of ``points`` × ``points`` positions
  on [−L, L]² (L = 3.5), separately at each t of ``times`` (0.01, 0.05, 0.2, 0.5, 1); at small t most of the
  square is far from every mode, where the network never sees data and the exact score is steep, so the
  small-t grid figures are the hard part and t ≥ 0.2 the easy part;
- ``data``: the same ratio weighted by the diffused law p_t itself (fixed exact draws of x_t, ``n_data`` per
  t): the error where samplers actually go;
- ``score_error`` (the headline): the mean of the per-t ``data`` figures; ``score_error_grid`` the mean of
  the per-t ``grid`` figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from sculpt_core.domains.diffusion.exact import gmm_score
from sculpt_core.domains.diffusion.model import (
    ScoreBaseModel,
    ScoreNetConfig,
    new_model,
)
from sculpt_core.domains.diffusion.spec import GaussianMixture
from sculpt_core.errors import SculptError

EVAL_TIMES = (0.01, 0.05, 0.2, 0.5, 1.0)
EVAL_EXTENT = 3.5
EVAL_POINTS = 29
MAX_TRAIN_STEPS = 200_000


@torch.no_grad()
def score_error(model: ScoreBaseModel, spec: GaussianMixture, times: tuple[float, ...] = EVAL_TIMES,
                extent: float = EVAL_EXTENT, points: int = EVAL_POINTS, n_data: int = 4000,
                seed: int = 12345) -> dict:
    """Relative L2 errors of σ(t) s_θ against the exact σ(t) ∇ log p_t (see the module docstring)."""
    sde = model.sde
    spec = spec.to("cpu")
    g = torch.linspace(-extent, extent, points, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    gen = torch.Generator().manual_seed(int(seed))
    per_grid: dict[str, float] = {}
    per_data: dict[str, float] = {}
    for t in times:
        sigma = float(sde.marginal_std(t))
        for x, out in ((grid, per_grid), (None, per_data)):
            if x is None:
                x = spec.sample(n_data, gen) + sigma * torch.randn(n_data, 2, dtype=torch.float64, generator=gen)
            exact = sigma * gmm_score(spec, x, sigma ** 2)
            learned = sigma * model.score(x, t).cpu()
            out[f"{t:g}"] = float((learned - exact).norm() / exact.norm().clamp_min(1e-300))
    return {
        "score_error": round(sum(per_data.values()) / len(per_data), 5),
        "score_error_grid": round(sum(per_grid.values()) / len(per_grid), 5),
        "score_error_by_t": {k: round(v, 5) for k, v in per_data.items()},
        "score_error_grid_by_t": {k: round(v, 5) for k, v in per_grid.items()},
        "score_grid": {"extent": extent, "points": points, "times": list(times), "n_data": n_data},
    }


def check_train_args(steps: int, batch: int, lr: float) -> None:
    """SculptError unless 1 ≤ steps ≤ MAX_TRAIN_STEPS, 1 ≤ batch ≤ 2¹⁶ and lr is a positive number."""
    if not (isinstance(steps, int) and 1 <= steps <= MAX_TRAIN_STEPS):
        raise SculptError(f"steps must be an integer in 1..{MAX_TRAIN_STEPS}, got {steps!r}")
    if not (isinstance(batch, int) and 1 <= batch <= 65536):
        raise SculptError(f"batch must be an integer in 1..65536, got {batch!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and 0 < lr <= 1):
        raise SculptError(f"lr must be a number in (0, 1], got {lr!r}")


def train_dsm(spec: GaussianMixture, steps: int = 4000, batch: int = 1024, lr: float = 2e-3, seed: int = 0,
              cfg: ScoreNetConfig | None = None, device: torch.device | str = "cpu",
              progress: Callable[[int, dict], None] | None = None, progress_every: int = 50,
              evaluate: bool = True) -> ScoreBaseModel:
    """Train a fresh score model on ``spec`` by σ²-weighted DSM; seeded (network and data from ``seed``).

    ``progress(step, {"loss": ...})`` is called every ``progress_every`` steps and at the end. The model's
    ``meta`` gets the settings, ``final_loss`` (mean of the last min(100, steps) batch losses), ``seconds``
    (training alone) and, with ``evaluate``, the figures of :func:`score_error`."""
    check_train_args(steps, batch, lr)
    device = torch.device(device)
    model = new_model(spec, cfg, seed=seed).to(device)
    net, sde = model.net, model.sde
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    gen = torch.Generator().manual_seed(int(seed) + 1)
    src = spec.to("cpu")
    tail = max(1, min(100, steps))
    recent: list[float] = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        x0 = src.sample(batch, gen).float()
        t = sde.t_eps + (1 - sde.t_eps) * torch.rand(batch, generator=gen)
        z = torch.randn(batch, 2, generator=gen)
        sigma = sde.marginal_std(t)
        x0, sigma, z = x0.to(device), sigma.to(device), z.to(device)
        out = net.scaled(x0 + sigma[:, None] * z, sigma)
        loss = ((out + z) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise SculptError(f"training diverged at step {step} (loss {value}); try a smaller lr")
        recent.append(value)
        if len(recent) > tail:
            recent.pop(0)
        if progress is not None and (step % progress_every == 0 or step == steps):
            progress(step, {"loss": sum(recent) / len(recent)})
    seconds = time.perf_counter() - t0
    net.eval()
    model.meta.update({"steps": steps, "batch": batch, "lr": lr, "seed": seed, "loss": "dsm-sigma2",
                       "final_loss": round(sum(recent) / len(recent), 6), "seconds": round(seconds, 3)})
    if evaluate:
        model.meta.update(score_error(model, spec))
    return model
