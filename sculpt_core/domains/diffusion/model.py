r"""Learned score models of the diffusion domain: a small time-conditioned MLP standing in for an exact spec.

The network sees the preconditioned position c_in(t) x with c_in = 1 / sqrt(σ(t)² + σ_data²) (so its input
stays of order one from t = ε, where x ~ data, to t = 1, where x ~ σ(1) ≈ 10) and a sinusoidal embedding of
log σ(t); its output F is scaled as is standard for VE SDEs:

    s_θ(x, t) = F_θ(c_in(t) x, log σ(t)) / σ(t),

so that σ(t) s_θ ≈ −ε is of order one at every t and the σ(t)²-weighted denoising score-matching loss is the
plain mean-square error |F_θ + ε|² (``train.py``). :class:`ScoreBaseModel` wraps the network with what it
was trained on (the spec's name and dictionary, the training figures) and satisfies the ``ScoreModel``
protocol of ``compose.py``: every composition method runs on it in place of ``ExactScoreModel``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sculpt_core.core.checkpoint import load_checkpoint, load_state_dict_checked, network_payload, save_checkpoint, stored_config
from sculpt_core.domains.diffusion.sde import SDE, VESDE
from sculpt_core.domains.diffusion.spec import GaussianMixture, spec_from_dict
from sculpt_core.errors import SculptError

CHECKPOINT_KIND = "sculpt.diffusion_score_model"
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class ScoreNetConfig:
    """Architecture of :class:`ScoreNet` (plain numbers, stored in the checkpoint)."""

    hidden: int = 128
    n_hidden: int = 3
    embed_dim: int = 16  # sinusoidal features of log σ(t) (half sines, half cosines)
    max_freq: float = 8.0  # highest angular frequency of the embedding, per unit of log σ / 4
    sigma_data: float = 1.0  # data scale in c_in(t) = 1 / sqrt(σ(t)² + σ_data²)
    sde_sigma: float = 25.0
    t_eps: float = 1e-3

    def validate(self) -> ScoreNetConfig:
        ints = (self.hidden, self.n_hidden, self.embed_dim)
        if not all(isinstance(v, int) and v > 0 for v in ints) or self.embed_dim % 2:
            raise SculptError(f"score-net sizes must be positive integers (embed_dim even), got {ints}")
        if not (1 <= self.hidden <= 4096 and 1 <= self.n_hidden <= 16 and self.embed_dim <= 512):
            raise SculptError(f"score-net sizes out of range: hidden {self.hidden}, layers {self.n_hidden}, "
                              f"embedding {self.embed_dim}")
        check_time_features(self, "score-net")
        return self

    @property
    def sde(self) -> VESDE:
        return VESDE(float(self.sde_sigma), float(self.t_eps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_time_features(cfg: Any, what: str) -> None:
    """SculptError unless a time-conditioned network's ``max_freq``, ``sigma_data``, ``sde_sigma`` and ``t_eps``
    are positive numbers with sigma > 1 and t_eps < 1 (score nets and guidance classifiers share them)."""
    for name in ("max_freq", "sigma_data", "sde_sigma", "t_eps"):
        v = getattr(cfg, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise SculptError(f"{what} {name} must be a positive number, got {v!r}")
    if cfg.sde_sigma <= 1 or cfg.t_eps >= 1:
        raise SculptError(f"{what} SDE needs sigma > 1 and t_eps < 1, got {cfg.sde_sigma}, {cfg.t_eps}")


def embedding_frequencies(embed_dim: int, max_freq: float) -> torch.Tensor:
    """The ``embed_dim / 2`` angular frequencies 1..max_freq (log-spaced) of :func:`noise_embedding`."""
    return torch.exp(torch.linspace(0.0, math.log(max_freq), embed_dim // 2))


def noise_embedding(sigma: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Sinusoidal features ``[N, 2F]`` of log σ(t) / 4 for noise levels ``sigma`` ``[N]`` (sines, then cosines):
    every time-conditioned network of the domain (score nets, guidance classifiers) sees time this way."""
    arg = (torch.log(sigma) / 4.0)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], 1)


