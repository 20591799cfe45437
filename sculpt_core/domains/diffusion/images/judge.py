r"""An independent judge of colored-digit samples: a digit classifier and the color from channel mass.

- **Digit**: a small CNN trained on the gray digits of the training split (random shifts of up to one pixel
  as augmentation), never on any model's samples; its accuracy on the held-out split (``data.split_indices``)
  is recorded in the checkpoint. It sees the stroke image gray = clamp(R + G + B, 0, 1), so the color plays no
  part in the digit.
- **Color**: from the channel masses of the strokes, Σ max(x − :data:`INK_LEVEL`, 0) per channel (the level
  keeps a sampler's faint residual noise, spread over hundreds of background pixels, from outweighing a thin
  "1"): ``red`` when channel 0 holds at least :data:`COLOR_SHARE` of the mass, ``green`` likewise for
  channel 1, else ``mixed``; ``blank`` when the image holds less than :data:`MIN_MASS` of a typical digit's
  ink (then no digit is read).

:func:`fractions` turns judged samples into the fraction inside an expected set of (color, digit) pairs, with
the breakdown by pair, which is what the bench, the CLI and the page report.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from sculpt_core.core.checkpoint import load_checkpoint, load_state_dict_checked, save_checkpoint
from sculpt_core.domains.diffusion.images.data import COLORS, check_size, digits, split_indices
from sculpt_core.errors import SculptError

CHECKPOINT_KIND = "sculpt.diffusion_image_judge"
COLOR_SHARE = 0.8
INK_LEVEL = 0.1  # pixel values up to this count as background when weighing the channels
MIN_MASS = 0.15  # fraction of the mean ink of a training digit


class DigitNet(nn.Module):
    """gray ``[N, 1, S, S]`` → digit logits ``[N, 10]`` (three convs, two linear layers)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = check_size(size)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(64 * 16, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(gray))


def gray_of(images: torch.Tensor) -> torch.Tensor:
    """RGB images ``[N, 3, S, S]`` → stroke images ``[N, 1, S, S]`` = clamp(R + G + B, 0, 1)."""
    return images.clamp(0, 1).sum(1, keepdim=True).clamp(0, 1)


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image ``[N, 1, S, S]`` moved by a random integer offset in {−1, 0, 1}² (zeros shifted in)."""
    n, _, s, _ = x.shape
    pad = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(s)[None, :])[:, :, None]  # [n, s, 1]
    cols = (dx[:, None] + torch.arange(s)[None, :])[:, None, :]  # [n, 1, s]
    return pad[torch.arange(n)[:, None, None], 0, rows, cols][:, None]


@dataclass
class Judge:
    """The digit net with its figures (``meta``: size, held-out accuracy, typical ink mass)."""

    net: DigitNet
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.net.size

    @torch.no_grad()
    def judge(self, images: torch.Tensor) -> dict[str, list]:
        """Per image: ``digit`` (int, −1 when blank), ``color`` (red, green, mixed, blank), ``confidence``."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != self.size or images.shape[3] != self.size:
            raise SculptError(f"the judge reads [N, 3, {self.size}, {self.size}] images, got {list(images.shape)}")
        x = images.detach().float().cpu().clamp(0, 1)
        mass = (x - INK_LEVEL).clamp_min(0).sum((2, 3))  # [N, 3]: stroke mass per channel
        total = mass.sum(1)
        probs = torch.softmax(self.net(gray_of(x)), 1)
        conf, digit = probs.max(1)
        blank = total < MIN_MASS * float(self.meta.get("mean_ink", 1.0))
        colors = []
        for k in range(len(x)):
            if blank[k]:
                colors.append("blank")
                continue
            share = mass[k] / total[k]
            colors.append(next((c for i, c in enumerate(COLORS) if share[i] >= COLOR_SHARE), "mixed"))
        return {"digit": [(-1 if b else int(d)) for b, d in zip(blank, digit)], "color": colors,
                "confidence": [round(float(c), 4) for c in conf]}

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, CHECKPOINT_KIND, {"size": self.size, "state_dict": self.net.state_dict(),
                                                       "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> Judge:
        data = load_checkpoint(path, CHECKPOINT_KIND, required=("size", "state_dict", "meta"))
        try:
            net = DigitNet(int(data["size"]))
        except (TypeError, ValueError, SculptError) as exc:
            raise SculptError(f"{path}: invalid judge size ({exc})") from None
        load_state_dict_checked(net, data["state_dict"], path)
        if not isinstance(data["meta"], dict):
            raise SculptError(f"{path}: metadata is not a dictionary")
        net.eval()
        return cls(net, dict(data["meta"]))


def train_judge(size: int = 16, epochs: int = 20, batch: int = 128, lr: float = 1e-3, seed: int = 0) -> Judge:
    """Train the digit net on the training split; ``meta`` gets the held-out accuracy and the seconds."""
    gray, labels = digits(check_size(size))
    train, held = split_indices()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitNet(size)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt, yt = gray[train][:, None], labels[train]
    t0 = time.perf_counter()
    steps = epochs * ((len(train) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for k in range(0, len(order), batch):
            rows = order[k:k + batch]
            x = _shift(xt[rows], gen)
            loss = F.cross_entropy(net(x), yt[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = net(gray[held][:, None]).argmax(1)
    acc = float((pred == labels[held]).float().mean())
    per_digit = {str(d): round(float((pred[labels[held] == d] == d).float().mean()), 4) for d in range(10)}
    mean_ink = float((gray[train] - INK_LEVEL).clamp_min(0).sum((1, 2)).mean())
    return Judge(net, {"size": size, "held_out_accuracy": round(acc, 4), "held_out_n": int(len(held)),
                       "held_out_accuracy_by_digit": per_digit, "train_n": int(len(train)), "epochs": epochs,
                       "mean_ink": round(mean_ink, 4), "seconds": round(time.perf_counter() - t0, 1), "seed": seed})


def fractions(judged: dict[str, list], expected: Iterable[tuple[str, int]]) -> dict[str, Any]:
    """Fraction of judged images whose (color, digit) lies in ``expected``, and the counts of every pair seen."""
    want = {(c, int(d)) for c, d in expected}
    pairs = list(zip(judged["color"], judged["digit"]))
    n = len(pairs)
    if n == 0:
        raise SculptError("no images to judge")
    inside = sum(p in want for p in pairs)
    counts = Counter(f"{c} {d}" if d >= 0 else c for c, d in pairs)
    return {"fraction": round(inside / n, 4), "n": n, "expected": sorted(f"{c} {d}" for c, d in want),
            "counts": dict(counts.most_common())}
