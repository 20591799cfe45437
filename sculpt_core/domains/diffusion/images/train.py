r"""Denoising score matching of an :class:`~.model.ImageFamily` on colored-MNIST data sets; resumable.

Every step draws ``batch`` rows; each row picks one of the family's data sets uniformly, an image of it
(``data.ColoredSampler``), t ~ U[ε, 1] and ε ~ N(0, I), forms x_t = x_0 + σ(t) ε and minimises the σ²-weighted
DSM loss |F_θ(x_t, σ, set) + ε|² (mean over pixels; ``unet.py``). Adam, linear warm-up then cosine decay, an
exponential moving average of the weights (the EMA is what samples). The run state (weights, EMA, optimiser,
step, generator state) is written atomically every ``save_every`` steps to ``state_path``, so a killed or
time-limited run continues where it stopped with the same result as an uninterrupted one. A run may be
continued with another total ``steps`` (to stop earlier or train longer): the cosine schedule is then that
of the new total from the step reached, and the state records every step's settings in ``losses``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from sculpt_core.core.checkpoint import load_checkpoint, save_checkpoint
from sculpt_core.domains.diffusion.images.data import ColoredSampler, check_size, dataset
from sculpt_core.domains.diffusion.images.model import ImageFamily
from sculpt_core.domains.diffusion.images.unet import UNet, UNetConfig
from sculpt_core.errors import SculptError

STATE_KIND = "sculpt.diffusion_image_train_state"
MAX_STEPS = 1_000_000


@dataclass(frozen=True)
class ImageTrainConfig:
    """Settings of :func:`train_image_family`."""

    sets: tuple[str, ...] = ("mn1", "mn2", "mn3", "m1", "m2")
    size: int = 16
    channels: tuple[int, ...] = (32, 64, 64)
    steps: int = 5500
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 300
    lr_final_fraction: float = 0.02
    ema: float = 0.999
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sets or len(set(self.sets)) != len(self.sets):
            raise SculptError(f"data sets must be distinct and at least one, got {self.sets}")
        for s in self.sets:
            dataset(s)
        check_size(self.size)
        for name in ("steps", "batch", "warmup"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise SculptError(f"{name} must be a positive integer, got {v!r}")
        if self.steps > MAX_STEPS or self.batch > 4096:
            raise SculptError(f"steps must be at most {MAX_STEPS} and batch at most 4096")
        if not (0 < self.lr <= 1 and 0 < self.ema < 1 and 0 < self.lr_final_fraction <= 1):
            raise SculptError("lr must be in (0, 1], ema in (0, 1), lr_final_fraction in (0, 1]")

    def unet(self) -> UNetConfig:
        return UNetConfig(size=self.size, channels=tuple(self.channels), n_sets=len(self.sets)).validate()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sets"], d["channels"] = list(self.sets), list(self.channels)
        return d


def _lr_factor(cfg: ImageTrainConfig, k: int) -> float:
    if k < cfg.warmup:
        return (k + 1) / cfg.warmup
    f = cfg.lr_final_fraction
    return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(k, cfg.steps) / cfg.steps))


def stop_file_exists(state_path: str | Path | None) -> bool:
    """A file ``<state>.stop`` beside the run state asks a running training to save and stop (resumably)."""
    return state_path is not None and Path(f"{state_path}.stop").exists()


def train_image_family(cfg: ImageTrainConfig, state_path: str | Path | None = None, save_every: int = 250,
                       time_limit: float | None = None, device: torch.device | str = "cpu",
                       progress: Callable[[int, dict], None] | None = None, progress_every: int = 50) -> tuple[ImageFamily, bool]:
    """Train (or continue, from ``state_path`` when it exists) a family on ``cfg.sets``.

    Returns ``(family with the EMA weights, finished)``; ``finished`` is False when ``time_limit`` seconds ran
    out first (the state is saved: call again to continue). ``progress(step, {"loss", "steps_per_s"})``."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = UNet(cfg.unet()).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    start, losses, seconds = 0, [], 0.0
    if state_path is not None and Path(state_path).is_file():
        st = load_checkpoint(state_path, STATE_KIND, required=("config", "net", "ema", "opt", "step", "gen"))
        stored = {k: v for k, v in st["config"].items() if k != "steps"} if isinstance(st["config"], dict) else None
        if stored != {k: v for k, v in cfg.to_dict().items() if k != "steps"}:
            raise SculptError(f"{state_path} holds a run with other settings; remove it or use the same settings")
        if int(st["step"]) > cfg.steps:
            raise SculptError(f"{state_path} has already run {int(st['step'])} steps, more than the {cfg.steps} asked for")
        net.load_state_dict(st["net"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        start, losses, seconds = int(st["step"]), list(st.get("losses", [])), float(st.get("seconds", 0.0))
    samplers = [ColoredSampler(s, cfg.size) for s in cfg.sets]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: _lr_factor(cfg, k + start))
    sde = net.sde
    net.train()

    def save_state(step: int) -> None:
        if state_path is not None:
            save_checkpoint(state_path, STATE_KIND, {"config": cfg.to_dict(), "net": net.state_dict(),
                                                     "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                                                     "gen": gen.get_state(), "losses": losses, "seconds": seconds})

    t0 = time.perf_counter()
    seconds0 = seconds
    recent: list[float] = []
    step = start
    finished = True
    while step < cfg.steps:
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            finished = False
            break
        which = torch.randint(0, len(cfg.sets), (cfg.batch,), generator=gen)
        x0 = torch.empty(cfg.batch, 3, cfg.size, cfg.size)
        for i, s in enumerate(samplers):
            rows = torch.nonzero(which == i).flatten()
            if len(rows):
                x0[rows] = s.sample(len(rows), gen)
        t = sde.t_eps + (1 - sde.t_eps) * torch.rand(cfg.batch, generator=gen)
        z = torch.randn(x0.shape, generator=gen)
        sigma = sde.marginal_std(t)
        x0, z, sigma, which = x0.to(device), z.to(device), sigma.to(device), which.to(device)
        out = net.scaled(x0 + sigma[:, None, None, None] * z, sigma, which)
        loss = ((out + z) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1 + step) / (10 + step))
            for p_e, p in zip(ema.parameters(), net.parameters()):
                p_e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise SculptError(f"training diverged at step {step + 1} (loss {value}); try a smaller lr")
        recent.append(value)
        step += 1
        seconds = seconds0 + time.perf_counter() - t0
        if step % progress_every == 0 or step == cfg.steps:
            losses.append([step, round(sum(recent) / len(recent), 6)])
            recent = []
            if progress is not None:
                progress(step, {"loss": losses[-1][1], "steps_per_s": (step - start) / max(seconds - seconds0, 1e-9)})
        if step % save_every == 0 or stop_file_exists(state_path):
            save_state(step)
            if stop_file_exists(state_path):
                finished = False
                break
    save_state(step)
    ema.eval()
    family = ImageFamily(ema, list(cfg.sets), {"train": cfg.to_dict(), "steps_done": step, "seconds": round(seconds, 1),
                                               "final_loss": losses[-1][1] if losses else None,
                                               "loss_curve": losses[-200:]})
    return family, finished