class ScoreNet(nn.Module):
    """F_θ(c_in x, emb(log σ)) → σ(t) s(x, t); ``forward(x, t)`` returns the score s itself."""

    def __init__(self, cfg: ScoreNetConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.sde = cfg.sde
        self.register_buffer("freqs", embedding_frequencies(cfg.embed_dim, cfg.max_freq))
        layers: list[nn.Module] = []
        dim = 2 + cfg.embed_dim
        for _ in range(cfg.n_hidden):
            layers += [nn.Linear(dim, cfg.hidden), nn.SiLU()]
            dim = cfg.hidden
        layers.append(nn.Linear(dim, 2))
        self.body = nn.Sequential(*layers)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) ``[N]`` for times ``t`` ``[N]``."""
        return self.sde.marginal_std(t)

    def scaled(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """F = σ(t) s(x, t) ``[N, 2]`` at positions ``x`` ``[N, 2]`` and noise levels ``sigma`` ``[N]``."""
        c_in = torch.rsqrt(sigma ** 2 + self.cfg.sigma_data ** 2)
        return self.body(torch.cat([x * c_in[:, None], noise_embedding(sigma, self.freqs)], 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma(t)
        return self.scaled(x, sigma) / sigma[:, None]

    def score_at(self, x: torch.Tensor, t: float, bf16: bool = False) -> torch.Tensor:
        """s(x, t) ``[N, 2]`` with every particle at the same time ``t``: the same function as ``forward``, but
        the time embedding is computed once and folded into the first layer's bias (what a sampler step needs;
        about twice as fast as ``forward`` on 20000 particles). ``bf16``: the hidden layers in bfloat16 (see
        :attr:`ScoreBaseModel.precision`)."""
        sigma = float(self.sde.marginal_std(float(t)))
        c_in = 1.0 / math.sqrt(sigma ** 2 + self.cfg.sigma_data ** 2)
        emb = noise_embedding(torch.tensor([sigma], dtype=self.freqs.dtype, device=self.freqs.device), self.freqs)[0]
        first = self.body[0]
        bias = torch.addmv(first.bias, first.weight[:, 2:], emb)
        h = torch.addmm(bias, x, first.weight[:, :2].T * c_in)
        if bf16:  # hidden layers in bfloat16 (positions and the first layer stay float32): ~3x faster with AMX
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
                return self.body[1:](h).float() / sigma
        return self.body[1:](h) / sigma


@dataclass
class ScoreBaseModel:
    """A trained score network plus what it was trained on; a ``ScoreModel`` for every composition method.

    ``meta`` holds ``spec_name``, ``spec`` (the spec's dictionary: weights, means, covs), the training
    settings (steps, batch, lr, seed) and figures (final loss, seconds, score errors)."""

    net: ScoreNet
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = "model"
    #: ``fp32`` (default) or ``bf16``: the hidden layers in bfloat16 when sampling, for CPUs with bfloat16
    #: matrix units (AMX, AVX-512 BF16) or GPUs; about 0.5% relative error on the score (``bench/diffusion_guidance.py``).
    precision: str = "fp32"

    @property
    def sde(self) -> VESDE:
        return self.net.sde

    def with_precision(self, precision: str) -> ScoreBaseModel:
        """A view of this model (same network) that samples in ``precision`` (one of :data:`PRECISIONS`)."""
        if precision not in PRECISIONS:
            raise SculptError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
        return dataclasses.replace(self, precision=precision)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """s_θ(x, t) ``[N, 2]`` in the dtype and on the device of ``x`` (no gradient kept)."""
        dev = self.device
        with torch.no_grad():
            xin = x.detach().to(device=dev, dtype=torch.float32)
            out = self.net.score_at(xin, float(t), bf16=self.precision == "bf16")
        return out.to(device=x.device, dtype=x.dtype)

    def spec(self) -> GaussianMixture | None:
        """The Gaussian-mixture spec the model was trained on (None when the metadata lacks it)."""
        data = self.meta.get("spec")
        if not isinstance(data, dict):
            return None
        return spec_from_dict(data, str(self.meta.get("spec_name", self.name)))

    # ----- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (an interrupted save leaves the previous file readable)."""
        payload = {
            **network_payload(self.net),
            "meta": self.meta,
            "name": self.name,
        }
        return save_checkpoint(path, CHECKPOINT_KIND, payload)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> ScoreBaseModel:
        """Read a checkpoint written by :meth:`save` (``weights_only``); SculptError on anything malformed."""
        data = load_checkpoint(path, CHECKPOINT_KIND, required=("config", "state_dict", "meta"))
        net = stored_config(path, data, lambda c: ScoreNet(ScoreNetConfig(**c)))
        load_state_dict_checked(net, data["state_dict"], path)
        if not isinstance(data["meta"], dict):
            raise SculptError(f"{path}: metadata is not a dictionary")
        if "spec" in data["meta"]:
            try:
                spec_from_dict(data["meta"]["spec"], "stored")
            except SculptError as exc:
                raise SculptError(f"{path}: stored training spec is invalid ({exc})") from None
        net.eval()
        model = cls(net, dict(data["meta"]), str(data.get("name", Path(path).stem)))
        return model.to(device) if device is not None else model

    def to(self, device: torch.device | str) -> ScoreBaseModel:
        self.net.to(torch.device(device))
        return self


def data_scale(spec: GaussianMixture) -> float:
    """Per-axis standard deviation of the spec's law (the σ_data of the preconditioning)."""
    centre = (spec.weights[:, None] * spec.means).sum(0)
    between = float((((spec.means - centre) ** 2).sum(1) * spec.weights).sum()) / 2
    within = float((torch.diagonal(spec.covs, dim1=1, dim2=2).sum(1) * spec.weights).sum()) / 2
    return math.sqrt(between + within)


def new_model(spec: GaussianMixture, cfg: ScoreNetConfig | None = None, sde: VESDE = SDE,
              seed: int = 0) -> ScoreBaseModel:
    """An untrained model for ``spec`` (weights drawn from ``seed``); without ``cfg``, the default
    architecture with σ_data = the spec's per-axis scale. ``meta`` records the spec."""
    if cfg is None:
        cfg = ScoreNetConfig(sigma_data=data_scale(spec), sde_sigma=sde.sigma, t_eps=sde.t_eps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = ScoreNet(cfg)
    return ScoreBaseModel(net, {"spec_name": spec.name, "spec": spec.to_json()}, spec.name)
