"""The grid label classifier of classifier guidance, for m models and n labels.

It generalises the paper's two grid classifiers (two models with α, three models) to any m and n: a trunk
Linear → LeakyReLU → Linear on the state encoding, and two linear heads, each softmax with a constant 0 logit.

- Non-terminal head: the JOINT log Q_N(y_1..y_n | s) over all m^n label tuples (the labels are dependent
  given a non-terminal state; only the terminal classifier factorises).
- Terminal head: log Q_T(y = i | x), m-way. The terminal joint is Σ_k log Q_T(y_k | x); with α (two models,
  two labels, eq. 7) label y2 uses the reweighted likelihood Q_T(y2=i|x;α) ∝ (α, 1-α)_i Q_T(i|x).
- Mixture head (optional, the "chain" objective): log P(i | s), the posterior of the generating model given
  that its trajectory passes through s, used as the mixture weights of guidance.
- α-conditioning: logit α is an extra input for non-terminal states and is concatenated to the non-terminal
  head's input. Terminal states see 0 there, so the terminal head cannot depend on α; α reaches the terminal
  joint only through label y2's reweighted likelihood.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sculpt_core.core.checkpoint import load_checkpoint, load_state_dict_checked, network_payload, save_checkpoint, stored_config
from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError

CLASSIFIER_KIND = "sculpt.grid_classifier"


@dataclass(frozen=True)
class GridClassifierConfig:
    height: int = 32
    ndim: int = 2
    n_models: int = 2
    n_labels: int = 2
    alpha_cond: bool = False
    hidden: int = 256
    mixture_head: bool = False  # log P(i | s), the mixture weights of guidance (trained by the "chain" objective)

    def __post_init__(self) -> None:
        if self.alpha_cond and (self.n_models != 2 or self.n_labels != 2):
            raise SculptError("α-conditioning is defined for two models and two labels")
        if self.n_models ** self.n_labels > 4096:
            raise SculptError("too many label combinations (m^n > 4096)")

    def to_dict(self) -> dict:
        return asdict(self)


class GridClassifier(nn.Module):
    def __init__(self, cfg: GridClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.env = GridEnv(cfg.height, cfg.ndim)
        extra = 1 if cfg.alpha_cond else 0
        self.trunk = nn.Sequential(
            nn.Linear(self.env.input_dim + extra, cfg.hidden), nn.LeakyReLU(), nn.Linear(cfg.hidden, cfg.hidden)
        )
        self.nonterminal_head = nn.Linear(cfg.hidden + extra, cfg.n_models**cfg.n_labels - 1)
        self.terminal_head = nn.Linear(cfg.hidden, cfg.n_models - 1)
        if cfg.mixture_head:
            self.mixture_head = nn.Linear(cfg.hidden, cfg.n_models - 1)

    @property
    def joint_shape(self) -> tuple[int, ...]:
        return (self.cfg.n_models,) * self.cfg.n_labels

    def _cond(self, n: int, logit_alpha: torch.Tensor | float | None, device: torch.device) -> torch.Tensor:
        if logit_alpha is None:
            logit_alpha = 0.0
        return torch.as_tensor(logit_alpha, dtype=torch.float32, device=device).reshape(-1, 1).expand(n, 1)

    def log_q_nonterminal(self, states: torch.Tensor, logit_alpha: torch.Tensor | float | None = None) -> torch.Tensor:
        """log Q_N(y_1..y_n | s): ``[B, m, ..., m]`` (n label axes), normalised over all tuples."""
        x = self.env.encode(states)
        if self.cfg.alpha_cond:
            cond = self._cond(len(x), logit_alpha, x.device)
            h = self.trunk(torch.cat([x, cond], 1))
            logits = self.nonterminal_head(torch.cat([h, cond], 1))
        else:
            logits = self.nonterminal_head(self.trunk(x))
        logits = torch.cat([logits, torch.zeros_like(logits[:, :1])], 1)
        return torch.log_softmax(logits, 1).reshape((len(x),) + self.joint_shape)

    def _alpha_free(self, states: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """An m-way head on the trunk with the α input at 0 (its output cannot depend on α)."""
        x = self.env.encode(states)
        if self.cfg.alpha_cond:
            x = torch.cat([x, torch.zeros_like(x[:, :1])], 1)
        logits = head(self.trunk(x))
        return torch.log_softmax(torch.cat([logits, torch.zeros_like(logits[:, :1])], 1), 1)

    def log_q_terminal_single(self, states: torch.Tensor) -> torch.Tensor:
        """log Q_T(y = i | x): ``[B, m]``."""
        return self._alpha_free(states, self.terminal_head)

    def log_mixture_weights(self, states: torch.Tensor, logit_alpha: torch.Tensor | float | None = None
                            ) -> torch.Tensor | None:
        """log P(i | s) ``[B, m]``, which base model's trajectory passes through s (None without a mixture head:
        guidance then uses the y1-marginal of the non-terminal joint)."""
        return self._alpha_free(states, self.mixture_head) if self.cfg.mixture_head else None


# ----- persistence -----------------------------------------------------------------------------
def save_classifier(path: str | Path, net: GridClassifier, base_names: list[str], meta: dict,
                    base_fingerprints: list[str] | None = None) -> Path:
    """Weights + config + base names + metadata, written atomically (``core.checkpoint``). ``base_fingerprints``
    (``GridBaseModel.fingerprint()`` of each base, in order) go into ``meta["base_fingerprints"]``: a classifier
    is only used with the exact bases it was trained on."""
    if base_fingerprints is not None:
        if len(base_fingerprints) != len(base_names):
            raise SculptError(f"{len(base_fingerprints)} base fingerprints for {len(base_names)} bases")
        meta = {**meta, "base_fingerprints": [str(f) for f in base_fingerprints]}
    return save_checkpoint(path, CLASSIFIER_KIND, {
        **network_payload(net),
        "bases": list(base_names),
        "meta": meta,
    })


def load_classifier(path: str | Path) -> tuple[GridClassifier, list[str], dict]:
    """(classifier in eval mode, base names, metadata) from a checkpoint (``weights_only``; SculptError when bad)."""
    data = load_checkpoint(path, CLASSIFIER_KIND, required=("config", "state_dict", "bases"))
    net = stored_config(path, data, lambda c: GridClassifier(GridClassifierConfig(**c)), "classifier")
    load_state_dict_checked(net, data["state_dict"], path)
    net.eval()
    bases, meta = data["bases"], data.get("meta", {})
    if not isinstance(bases, (list, tuple)) or not isinstance(meta, dict):
        raise SculptError(f"{path}: 'bases' must be a list and 'meta' a dictionary")
    if len(bases) != net.cfg.n_models:
        raise SculptError(f"{path}: names {len(bases)} bases for a classifier of {net.cfg.n_models} models")
    fps = meta.get("base_fingerprints")
    if fps is not None and not (isinstance(fps, (list, tuple)) and len(fps) == len(bases)
                                and all(isinstance(f, str) for f in fps)):
        raise SculptError(f"{path}: 'base_fingerprints' must be one string per base model")
    return net, [str(b) for b in bases], dict(meta)
