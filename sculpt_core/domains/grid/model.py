"""A trained grid base model: network + metadata, with exact policy tables over all states."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid.exact import log_reaching
from sculpt_core.core.checkpoint import load_checkpoint, load_state_dict_checked, network_payload, save_checkpoint, stored_config, weights_fingerprint
from sculpt_core.domains.grid.policy import GridPolicyConfig, GridPolicyNet
from sculpt_core.core.metrics import log_normalize
from sculpt_core.core.nets import thermometer

CHECKPOINT_KIND = "sculpt.grid_base_model"


@dataclass
class GridTables:
    """A model's policy evaluated on every state (flat order), float64.

    ``log_pf`` [N, ndim+1] masked forward log-probs; ``log_pb`` [N, ndim] backward log-probs over parents;
    ``log_flow`` [N] learned log F(s) (meaningful for DB-trained models); ``log_z`` learned log Z.
    """

    log_pf: torch.Tensor
    log_pb: torch.Tensor
    log_flow: torch.Tensor
    log_z: float

    def exact_log_u(self, env: GridEnv) -> torch.Tensor:
        """Exact reaching probabilities of this policy (DP)."""
        return log_reaching(env, self.log_pf)


@dataclass
class GridBaseModel:
    """A grid GFlowNet plus what it was trained on. ``meta`` holds reward, temperature, loss, steps, seed, L1, ..."""

    net: GridPolicyNet
    meta: dict[str, Any] = field(default_factory=dict)
    log_reward: torch.Tensor | None = None  # log R per cell (H,)*ndim, if known
    name: str = "model"

    @property
    def env(self) -> GridEnv:
        return self.net.env

    @property
    def beta_range(self) -> tuple[float, float] | None:
        """(low, high) of the reward exponent β this model is conditioned on, or None if unconditional."""
        cond = self.meta.get("beta_cond")
        return (float(cond["low"]), float(cond["high"])) if cond else None

    def cond_vector(self, beta: float | None) -> torch.Tensor | None:
        """Conditioning row for a β-conditioned model (validated), else None."""
        rng = self.beta_range
        if rng is None:
            if beta is not None and not math.isclose(beta, 1.0 / float(self.meta.get("temperature", 1.0))):
                raise SculptError(f"model {self.name!r} is not β-conditioned; it only samples β = 1/T = "
                                  f"{1.0 / float(self.meta.get('temperature', 1.0)):g}")
            return None
        if beta is None:
            beta = float(self.meta.get("beta_default", rng[1]))
        if not (rng[0] <= beta <= rng[1]):
            raise SculptError(f"β = {beta} is outside the range [{rng[0]:g}, {rng[1]:g}] model {self.name!r} was trained on")
        cond = self.meta["beta_cond"]
        return thermometer(torch.tensor([beta]), int(cond["bins"]), float(cond["low"]), float(cond["high"]))

    def beta_or_default(self, beta: float | None) -> float:
        """The exponent β the model samples at (1/T for unconditional models)."""
        if self.beta_range is None:
            return 1.0 / float(self.meta.get("temperature", 1.0))
        return float(self.meta.get("beta_default", self.beta_range[1])) if beta is None else float(beta)

    @torch.no_grad()
    def tables(self, beta: float | None = None) -> GridTables:
        states = self.env.all_states()
        cond = self.cond_vector(beta)
        out = self.net.raw(states, cond)
        log_pf, log_pb, log_flow = self.net.split(out, states)
        # a detailed-balance model's partition function is its flow at s0; TB learns log Z directly
        log_z = float(log_flow[0]) if self.meta.get("loss") == "db" else float(self.net.log_z(cond).reshape(-1)[0])
        return GridTables(log_pf, log_pb, log_flow, log_z)

    def target_log_p(self, beta: float | None = None) -> torch.Tensor | None:
        """log of the true target ∝ R^β (flat order), if the reward is known."""
        if self.log_reward is None:
            return None
        scaled = self.log_reward.double().flatten() * self.beta_or_default(beta)
        return log_normalize(scaled, f"the true target of {self.name}")

    def fingerprint(self) -> str:
        """Short sha256 of the network weights: ties a guidance classifier to the exact base models it was
        trained on (a retrained or overwritten base with the same name no longer matches)."""
        return weights_fingerprint(self.net)

    # ----- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (an interrupted save leaves the previous file readable)."""
        payload = {
            **network_payload(self.net),
            "meta": self.meta,
            "name": self.name,
        }
        if self.log_reward is not None:
            payload["log_reward"] = self.log_reward.detach().cpu().double()
        return save_checkpoint(path, CHECKPOINT_KIND, payload)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | None = None) -> "GridBaseModel":
        data = load_checkpoint(path, CHECKPOINT_KIND, required=("config", "state_dict", "meta"))
        net = stored_config(path, data, lambda c: GridPolicyNet(GridPolicyConfig(**c)))
        load_state_dict_checked(net, data["state_dict"], path)
        log_reward = data.get("log_reward")
        if log_reward is not None and (not isinstance(log_reward, torch.Tensor) or tuple(log_reward.shape) != net.env.shape):
            raise SculptError(f"{path}: stored log_reward has the wrong shape")
        if not isinstance(data["meta"], dict):
            raise SculptError(f"{path}: metadata is not a dictionary")
        _check_meta(path, data["meta"], net.cfg.cond_dim)
        net.eval()
        model = cls(net, dict(data["meta"]), log_reward, str(data.get("name", Path(path).stem)))
        return model.to(device) if device is not None else model

    def to(self, device: torch.device) -> "GridBaseModel":
        self.net.to(device)
        self.net.env = GridEnv(self.net.cfg.height, self.net.cfg.ndim, device)
        return self


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _check_meta(path: str | Path, meta: dict, cond_dim: int) -> None:
    """SculptError naming the file for metadata the model's methods would trip over: a temperature that is
    not a positive finite number, a β-conditioning window that is not ``0 ≤ low < high`` with as many bins as
    the network has inputs, an unknown loss."""
    for key in ("temperature", "beta_default", "reward_temperature"):
        if key in meta and not _positive(meta[key]):
            raise SculptError(f"{path}: metadata {key!r} must be a positive finite number, got {meta[key]!r}")
    if meta.get("loss") not in (None, "tb", "db"):
        raise SculptError(f"{path}: metadata 'loss' must be 'tb' or 'db', got {meta['loss']!r}")
    cond = meta.get("beta_cond")
    if cond is None:
        if cond_dim:
            raise SculptError(f"{path}: the network is β-conditioned but the metadata has no 'beta_cond'")
        return
    ok = isinstance(cond, dict) and all(isinstance(cond.get(k), (int, float)) and not isinstance(cond.get(k), bool)
                                        and math.isfinite(cond[k]) for k in ("low", "high", "bins"))
    if not ok or not (0 <= cond["low"] < cond["high"]) or cond["bins"] != cond_dim:
        raise SculptError(f"{path}: metadata 'beta_cond' must hold finite 0 ≤ low < high and bins = {cond_dim}, "
                          f"got {cond!r}")
