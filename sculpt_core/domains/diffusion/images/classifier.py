r"""The time-conditioned guidance classifier for images: the 2-D domain's joint classifier with a conv trunk.

Q_φ(y_1..y_n | x_t, t) over the m^n label tuples, exactly as ``diffusion/classifier.py`` defines it (the
same permutation symmetrisation, α-conditioning, checkpoint format, fingerprint check and
``ClassifierPosterior``), with the MLP replaced by a small conv net: the preconditioned image c_in(t) x, a
3×3 conv, one time-conditioned residual block per resolution (``unet.ResBlock``) with stride-2 convs between
them, global average pooling, then [features, logit α] → a two-layer head → m^n logits.

Why one joint classifier over all labels rather than the paper's pair classifier plus a conditional third
label (sequential conditioning, eq. 11): the labels are dependent given x_t, and with m = 3 bases and n = 3
labels the whole joint has only 27 outputs, so one network represents it exactly (no factorisation to get
wrong), trains by the same objective as in 2-D (``train_classifier.py``) and serves every y ∈ {1,2,3}³ from one
forward pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sculpt_core.domains.diffusion.classifier import DiffusionClassifier, DiffusionClassifierConfig
from sculpt_core.domains.diffusion.images.unet import ResBlock, TimeEmbedding, _groups
from sculpt_core.errors import SculptError


@dataclass(frozen=True)
class ImageClassifierConfig(DiffusionClassifierConfig):
    """A :class:`DiffusionClassifierConfig` plus the image side, input channels and per-level conv widths."""

    image_size: int = 16
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 64)

    def validate(self) -> ImageClassifierConfig:
        super().validate()
        chans = tuple(self.channels)
        if not (isinstance(self.image_size, int) and 4 <= self.image_size <= 64 and 1 <= self.in_channels <= 4):
            raise SculptError(f"image classifier size must be 4..64 with 1..4 channels, got {self.image_size}")
        if not (1 <= len(chans) <= 4 and all(isinstance(c, int) and 8 <= c <= 512 and c % 8 == 0 for c in chans)):
            raise SculptError(f"image classifier channels must be 1-4 multiples of 8 in 8..512, got {chans}")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageClassifierConfig:
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**d)


class ImageDiffusionClassifier(DiffusionClassifier):
    """log Q(y_1..y_n | x_t, t) ``[N, m, …, m]`` for images ``[N, C, H, W]``."""

    def build_trunk(self, cfg: ImageClassifierConfig) -> None:  # type: ignore[override]
        chans = list(cfg.channels)
        t_dim = 4 * chans[0]
        self.temb = TimeEmbedding(cfg.embed_dim, cfg.max_freq, t_dim)
        self.inc = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = chans[0]
        for k, ck in enumerate(chans):
            self.blocks.append(ResBlock(c, ck, t_dim))
            c = ck
            if k < len(chans) - 1:
                self.pools.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.out_norm = nn.GroupNorm(_groups(c), c)
        dim = c + (1 if cfg.alpha_cond else 0)
        self.head = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.n_models ** cfg.n_labels))

    def trunk_logits(self, x: torch.Tensor, sigma: torch.Tensor, alpha_feature: torch.Tensor | None) -> torch.Tensor:
        c_in = torch.rsqrt(sigma ** 2 + self.cfg.sigma_data ** 2)
        temb = self.temb(sigma)
        h = self.inc(x * c_in[:, None, None, None])
        for k, block in enumerate(self.blocks):
            h = block(h, temb)
            if k < len(self.pools):
                h = self.pools[k](h)
        feats = F.silu(self.out_norm(h)).mean((2, 3))
        if alpha_feature is not None:
            feats = torch.cat([feats, alpha_feature], 1)
        return self.head(feats)
