"""A trained molecule base GFlowNet: graph policy network + fragment library + metadata.

The checkpoint is self-contained: it stores the fragment library (SMILES and attachment atoms) next to
the weights, so a model trained on a library subset reloads with the same action layout, and loading never
needs the shared data folder. Files are written atomically and read with ``weights_only=True``
(:mod:`sculpt_core.core.checkpoint`).

Batched queries (``states`` is a list of :class:`~sculpt_core.domains.molecules.env.FragState`; ``beta`` a float or
a ``[B]`` tensor, one exponent per state):

* ``log_pf(states, beta)``  masked, normalised forward log-probs ``[B, n_actions]`` (``-inf`` = invalid);
* ``log_flow(states, beta)`` learned state log-flow log F(s) ``[B]`` (reaching: log u(s) = log F(s) − log F(s0));
* ``log_z(beta)``            learned log Z(β);
* ``log_pb(states, actions, next_states)`` the uniform backward policy used in training, ``−log n_parents(s')``
  for moves and 0 for Stop (as in the paper's fragment environment: P_B is uniform over the ways to undo the
  last step, and the Stop transition has P_B = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from sculpt_core.domains.molecules.fragments import FragmentLibrary
from sculpt_core.domains.molecules.env import FragmentEnv, FragState
from sculpt_core.errors import SculptError
from sculpt_core.core.checkpoint import check_meta_numbers, load_checkpoint, load_state_dict_checked, network_payload, save_checkpoint, stored_config, weights_fingerprint
from sculpt_core.domains.molecules.policy import MolPolicyConfig, MolPolicyNet

CHECKPOINT_KIND = "sculpt.mol_base_model"


def library_to_dict(lib: FragmentLibrary) -> dict[str, list]:
    """Plain lists (safe for weights_only checkpoints) describing a fragment library."""
    return {"smiles": list(lib.smiles), "attachments": [list(a) for a in lib.attachments],
            "source_index": list(lib.source_index)}


def library_from_dict(data: Any, where: str) -> FragmentLibrary:
    try:
        return FragmentLibrary.from_lists(data["smiles"], data["attachments"], data.get("source_index"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise SculptError(f"{where}: stored fragment library is malformed ({exc})") from None


@dataclass
class MolBaseModel:
    """A molecule GFlowNet. ``meta``: reward, beta_range, train figures (steps, seconds, high-bin history…)."""

    net: MolPolicyNet
    env: FragmentEnv
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = "model"

    # ----- construction ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, env: FragmentEnv, hidden: int = 64, n_layers: int = 4, meta: dict | None = None,
               name: str = "model", beta_high: float = 96.0) -> "MolBaseModel":
        """A fresh, untrained model for ``env`` (thermometer over [0, beta_high], 32 bins)."""
        cfg = MolPolicyConfig(env.n_frags, env.max_frags, hidden, n_layers, 32, 0.0, float(beta_high))
        return cls(MolPolicyNet(cfg), env, dict(meta or {}), name)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def beta_range(self) -> tuple[float, float]:
        """The exponent range the model was trained on (defaults to the thermometer range)."""
        rng = self.meta.get("beta_range")
        if rng is None:
            return (self.net.cfg.beta_low, self.net.cfg.beta_high)
        return (float(rng[0]), float(rng[1]))

    # ----- conditioning ----------------------------------------------------------------------------------
    def betas(self, beta: float | torch.Tensor, n: int) -> torch.Tensor:
        """β as a float tensor ``[n]`` on the model's device, validated against the trained range."""
        b = torch.as_tensor(beta, dtype=torch.float32).to(self.device)
        if b.dim() == 0:
            b = b.expand(n)
        if b.shape != (n,):
            raise SculptError(f"beta must be a number or a tensor of {n} values, got shape {tuple(b.shape)}")
        low, high = self.beta_range
        if not torch.isfinite(b).all() or (b < low - 1e-6).any() or (b > high + 1e-6).any():
            bad = b[~torch.isfinite(b) | (b < low - 1e-6) | (b > high + 1e-6)][0].item()
            raise SculptError(f"β = {bad:g} is outside the range [{low:g}, {high:g}] model {self.name!r} was trained on")
        return b

    def cond(self, beta: float | torch.Tensor, n: int) -> torch.Tensor:
        return self.net.encode_beta(self.betas(beta, n))

    # ----- batched queries -------------------------------------------------------------------------------
    def _run(self, states: Sequence[FragState], beta: float | torch.Tensor):
        if len(states) == 0:
            raise SculptError("no states given")
        batch = self.env.batch_graphs(states).to(self.device)
        out = self.net(batch, self.cond(beta, len(states)))
        return batch, out

    def log_pf(self, states: Sequence[FragState], beta: float | torch.Tensor) -> torch.Tensor:
        """Masked, normalised forward log-probs ``[B, n_actions]`` (float32, ``-inf`` for invalid actions)."""
        batch, out = self._run(states, beta)
        return self.net.masked_log_probs(batch, out, self.env.forward_mask(states).to(self.device))

    def log_pf_and_flow(self, states: Sequence[FragState], beta: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both from one forward pass: (log p_F ``[B, A]``, log F ``[B]``)."""
        batch, out = self._run(states, beta)
        return self.net.masked_log_probs(batch, out, self.env.forward_mask(states).to(self.device)), out.log_flow

    def log_flow(self, states: Sequence[FragState], beta: float | torch.Tensor) -> torch.Tensor:
        """Learned log F(s) ``[B]``; log u(s) = log F(s) − log F(s0) is the reaching probability ("Model F")."""
        return self._run(states, beta)[1].log_flow

    def log_z(self, beta: float | torch.Tensor) -> torch.Tensor:
        """Learned log Z(β): a 0-dim tensor for a number, ``[B]`` for a ``[B]`` tensor."""
        scalar = torch.as_tensor(beta).dim() == 0
        out = self.net.log_z(self.cond(beta, 1 if scalar else int(torch.as_tensor(beta).numel())))
        return out[0] if scalar else out

    def log_pb(self, states: Sequence[FragState], actions: torch.Tensor | Sequence[int],
               next_states: Sequence[FragState]) -> torch.Tensor:
        """Uniform backward log-prob of each transition ``[B]`` (float64): −log n_parents(s') for a move,
        0 for Stop (the ⊤ transition has P_B = 1). ``states`` is unused (kept for the composition protocol)."""
        acts = torch.as_tensor(actions).reshape(-1).to(self.device)
        if len(next_states) != acts.numel():
            raise SculptError(f"{len(next_states)} next states but {acts.numel()} actions")
        lp = -self.env.log_n_parents(next_states).to(self.device)
        return torch.where(acts == self.env.stop_action, torch.zeros_like(lp), lp)

    # ----- adapters ----------------------------------------------------------------------------------------
    def policy(self, beta: float) -> "MolModelPolicy":
        """This model at a fixed β as a sampling :class:`~sculpt_core.core.sampling.Policy`."""
        self.betas(beta, 1)
        return MolModelPolicy(self, float(beta))

    def forward_fn(self, beta: float):
        """``states -> log p_F [B, A]`` without gradients (for ``compose.reaching.TrajectoryProductPolicy``)."""
        self.betas(beta, 1)

        def fn(states: Sequence[FragState]) -> torch.Tensor:
            with torch.no_grad():
                return self.log_pf(states, beta)

        return fn

    def backward_fn(self):
        """``(states, actions, next_states) -> log p_B [B]`` (uniform over parents, 0 for Stop)."""
        return self.log_pb

    def fingerprint(self) -> str:
        """Short sha256 of all network weights, the flow head included (keys of sample caches: flow-u reaching
        reads the flow head)."""
        return weights_fingerprint(self.net)

    def policy_fingerprint(self) -> str:
        """Short sha256 of the weights the forward policy and log Z depend on: everything but the state-flow head,
        which reads the trunk detached (refitting it, :mod:`~sculpt_core.domains.molecules.flow_fit`, changes no
        p_F). Ties a guidance classifier to the base models it was trained on: classifiers are trained on p_F only,
        so a retrained policy no longer matches and a refitted flow head still does."""
        return weights_fingerprint(self.net, exclude=("flow_head.",))

    def matches_fingerprint(self, recorded: str) -> bool:
        """Whether a classifier's recorded fingerprint is this model's: its policy fingerprint, or the full-weights
        fingerprint classifiers recorded before policy fingerprints existed (a full match implies a policy match)."""
        return recorded == self.policy_fingerprint() or recorded == self.fingerprint()

    # ----- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (an interrupted save leaves the previous file readable)."""
        payload = {
            **network_payload(self.net),
            "library": library_to_dict(self.env.library),
            "meta": self.meta,
            "name": self.name,
        }
        return save_checkpoint(path, CHECKPOINT_KIND, payload)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> "MolBaseModel":
        """Load a checkpoint (``weights_only``); anything corrupt or inconsistent raises SculptError."""
        data = load_checkpoint(path, CHECKPOINT_KIND, required=("config", "state_dict", "library", "meta"))
        net = stored_config(path, data, lambda c: MolPolicyNet(MolPolicyConfig(**c)))
        cfg = net.cfg
        load_state_dict_checked(net, data["state_dict"], path)
        if not isinstance(data["meta"], dict):
            raise SculptError(f"{path}: metadata is not a dictionary")
        rng = data["meta"].get("beta_range")
        if rng is not None and not (isinstance(rng, (list, tuple)) and len(rng) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rng)
                and 0 <= rng[0] < rng[1]):
            raise SculptError(f"{path}: metadata 'beta_range' must be two finite numbers 0 ≤ low < high, got {rng!r}")
        check_meta_numbers(path, data["meta"], {"steps": "count", "train_seconds": "nonnegative"})
        lib = library_from_dict(data["library"], str(path))
        if lib.n_frags != cfg.n_frags:
            raise SculptError(f"{path}: library has {lib.n_frags} fragments, the network {cfg.n_frags}")
        env = FragmentEnv(lib, max_frags=cfg.max_frags)
        net.eval()
        model = cls(net, env, dict(data["meta"]), str(data.get("name", Path(path).stem)))
        if device is not None:
            model.net.to(device)
        return model

    def to(self, device: torch.device | str) -> "MolBaseModel":
        self.net.to(device)
        return self


@dataclass
class MolModelPolicy:
    """A :class:`MolBaseModel` at fixed β, implementing the sampling Policy protocol (stateless)."""

    model: MolBaseModel
    beta: float

    @property
    def env(self) -> FragmentEnv:
        return self.model.env

    def start(self, n: int) -> None:
        return None

    def log_probs(self, states: Sequence[FragState], carry: Any) -> torch.Tensor:
        return self.model.log_pf(states, self.beta)

    def advance(self, carry: Any, states: Sequence[FragState], actions: torch.Tensor,
                next_states: Sequence[FragState]) -> None:
        return None


@dataclass
class PerTrajectoryBetaPolicy:
    """The model with one β per trajectory (carried), as used by on-policy training roll-outs."""

    model: MolBaseModel
    betas: torch.Tensor  # [n]

    @property
    def env(self) -> FragmentEnv:
        return self.model.env

    def start(self, n: int) -> torch.Tensor:
        if n != self.betas.numel():
            raise SculptError(f"policy holds {self.betas.numel()} β values, asked for {n} trajectories")
        return self.betas

    def log_probs(self, states: Sequence[FragState], carry: torch.Tensor) -> torch.Tensor:
        return self.model.log_pf(states, carry)

    def advance(self, carry: torch.Tensor, states: Sequence[FragState], actions: torch.Tensor,
                next_states: Sequence[FragState]) -> torch.Tensor:
        return carry


__all__ = ["CHECKPOINT_KIND", "MolBaseModel", "MolModelPolicy", "PerTrajectoryBetaPolicy", "library_from_dict",
           "library_to_dict"]
