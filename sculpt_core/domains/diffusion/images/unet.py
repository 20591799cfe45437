r"""A small time-conditioned U-Net for image score models, and the conv trunk of the guidance classifier.

Inputs are preconditioned as in the 2-D domain: the network sees c_in(t) x with c_in = 1 / sqrt(σ(t)² +
σ_data²) and the sinusoidal features of log σ(t) (``model.noise_embedding``), mapped by a two-layer MLP to a
time vector that every residual block adds to its channels. The U-Net's output F is scaled as σ(t) s, so

    s_θ(x, t) = F_θ(c_in(t) x, log σ(t)) / σ(t)

and the σ²-weighted denoising score-matching loss is the plain mean-square error |F_θ + ε|² (``train.py``).

Layout: a 3×3 input conv to ``channels[0]``; per level one residual block (GroupNorm, SiLU, 3×3 conv, time
bias, GroupNorm, SiLU, 3×3 conv, skip) then a stride-2 conv; a middle block; the decoder mirrors it with
nearest upsampling and the encoder's features concatenated; a 3×3 output conv (zero-initialised, so an
untrained model predicts F = 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sculpt_core.domains.diffusion.model import check_time_features, embedding_frequencies, noise_embedding
from sculpt_core.domains.diffusion.sde import VESDE
from sculpt_core.errors import SculptError


def check_image_shape(size: int, in_channels: int, channels: tuple[int, ...], what: str) -> None:
    """SculptError unless ``size`` is 4..64, ``in_channels`` 1..4 and ``channels`` 1-4 multiples of 8 in 8..512
    (the conv nets of the domain: U-Net score models and image guidance classifiers)."""
    if not (isinstance(size, int) and 4 <= size <= 64 and isinstance(in_channels, int) and 1 <= in_channels <= 4):
        raise SculptError(f"{what} image size must be 4..64 and input channels 1..4, got {size}, {in_channels}")
    if not (1 <= len(channels) <= 4 and all(isinstance(c, int) and 8 <= c <= 512 and c % 8 == 0 for c in channels)):
        raise SculptError(f"{what} channels must be 1-4 multiples of 8 in 8..512, got {channels}")


class ChannelsConfig:
    """Stored-config round trip of a dataclass config with a ``channels`` tuple (a list in the checkpoint)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        d["channels"] = list(self.channels)  # type: ignore[attr-defined]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**d)


@dataclass(frozen=True)
class UNetConfig(ChannelsConfig):
    """Architecture of :class:`UNet` (plain numbers, stored in checkpoints)."""

    size: int = 28
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 64)
    embed_dim: int = 32
    max_freq: float = 16.0
    sigma_data: float = 0.2
    n_sets: int = 1  # data sets the network is conditioned on (one learned vector each, added to the time vector)
    sde_sigma: float = 25.0
    t_eps: float = 1e-3

    def validate(self) -> UNetConfig:
        chans = tuple(self.channels)
        check_image_shape(self.size, self.in_channels, chans, "U-Net")
        if self.size % (2 ** (len(chans) - 1)):
            raise SculptError(f"image side {self.size} is not divisible by 2^{len(chans) - 1} for {len(chans)} levels")
        if not (isinstance(self.embed_dim, int) and 2 <= self.embed_dim <= 256 and self.embed_dim % 2 == 0):
            raise SculptError(f"U-Net embed_dim must be an even integer in 2..256, got {self.embed_dim!r}")
        if not (isinstance(self.n_sets, int) and 1 <= self.n_sets <= 64):
            raise SculptError(f"U-Net n_sets must be an integer in 1..64, got {self.n_sets!r}")
        check_time_features(self, "U-Net")
        return self

    @property
    def sde(self) -> VESDE:
        return VESDE(float(self.sde_sigma), float(self.t_eps))


def group_count(c: int) -> int:
    """GroupNorm groups for ``c`` channels: 8 when they divide, else 1."""
    return 8 if c % 8 == 0 else 1


class ResBlock(nn.Module):
    """Two 3×3 convs with GroupNorm and SiLU, a per-channel time bias between them, and a skip path."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(group_count(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class TimeEmbedding(nn.Module):
    """log σ(t) → sinusoidal features → a two-layer MLP: the time vector ``[N, t_dim]`` of every block."""

    def __init__(self, embed_dim: int, max_freq: float, t_dim: int) -> None:
        super().__init__()
        self.register_buffer("freqs", embedding_frequencies(embed_dim, max_freq))
        self.mlp = nn.Sequential(nn.Linear(embed_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        return F.silu(self.mlp(noise_embedding(sigma, self.freqs.to(sigma.dtype))))


class UNet(nn.Module):
    """F_θ(c_in x, log σ) ``[N, C, H, W]`` (see the module docstring); ``forward(x, t)`` returns the score."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.sde = cfg.sde
        chans = list(cfg.channels)
        t_dim = 4 * chans[0]
        self.temb = TimeEmbedding(cfg.embed_dim, cfg.max_freq, t_dim)
        self.set_embedding = nn.Embedding(cfg.n_sets, t_dim)
        nn.init.normal_(self.set_embedding.weight, std=0.5)
        self.inc = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = chans[0]
        for k, ck in enumerate(chans):
            self.down.append(ResBlock(c, ck, t_dim))
            c = ck
            if k < len(chans) - 1:
                self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(c, c, t_dim)
        self.up = nn.ModuleList()
        self.unpool = nn.ModuleList()
        for k in reversed(range(len(chans))):
            self.up.append(ResBlock(c + chans[k], chans[k], t_dim))
            c = chans[k]
            if k > 0:
                self.unpool.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = nn.GroupNorm(group_count(c), c)
        self.out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def scaled(self, x: torch.Tensor, sigma: torch.Tensor, set_index: torch.Tensor | int = 0) -> torch.Tensor:
        """F = σ(t) s(x, t) ``[N, C, H, W]`` at images ``x``, noise levels ``sigma`` ``[N]`` and data-set
        indices ``set_index`` (``[N]`` or one int)."""
        c_in = torch.rsqrt(sigma ** 2 + self.cfg.sigma_data ** 2)
        idx = torch.as_tensor(set_index, dtype=torch.long, device=x.device).reshape(-1).expand(len(x))
        temb = self.temb(sigma) + self.set_embedding(idx)
        h = self.inc(x * c_in[:, None, None, None])
        skips = []
        for k, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if k < len(self.pool):
                h = self.pool[k](h)
        h = self.mid(h, temb)
        for k, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), temb)
            if k < len(self.unpool):
                h = self.unpool[k](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, set_index: torch.Tensor | int = 0) -> torch.Tensor:
        """The score s(x, t) ``[N, C, H, W]``."""
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(len(x))
        sigma = self.sde.marginal_std(tt)
        return self.scaled(x, sigma, set_index) / sigma[:, None, None, None]


def n_parameters(net: nn.Module) -> int:
    """Number of trainable numbers of ``net``."""
    return sum(p.numel() for p in net.parameters())
