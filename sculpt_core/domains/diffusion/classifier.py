r"""Time-conditioned guidance classifiers of the diffusion domain: Q_φ(y_1..y_n | x_t, t) for m bases.

In the augmented model a label y_k ∈ {1..m} names the base that generated x_0 (labels are independent given
x_0). At noise level t they are no longer independent given x_t, so the network outputs the whole joint over
the m^n label tuples:

    log Q(y_1..y_n | x_t, t) = log_softmax(F_φ(c_in(t) x, emb(log σ(t)) [, logit α]))  over the m^n tuples,

with the same input preconditioning and time features as the score networks (``model.py``). Without α the
labels are exchangeable, so the logits are averaged over every permutation of the label axes (the joint is
symmetric by construction). With α (two models, eq. 7) the second label is α-tilted and the joint is not
symmetric; α enters as its logit. The terminal classifier is the same network at t = ε: its y1-marginal is
trained on the bases' final samples (``train_classifier.py``, the diffusion analogue of Algorithm A.1).

:class:`ClassifierPosterior` turns a classifier into the ``LabelPosterior`` of ``compose.py`` for one
composition: mixture weights Q(y_1 = i | x_t) (reweighted by a mixture's prior) and ∇_x log Q(y_obs | x_t)
by autograd, from one forward pass.

Images (colored MNIST) use :class:`ImageDiffusionClassifier`: the same joint with a small conv trunk (the
preconditioned image, a 3×3 conv, one time-conditioned residual block per resolution with stride-2 convs
between them, global average pooling, then [features, logit α] → a two-layer head).

Why one joint classifier over all labels rather than the paper's pair classifier plus a conditional third
label (sequential conditioning, eq. 11): the labels are dependent given x_t, and with m = 3 bases and n = 3
labels the whole joint has only 27 outputs, so one network represents it exactly (no factorisation to get
wrong), trains by the same objective as in 2-D (``train_classifier.py``) and serves every y ∈ {1,2,3}³ from one
forward pass.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sculpt_core.core.algebra import Composition
from sculpt_core.core.checkpoint import load_checkpoint, load_state_dict_checked, network_payload, save_checkpoint, stored_config, weights_fingerprint
from sculpt_core.core.methods import ClassifierGuidance, check_classifier_compat
from sculpt_core.domains.diffusion.images.unet import ChannelsConfig, ResBlock, TimeEmbedding, check_image_shape, group_count
from sculpt_core.domains.diffusion.model import check_time_features, embedding_frequencies, noise_embedding
from sculpt_core.domains.diffusion.sde import VESDE
from sculpt_core.errors import SculptError

CHECKPOINT_KIND = "sculpt.diffusion_classifier"
MAX_TUPLES = 256  # m^n label tuples the head may have


@dataclass(frozen=True)
class DiffusionClassifierConfig:
    """Shape of a :class:`DiffusionClassifier` (plain numbers, stored in the checkpoint)."""

    n_models: int
    n_labels: int = 2
    alpha_cond: bool = False
    hidden: int = 256
    n_hidden: int = 3
    embed_dim: int = 16
    max_freq: float = 8.0
    sigma_data: float = 1.0
    sde_sigma: float = 25.0
    t_eps: float = 1e-3

    def validate(self) -> DiffusionClassifierConfig:
        ints = (self.n_models, self.n_labels, self.hidden, self.n_hidden, self.embed_dim)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ints) or self.embed_dim % 2:
            raise SculptError(f"classifier sizes must be positive integers (embed_dim even), got {ints}")
        if self.n_models < 2:
            raise SculptError(f"a classifier separates at least two bases, got {self.n_models}")
        if self.n_models ** self.n_labels > MAX_TUPLES:
            raise SculptError(f"{self.n_models} bases and {self.n_labels} labels make {self.n_models ** self.n_labels} "
                              f"label tuples; at most {MAX_TUPLES}")
        if not (self.hidden <= 4096 and self.n_hidden <= 16 and self.embed_dim <= 512):
            raise SculptError(f"classifier sizes out of range: hidden {self.hidden}, layers {self.n_hidden}")
        if self.alpha_cond and (self.n_models != 2 or self.n_labels < 2):
            raise SculptError("an α-conditioned classifier needs two bases and at least two labels (eq. 7)")
        check_time_features(self, "classifier")
        return self

    @property
    def sde(self) -> VESDE:
        return VESDE(float(self.sde_sigma), float(self.t_eps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DiffusionClassifier(nn.Module):
    """log Q(y_1..y_n | x_t, t) ``[N, m, …, m]`` (see the module docstring); an MLP trunk on 2-D points.
    :class:`ImageDiffusionClassifier` replaces :meth:`build_trunk` and :meth:`trunk_logits` only."""

    def __init__(self, cfg: DiffusionClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.sde = cfg.sde
        self.register_buffer("freqs", embedding_frequencies(cfg.embed_dim, cfg.max_freq))
        self.build_trunk(cfg)
        n = cfg.n_labels
        self._perms = [] if (cfg.alpha_cond or n == 1) else [p for p in itertools.permutations(range(1, n + 1))][1:]

    def build_trunk(self, cfg: DiffusionClassifierConfig) -> None:
        dim = 2 + cfg.embed_dim + (1 if cfg.alpha_cond else 0)
        layers: list[nn.Module] = []
        for _ in range(cfg.n_hidden):
            layers += [nn.Linear(dim, cfg.hidden), nn.SiLU()]
            dim = cfg.hidden
        layers.append(nn.Linear(dim, cfg.n_models ** cfg.n_labels))
        self.body = nn.Sequential(*layers)

    def trunk_logits(self, x: torch.Tensor, sigma: torch.Tensor, alpha_feature: torch.Tensor | None) -> torch.Tensor:
        """Unnormalised logits ``[N, m^n]`` at preconditioned inputs (``x`` raw, ``sigma`` ``[N]``)."""
        c_in = torch.rsqrt(sigma ** 2 + self.cfg.sigma_data ** 2)
        parts = [x * c_in[:, None], noise_embedding(sigma, self.freqs.to(x.dtype))]
        if alpha_feature is not None:
            parts.append(alpha_feature)
        return self.body(torch.cat(parts, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, logit_alpha: torch.Tensor | float | None = None
                ) -> torch.Tensor:
        """The joint log-posterior ``[N, m, …, m]`` at positions ``x`` ``[N, *D]`` and times ``t`` (``[N]`` or one float)."""
        cfg = self.cfg
        n = len(x)
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(n)
        sigma = self.sde.marginal_std(tt)
        alpha_feature = None
        if cfg.alpha_cond:
            if logit_alpha is None:
                logit_alpha = 0.0
            alpha_feature = torch.as_tensor(logit_alpha, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(n, 1)
        logits = self.trunk_logits(x, sigma, alpha_feature).reshape((n,) + (cfg.n_models,) * cfg.n_labels)
        if self._perms:
            logits = (logits + sum(logits.permute(0, *p) for p in self._perms)) / (1 + len(self._perms))
        return torch.log_softmax(logits.flatten(1), 1).reshape(logits.shape)

    def log_y1(self, x: torch.Tensor, t: torch.Tensor | float, logit_alpha: Any = None) -> torch.Tensor:
        """log Q(y_1 = i | x_t) ``[N, m]``: the first label's marginal (at t = ε, the terminal classifier)."""
        return ClassifierGuidance.y1_marginal(self(x, t, logit_alpha))


