r"""Training a time-conditioned guidance classifier: the diffusion analogue of Algorithm A.1.

Data: trajectories of every base model's own reverse SDE (Euler–Maruyama from the reference prior
N(0, σ(1)² I), ``pool_steps`` steps), ``trajectories`` per base, every state kept; the pool is redrawn every
``refresh_every`` optimiser steps. A trajectory of base i has label y_1 = i; its final state x_ε is the
terminal object. Per optimiser step, for every base i and ``batch`` random (trajectory, step) pairs:

- terminal loss     L_T = −mean log Q(y_1 = i | x_ε, ε)  (the y1-marginal of the joint at t = ε);
- non-terminal      L_N = −mean Σ_{y_2..y_n} Π_{k≥2} w_{y_k}(x_ε) log Q(y_1 = i, y_2..y_n | x_t, t),
  w = the *target* network's terminal posterior at the trajectory's own final state (label y_2 α-tilted by a
  random α per pair when α-conditioned, the label target of ``core.labels``);
- L = mean over bases of L_T + min(1, step / warmup) L_N; Adam with cosine decay; target ← EMA of the online
  network.

Unlike on a DAG, this fixed point IS the label posterior of the augmented diffused model: every base shares
the same forward (noising) process, so model i's continuation from x_t is its posterior p_i(x_0 | x_t), and
Σ_i Q(y_1 = i | x_t) E_i[Π w(x_0) | x_t] = p̃(y | x_t).

:func:`posterior_error` measures the trained classifier against the exact posterior of the bases' specs
(quadrature, ``exact.py``): total variation of the y1-posterior and of the observed labels' probability on
draws of the diffused mixture at several t.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from sculpt_core.core import algebra as A
from sculpt_core.core.labels import rest_label_log_weights
from sculpt_core.domains.diffusion.classifier import (
    DiffusionClassifierConfig,
    GuidanceClassifier,
    classifier_from_config,
    base_fingerprint,
)
from sculpt_core.domains.diffusion.compose import BaseField, ScoreModel
from sculpt_core.domains.diffusion.sampling import reverse_sample
from sculpt_core.domains.diffusion.sde import SDE, VESDE
from sculpt_core.domains.diffusion.spec import GaussianMixture
from sculpt_core.errors import SculptError

MAX_STEPS = 100_000


@dataclass(frozen=True)
class DiffusionClassifierTrainConfig:
    """Settings of :func:`train_diffusion_classifier`."""

    steps: int = 1500
    batch: int = 1024  # (trajectory, step) pairs per base and optimiser step
    trajectories: int = 2048  # per base and pool
    pool_steps: int = 200  # reverse-SDE steps of the pool's trajectories
    refresh_every: int = 500  # optimiser steps between pools
    lr: float = 2e-3
    lr_final_fraction: float = 0.05
    warmup: int = 200
    ema: float = 0.99
    n_labels: int = 2
    alpha_cond: bool = False
    logit_alpha_range: float = 3.5
    hidden: int = 256
    n_hidden: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "trajectories", "pool_steps", "refresh_every", "warmup", "n_labels", "hidden",
                     "n_hidden"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise SculptError(f"classifier {name} must be a positive integer, got {v!r}")
        if self.steps > MAX_STEPS:
            raise SculptError(f"classifier steps must be at most {MAX_STEPS}, got {self.steps}")
        if self.batch > 65536 or self.trajectories > 65536 or self.pool_steps > 2000:
            raise SculptError("classifier batch and trajectories must be at most 65536, pool steps at most 2000")
        for name in ("lr", "ema", "logit_alpha_range", "lr_final_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SculptError(f"classifier {name} must be a positive number, got {v!r}")
        if self.lr > 1 or self.ema >= 1 or self.lr_final_fraction > 1:
            raise SculptError("classifier lr must be ≤ 1, ema < 1 and lr_final_fraction ≤ 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrajectoryPool:
    """States ``[m, T+1, N, *D]`` (float32) of N reverse trajectories per base at ``times`` ``[T+1]`` (1 → ε);
    the last state of each trajectory is its terminal sample."""

    states: torch.Tensor
    times: torch.Tensor


@torch.no_grad()
def sample_pool(models: list[ScoreModel], n: int, steps: int, generator: torch.Generator, sde: VESDE = SDE,
                device: torch.device | str = "cpu") -> TrajectoryPool:
    """``n`` Euler–Maruyama trajectories of every base from the reference prior, every state kept."""
    per_model = []
    for model in models:
        states: list[torch.Tensor] = []
        x1 = sde.prior_sample(n, generator, device, tuple(getattr(model, "shape", (2,))))
        states.append(x1.float())
        reverse_sample(BaseField(model), x1, steps, "em", sde, generator,
                       progress=lambda _k, info: states.append(info["x"].float()))
        per_model.append(torch.stack(states))
    from sculpt_core.domains.diffusion.sampling import time_grid

    return TrajectoryPool(torch.stack(per_model), time_grid(steps, sde).float().to(device))


def _pair_rows(cfg: DiffusionClassifierTrainConfig, pool: TrajectoryPool, gen: torch.Generator):
    """Per base, ``batch`` random (trajectory, non-final step) pairs: indices ``[m, B]`` of each."""
    m, t_plus_1, n = pool.states.shape[:3]
    traj = torch.randint(0, n, (m, cfg.batch), generator=gen)
    step = torch.randint(0, t_plus_1 - 1, (m, cfg.batch), generator=gen)
    return traj, step


def train_diffusion_classifier(models: list[ScoreModel], cfg: DiffusionClassifierTrainConfig = DiffusionClassifierTrainConfig(),
                               sde: VESDE = SDE, device: torch.device | str = "cpu", base_names: list[str] | None = None,
                               sigma_data: float = 1.0, classifier_config: DiffusionClassifierConfig | None = None,
                               progress: Callable[[int, dict], None] | None = None, progress_every: int = 25,
                               evaluate: Callable[[GuidanceClassifier], dict] | None = None) -> GuidanceClassifier:
    """Train a classifier for ``models`` (score models, learned or exact) by the module's objective; seeded.

    ``classifier_config``: the network's shape (default: the 2-D MLP of ``cfg``; images pass an
    ``ImageClassifierConfig``). ``progress(step, {"loss_terminal", "loss_nonterminal"})`` every ``progress_every`` steps and at the end.
    The result's ``meta`` records the bases (names, fingerprints), the settings, the final losses, the seconds
    (pool sampling included) and, with ``evaluate``, its figures."""
    m = len(models)
    if m < 2:
        raise SculptError("a classifier needs at least two base models")
    device = torch.device(device)
    if classifier_config is None:
        ccfg = DiffusionClassifierConfig(m, cfg.n_labels, cfg.alpha_cond, cfg.hidden, cfg.n_hidden, sigma_data=sigma_data,
                                         sde_sigma=sde.sigma, t_eps=sde.t_eps).validate()
    else:
        ccfg = classifier_config.validate()
        if (ccfg.n_models, ccfg.n_labels, ccfg.alpha_cond) != (m, cfg.n_labels, cfg.alpha_cond):
            raise SculptError("the classifier configuration does not match the bases and the training settings")
    gen = torch.Generator(device=device).manual_seed(int(cfg.seed))
    cpu_gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        net = classifier_from_config(ccfg.to_dict()).to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    f = cfg.lr_final_fraction
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(k, cfg.steps) / cfg.steps)))
    labels_y1 = torch.arange(m, device=device).repeat_interleave(cfg.batch)  # y1 of each row
    t0 = time.perf_counter()
    pool_seconds = 0.0
    pool = None
    loss_t = loss_n = torch.zeros(())
    for step in range(1, cfg.steps + 1):
        if pool is None or (step - 1) % cfg.refresh_every == 0:
            p0 = time.perf_counter()
            pool = sample_pool(models, cfg.trajectories, cfg.pool_steps, gen, sde, device)
            pool_seconds += time.perf_counter() - p0
        traj, idx = _pair_rows(cfg, pool, cpu_gen)
        traj, idx = traj.to(device), idx.to(device)
        base = torch.arange(m, device=device)[:, None].expand_as(traj)
        shape = pool.states.shape[3:]
        x_t = pool.states[base, idx, traj].reshape(-1, *shape)
        t_t = pool.times[idx].reshape(-1)
        x_end = pool.states[base, -1, traj].reshape(-1, *shape)
        if cfg.alpha_cond:
            la = (torch.rand(m * cfg.batch, generator=cpu_gen) * 2 - 1).to(device) * cfg.logit_alpha_range
            la[:: 4] = 0.0
        else:
            la = None
        log_term = net.log_y1(x_end, sde.t_eps)  # the terminal classifier (α plays no part in y1)
        loss_t = -log_term.gather(1, labels_y1[:, None]).mean()
        with torch.no_grad():
            w = target.log_y1(x_end, sde.t_eps)
            rest = rest_label_log_weights(w, cfg.n_labels, None if la is None else torch.sigmoid(la)).exp()  # [R, m^(n-1)]
        log_joint = net(x_t, t_t, la).reshape(len(x_t), m, -1)  # [R, m, m^(n-1)]
        own = log_joint.gather(1, labels_y1[:, None, None].expand(-1, 1, log_joint.shape[2]))[:, 0]
        loss_n = -(rest * own).sum(1).mean()
        loss = loss_t + min(1.0, step / cfg.warmup) * loss_n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_t, p in zip(target.parameters(), net.parameters()):
                p_t.mul_(cfg.ema).add_(p, alpha=1 - cfg.ema)
        if not math.isfinite(float(loss.detach())):
            raise SculptError(f"classifier training diverged at step {step}; try a smaller lr")
        if progress is not None and (step % progress_every == 0 or step == cfg.steps):
            progress(step, {"loss_terminal": float(loss_t.detach()), "loss_nonterminal": float(loss_n.detach())})
    net.eval()
    names = base_names or [getattr(mod, "name", f"p{i + 1}") for i, mod in enumerate(models)]
    out = GuidanceClassifier(net, {
        "bases": list(names), "base_fingerprints": [base_fingerprint(mod) for mod in models],
        "train": cfg.to_dict(), "loss_terminal": round(float(loss_t.detach()), 5),
        "loss_nonterminal": round(float(loss_n.detach()), 5), "seconds": round(time.perf_counter() - t0, 2),
        "pool_seconds": round(pool_seconds, 2)})
    if evaluate is not None:
        out.meta.update(evaluate(out))
    return out


@torch.no_grad()
def posterior_error(classifier: GuidanceClassifier, specs: list[GaussianMixture], times: tuple[float, ...] = (0.01, 0.05, 0.2, 0.5),
                    n: int = 2000, seed: int = 7) -> dict:
    """Mean total variation between the classifier and the exact posterior of the specs' augmented model, on
    draws of the diffused equal-weight mixture at each t: ``tv_y1`` for Q(y_1 | x_t) and ``tv_joint`` for the
    joint over every label tuple (n ≤ 2 labels; the exact joint needs one quadrature per tuple)."""
    from sculpt_core.domains.diffusion.exact import ExactComposition

    cfg = classifier.cfg
    m, n_labels = cfg.n_models, cfg.n_labels
    if len(specs) != m:
        raise SculptError(f"{len(specs)} specs for a classifier of {m} bases")
    sde = cfg.sde
    gen = torch.Generator().manual_seed(seed)
    mix = ExactComposition(specs, A.mixture([1.0] * m))
    tuples = list(itertools.product(range(1, m + 1), repeat=n_labels)) if n_labels <= 2 else []
    exact_joint = [ExactComposition(specs, A.conditioning(tuple(y), m)) for y in tuples]
    tv_y1, tv_joint = {}, {}
    dev = classifier.device
    for t in times:
        sigma = float(sde.marginal_std(t))
        x = mix.sample_diffused(n, sigma, gen)
        learned = classifier.net(x.float().to(dev), t).double().cpu()
        q1 = learned.flatten(2).logsumexp(2).exp() if n_labels > 1 else learned.exp()
        p1 = mix.mixture_log_weights(x, sigma).exp()
        tv_y1[f"{t:g}"] = round(float(0.5 * (q1 - p1).abs().sum(1).mean()), 5)
        if tuples:
            exact = torch.stack([e.log_label_posterior(x, sigma) for e in exact_joint], 1).exp()
            tv_joint[f"{t:g}"] = round(float(0.5 * (learned.flatten(1).exp() - exact).abs().sum(1).mean()), 5)
    out = {"posterior_tv_y1": tv_y1, "posterior_tv_joint": tv_joint, "posterior_n": n}
    out["posterior_tv_y1_mean"] = round(sum(tv_y1.values()) / len(tv_y1), 5)
    if tv_joint:
        out["posterior_tv_joint_mean"] = round(sum(tv_joint.values()) / len(tv_joint), 5)
    return out
