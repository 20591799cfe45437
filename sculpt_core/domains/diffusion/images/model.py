r"""Image score models: one U-Net conditioned on a data-set index serves several colored-MNIST bases.

A :class:`ImageFamily` is a trained :class:`~.unet.UNet` (its exponential-moving-average weights) with the
names of the data sets it was trained on; ``family.model(name)`` is the :class:`ImageScoreModel` of one set,
s_i(x, t) = U-Net(x, t, i). Sharing the trunk is an engineering choice for a 2-core machine: the five bases of
the paper's experiment train in one run on the same digits, and each is still its own distribution p_i (the
network never sees set i's data under another index). Every base satisfies the ``ScoreModel`` protocol of
``compose.py``, so all composition methods of the 2-D domain run on images unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sculpt_core.core.checkpoint import load_checkpoint, load_state_dict_checked, network_payload, save_checkpoint, stored_config, weights_fingerprint
from sculpt_core.domains.diffusion.images.data import dataset
from sculpt_core.domains.diffusion.images.unet import UNet, UNetConfig
from sculpt_core.domains.diffusion.model import PRECISIONS
from sculpt_core.domains.diffusion.sde import VESDE
from sculpt_core.errors import SculptError

CHECKPOINT_KIND = "sculpt.diffusion_image_models"


@dataclass
class ImageFamily:
    """A U-Net trained on the data sets ``sets`` (index i ↔ ``sets[i]``) and its training figures."""

    net: UNet
    sets: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.net.cfg.size

    @property
    def sde(self) -> VESDE:
        return self.net.sde

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def model(self, name: str, precision: str = "fp32") -> ImageScoreModel:
        """The base trained on data set ``name`` (SculptError if this family has none)."""
        if name not in self.sets:
            raise SculptError(f"this image model has no base {name!r}; it has {', '.join(self.sets)}")
        if precision not in PRECISIONS:
            raise SculptError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
        return ImageScoreModel(self, self.sets.index(name), name, precision)

    def to(self, device: torch.device | str) -> ImageFamily:
        self.net.to(torch.device(device))
        return self

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (weights_only-loadable)."""
        return save_checkpoint(path, CHECKPOINT_KIND, {**network_payload(self.net), "sets": list(self.sets),
                                                       "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> ImageFamily:
        """Read a checkpoint written by :meth:`save`; SculptError on anything malformed."""
        data = load_checkpoint(path, CHECKPOINT_KIND, required=("config", "state_dict", "sets", "meta"))
        net = stored_config(path, data, lambda c: UNet(UNetConfig.from_dict(c)))
        load_state_dict_checked(net, data["state_dict"], path)
        sets = data["sets"]
        if not (isinstance(sets, list) and len(sets) == net.cfg.n_sets and all(isinstance(s, str) for s in sets)):
            raise SculptError(f"{path}: the data-set names do not match the network ({net.cfg.n_sets} sets)")
        for s in sets:
            try:
                dataset(s)
            except SculptError as exc:
                raise SculptError(f"{path}: {exc}") from None
        if not isinstance(data["meta"], dict):
            raise SculptError(f"{path}: metadata is not a dictionary")
        net.eval()
        out = cls(net, list(sets), dict(data["meta"]))
        return out.to(device) if device is not None else out


@dataclass
class ImageScoreModel:
    """One colored-MNIST base: s(x, t) of data set ``index`` of a family (a ``compose.ScoreModel``)."""

    family: ImageFamily
    index: int
    name: str
    precision: str = "fp32"

    @property
    def sde(self) -> VESDE:
        return self.family.sde

    @property
    def net(self) -> UNet:
        return self.family.net

    @property
    def shape(self) -> tuple[int, int, int]:
        cfg = self.family.net.cfg
        return (cfg.in_channels, cfg.size, cfg.size)

    def fingerprint(self) -> str:
        """sha256 of the weights and this base's index: ties a classifier to exactly these bases."""
        return weights_fingerprint(self.family.net, (torch.tensor([float(self.index)]),))

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """s_θ(x, t) ``[N, C, H, W]`` in the dtype and on the device of ``x`` (no gradient kept)."""
        return family_scores([self], x, t)[0]

    def score_group(self, models: list, x: torch.Tensor, t: float) -> list[torch.Tensor] | None:
        """The scores of several bases of this family at once (one U-Net pass over all of them, what a composed
        sampler needs every step); None when ``models`` are not all bases of this family in one precision."""
        if all(isinstance(m, ImageScoreModel) and m.family is self.family and m.precision == self.precision
               for m in models):
            return family_scores(models, x, t)
        return None


def family_scores(models: list[ImageScoreModel], x: torch.Tensor, t: float) -> list[torch.Tensor]:
    """s_i(x, t) of every base in ``models`` (one family) from one batched pass: ``[N, C, H, W]`` each."""
    family = models[0].family
    dev = family.device
    n = len(x)
    with torch.no_grad():
        xin = x.detach().to(device=dev, dtype=torch.float32)
        sigma = float(family.sde.marginal_std(float(t)))
        rows = torch.cat([xin] * len(models)) if len(models) > 1 else xin
        index = torch.tensor([m.index for m in models], device=dev).repeat_interleave(n)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=models[0].precision == "bf16"):
            out = family.net.scaled(rows, torch.full((len(rows),), sigma, device=dev), index).float()
        out = (out / sigma).to(device=x.device, dtype=x.dtype)
    return list(out.split(n))