# ----- images: the same joint classifier with a conv trunk ----------------------------------------------------
@dataclass(frozen=True)
class ImageClassifierConfig(ChannelsConfig, DiffusionClassifierConfig):
    """A :class:`DiffusionClassifierConfig` plus the image side, input channels and per-level conv widths."""

    image_size: int = 16
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 64)

    def validate(self) -> ImageClassifierConfig:
        super().validate()
        check_image_shape(self.image_size, self.in_channels, tuple(self.channels), "image classifier")
        return self


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
        self.out_norm = nn.GroupNorm(group_count(c), c)
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


@dataclass
class GuidanceClassifier:
    """A trained classifier with what it was trained for: base names, their fingerprints, training figures."""

    net: DiffusionClassifier
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> DiffusionClassifierConfig:
        return self.net.cfg

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: torch.device | str) -> GuidanceClassifier:
        self.net.to(torch.device(device))
        return self

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (weights_only-loadable)."""
        return save_checkpoint(path, CHECKPOINT_KIND, {**network_payload(self.net), "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> GuidanceClassifier:
        """Read a checkpoint written by :meth:`save` (``weights_only``); SculptError on anything malformed."""
        data = load_checkpoint(path, CHECKPOINT_KIND, required=("config", "state_dict", "meta"))
        net = stored_config(path, data, classifier_from_config)
        load_state_dict_checked(net, data["state_dict"], path)
        if not isinstance(data["meta"], dict):
            raise SculptError(f"{path}: metadata is not a dictionary")
        net.eval()
        out = cls(net, dict(data["meta"]))
        return out.to(device) if device is not None else out

    def check_bases(self, fingerprints: list[str]) -> None:
        """SculptError unless the classifier was trained for bases with exactly these fingerprints, in order."""
        stored = self.meta.get("base_fingerprints")
        if len(fingerprints) != self.cfg.n_models:
            raise SculptError(f"this classifier was trained for {self.cfg.n_models} bases, {len(fingerprints)} chosen")
        if stored is not None and list(stored) != list(fingerprints):
            names = ", ".join(self.meta.get("bases", [])) or "other bases"
            raise SculptError(f"this classifier was trained for other base models ({names}, or earlier versions of "
                              "them); retrain it with `python -m sculpt_core diffusion train-classifier`")


def classifier_from_config(c: dict) -> DiffusionClassifier:
    """The network a stored configuration describes: an image classifier when it names an image size."""
    if "image_size" in c:
        return ImageDiffusionClassifier(ImageClassifierConfig.from_dict(c))
    return DiffusionClassifier(DiffusionClassifierConfig(**c))


def base_fingerprint(model: Any) -> str:
    """Short sha256 of what defines a base: its own ``fingerprint()`` when it has one (an image base: weights and
    data-set index), a learned model's weights, or an exact spec's parameters."""
    if callable(getattr(model, "fingerprint", None)):
        return model.fingerprint()
    net = getattr(model, "net", None)
    if net is not None:
        return weights_fingerprint(net)
    spec = getattr(model, "spec", model)
    return weights_fingerprint(torch.nn.Module(), (spec.weights, spec.means, spec.covs))


class ClassifierPosterior:
    """A learned classifier as the label posterior of one composition (``compose.LabelPosterior``)."""

    def __init__(self, classifier: GuidanceClassifier, composition: Composition) -> None:
        check_classifier_compat(classifier.cfg, composition.n_models, composition, fallback=("oracle", "superdiff"))
        self.classifier = classifier
        self.guide = ClassifierGuidance.of(composition, classifier.cfg)

    def weights_and_grad(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log mixture weights ``[N, m]``, ∇_x log Q(y_obs | x_t) ``[N, *D]`` or None) in the dtype of ``x``."""
        net, guide = self.classifier.net, self.guide
        xin = x.detach().to(device=self.classifier.device, dtype=torch.float32)
        if not guide.guided:
            with torch.no_grad():
                log_w = guide.mixture_weights(net.log_y1(xin, t))
            return log_w.to(device=x.device, dtype=x.dtype), None
        with torch.enable_grad():
            xin.requires_grad_(True)
            log_joint = net(xin, t, guide.logit_alpha)
            value = guide.observed(log_joint)
            (grad,) = torch.autograd.grad(value.sum(), xin)
        log_w = guide.mixture_weights(ClassifierGuidance.y1_marginal(log_joint.detach()))
        return log_w.to(device=x.device, dtype=x.dtype), grad.to(device=x.device, dtype=x.dtype)
