r"""The composition algebra: what every operator's target distribution is, in one place.

A :class:`Composition` combines m base distributions p_1..p_m (normalised; optionally with their
partition functions Z_i, so that R_i = Z_i p_i). Its single formula, :meth:`Composition.log_combine`,
maps per-model log-values to the unnormalised log-target. It is applied to log p_i(x) to get the
target, and (by the Routing-by-Reaching mixing rule) to a_i = log u_i(s) + log p_iF(s'|s) to get the
composed policy's logits, so the two can never disagree.

Formulas (Garipov et al. 2023, eqs. 5-11; Routing by Reaching for the linear case):

- conditioning on labels y_1..y_n (the augmented model, eq. 10):
      p(x | y) ∝ Π_k p_{y_k}(x) / (Σ_j p_j(x))^{n-1}
  harmonic mean  p1 ⊗ p2 = y=(1,2) ∝ p1 p2 / (p1 + p2)
  contrast       p1 ◑ p2 = y=(1,1) ∝ p1² / (p1 + p2);   reverse contrast y=(2,2) ∝ p2² / (p1 + p2)
- α-parameterised (eq. 7, two models, two labels; label y2's likelihood weights the models by (α, 1-α)):
      p(x | y1, y2; α) ∝ p_{y1} p_{y2} / (α p1 + (1-α) p2)
  (→ p1 as α→0 and → p2 as α→1 for the harmonic mean; the figure label "p1 ◑_{0.95} p2" is α = 0.05)
- chained harmonic mean (eq. 8):  ∝ 1 / Σ_i 1/p_i   (for three models p1p2p3 / (p1p2 + p1p3 + p2p3))
- linear scalarisation:           ∝ Σ_i ω_i R_i = Σ_i ω_i Z_i p_i
- mixture:                        ∝ Σ_i ω_i p_i
and a temperature β on the result: target ∝ (combination)^β.
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass, field

import torch

from sculpt_core.core.metrics import log_normalize
from sculpt_core.errors import SculptError

KINDS = ("labels", "chained_hm", "linear", "mixture")


@dataclass(frozen=True)
class Composition:
    """A composition of ``n_models`` base distributions. Build it with the helper constructors below."""

    kind: str
    n_models: int
    labels: tuple[int, ...] = ()  # y_1..y_n, 1-based model indices (kind == "labels")
    alpha: float | None = None  # eq. 7 parameter (kind == "labels", 2 models, 2 labels)
    weights: tuple[float, ...] = ()  # ω_i (kind in {"linear", "mixture"})
    beta: float = 1.0  # temperature on the result
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.validate()

    # ----- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise SculptError for anything that does not define a distribution."""
        if self.kind not in KINDS:
            raise SculptError(f"unknown composition kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not (isinstance(self.n_models, int) and not isinstance(self.n_models, bool) and self.n_models >= 1):
            raise SculptError(f"a composition needs at least one base model, got {self.n_models!r}")
        if not _finite_positive(self.beta):
            raise SculptError(f"β must be a positive finite number, got {self.beta!r}")
        if self.kind == "labels":
            if not self.labels:
                raise SculptError("conditioning needs at least one observed label y1..yn")
            bad = [y for y in self.labels if not (isinstance(y, int) and not isinstance(y, bool) and 1 <= y <= self.n_models)]
            if bad:
                raise SculptError(f"labels must be model indices in 1..{self.n_models}, got {list(self.labels)}")
            if self.alpha is not None:
                if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and 0.0 < self.alpha < 1.0):
                    raise SculptError(f"α must lie strictly between 0 and 1, got {self.alpha!r}")
                if self.n_models != 2 or len(self.labels) != 2:
                    raise SculptError("α-parameterised operators are defined for two models and two labels (eq. 7)")
        elif self.kind == "chained_hm":
            if self.n_models < 2:
                raise SculptError("a harmonic mean needs at least two models")
        else:
            if len(self.weights) != self.n_models:
                raise SculptError(f"{self.kind} needs one weight per model ({self.n_models}), got {len(self.weights)}")
            if any(not (isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)) for w in self.weights):
                raise SculptError(f"weights must be finite numbers, got {list(self.weights)}")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise SculptError(f"weights must be non-negative with a positive sum, got {list(self.weights)}")

    # ----- the one formula --------------------------------------------------------------------
    def log_combine(self, log_values: torch.Tensor, log_z: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised log of the combination G(v_1..v_m), elementwise over trailing dims.

        ``log_values``: ``[m, ...]`` per-model log-values (log p_i(x), or log u_i(s)+log p_iF(a|s)).
        ``log_z``: ``[m]`` log partition functions (needed only by the linear operator).
        β is applied here too (G^β).
        """
        if log_values.shape[0] != self.n_models:
            raise SculptError(f"composition expects {self.n_models} models, got {log_values.shape[0]}")
        v = log_values.double()
        if self.kind == "labels":
            picked = sum(v[y - 1] for y in self.labels)
            n_extra = len(self.labels) - 1
            if n_extra == 0:
                out = picked
            elif self.alpha is not None:
                denom = torch.logaddexp(v[0] + math.log(self.alpha), v[1] + math.log1p(-self.alpha))
                out = picked - denom
            else:
                out = picked - n_extra * torch.logsumexp(v, dim=0)
        elif self.kind == "chained_hm":
            out = -torch.logsumexp(-v, dim=0)
        else:
            log_w = torch.log(torch.tensor(self.weights, dtype=torch.float64, device=v.device))
            if self.kind == "linear":
                if log_z is None:
                    raise SculptError("linear scalarisation needs the models' partition functions Z_i")
                log_w = log_w + log_z.double().to(v.device)
            out = torch.logsumexp(v + log_w.reshape((-1,) + (1,) * (v.dim() - 1)), dim=0)
        out = out * self.beta
        return out.masked_fill(torch.isnan(out), float("-inf"))  # -inf - (-inf) where every model is zero

    def log_target(self, log_p: torch.Tensor, log_z: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised log target over all objects (``log_p`` is ``[m, n_objects]`` of normalised log p_i)."""
        log_q = self.log_combine(log_p, log_z)
        top = log_q.max() if log_q.numel() else torch.tensor(float("-inf"))
        if bool(top == float("-inf")):
            what = "these models have disjoint support" if self.kind in ("labels", "chained_hm") else "all weights vanish"
            raise SculptError(f"{self.describe()} is undefined: {what}, so the composition has no mass anywhere")
        return log_normalize(log_q, self.describe())  # shifted by the maximum: exact for huge log Z_i too

    # ----- priors used by guidance --------------------------------------------------------------
    def prior_log_weights(self, log_z: torch.Tensor | None = None) -> torch.Tensor:
        """log c_i of the mixture p_M ∝ Σ c_i p_i that guidance starts from: equal for label/HM operators,
        ω_i for mixtures, ω_i Z_i for linear scalarisation (then the mixture IS the target)."""
        if self.kind in ("labels", "chained_hm"):
            return torch.full((self.n_models,), -math.log(self.n_models), dtype=torch.float64)
        log_w = torch.log(torch.tensor(self.weights, dtype=torch.float64))
        if self.kind == "linear":
            if log_z is None:
                raise SculptError("linear scalarisation needs the models' partition functions Z_i")
            log_w = log_w + log_z.double().cpu()
        return log_w - torch.logsumexp(log_w, 0)

    # ----- presentation -----------------------------------------------------------------------
    def describe(self) -> str:
        """Short name, e.g. ``p1 ⊗ p2 (α=0.5)``."""
        if self.name:
            return self.name
        if self.kind == "labels":
            y = "".join(str(i) for i in self.labels)
            a = f", α={self.alpha:g}" if self.alpha is not None else ""
            return f"p(x | y={y}{a})"
        if self.kind == "chained_hm":
            return " ⊗ ".join(f"p{i + 1}" for i in range(self.n_models))
        return f"{self.kind}({', '.join(f'{w:g}' for w in self.weights)})"

    def formula(self) -> str:
        """The unnormalised target as a formula in p_i (and Z_i)."""
        beta = "" if self.beta == 1.0 else f"  (all raised to β={self.beta:g})"
        m = self.n_models
        if self.kind == "labels":
            num = " · ".join(f"p{y}" for y in self.labels)
            n_extra = len(self.labels) - 1
            if n_extra == 0:
                return f"∝ {num}{beta}"
            if self.alpha is not None:
                den = f"({self.alpha:g}·p1 + {1 - self.alpha:g}·p2)"
            else:
                den = "(" + " + ".join(f"p{i + 1}" for i in range(m)) + ")" + (f"^{n_extra}" if n_extra > 1 else "")
            return f"∝ {num} / {den}{beta}"
        if self.kind == "chained_hm":
            return "∝ 1 / (" + " + ".join(f"1/p{i + 1}" for i in range(m)) + ")" + beta
        z = "·Z{i}" if self.kind == "linear" else ""
        terms = " + ".join(f"{w:g}" + z.format(i=i + 1) + f"·p{i + 1}" for i, w in enumerate(self.weights))
        return f"∝ {terms}{beta}"

    def __str__(self) -> str:
        return f"{self.describe()} {self.formula()}"


def _finite_positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


# ----- constructors -------------------------------------------------------------------------------
def conditioning(labels: tuple[int, ...] | list[int], n_models: int, alpha: float | None = None, beta: float = 1.0) -> Composition:
    """p(x | y_1..y_n) in the augmented model of ``n_models`` bases (labels are 1-based, repeats allowed)."""
    return Composition("labels", n_models, tuple(_label(y) for y in labels), alpha, beta=beta)


def _label(y: object) -> int:
    """A label as an int: integers (numpy's too) and integral floats such as 2.0 as they are; a fractional or
    non-numeric label, or a bool, is refused (``int()`` would truncate 1.5 to 1)."""
    if isinstance(y, bool):
        raise SculptError(f"labels must be model numbers 1, 2, …; got {y!r}")
    try:
        as_int = operator.index(y)  # type: ignore[arg-type]
    except TypeError:
        if isinstance(y, numbers.Real) and math.isfinite(float(y)) and float(y).is_integer():
            return int(y)
        raise SculptError(f"labels must be whole model numbers 1, 2, …; got {y!r}") from None
    return int(as_int)


def harmonic_mean(alpha: float | None = None, beta: float = 1.0) -> Composition:
    """p1 ⊗ p2 (α-parameterised if ``alpha`` is given)."""
    return Composition("labels", 2, (1, 2), alpha, beta=beta, name=_alpha_name("p1 ⊗ p2", alpha))


def contrast(alpha: float | None = None, beta: float = 1.0) -> Composition:
    """p1 ◑ p2: "p1 but not p2" (y = (1, 1))."""
    return Composition("labels", 2, (1, 1), alpha, beta=beta, name=_alpha_name("p1 ◑ p2", alpha))


def reverse_contrast(alpha: float | None = None, beta: float = 1.0) -> Composition:
    """p2 ◑ p1: "p2 but not p1" (y = (2, 2))."""
    return Composition("labels", 2, (2, 2), alpha, beta=beta, name=_alpha_name("p2 ◑ p1", alpha))


def chained_harmonic_mean(n_models: int, beta: float = 1.0) -> Composition:
    """Eq. 8: ∝ 1/Σ 1/p_i."""
    return Composition("chained_hm", n_models, beta=beta)


def linear(weights: tuple[float, ...] | list[float], beta: float = 1.0) -> Composition:
    """Linear scalarisation ∝ Σ ω_i R_i (uses the models' Z_i)."""
    return Composition("linear", len(weights), weights=tuple(float(w) for w in weights), beta=beta)


def mixture(weights: tuple[float, ...] | list[float] | None = None, n_models: int | None = None) -> Composition:
    """Mixture ∝ Σ ω_i p_i (equal weights by default)."""
    if weights is None:
        if n_models is None:
            raise SculptError("mixture needs weights or n_models")
        weights = [1.0] * n_models
    return Composition("mixture", len(weights), weights=tuple(float(w) for w in weights))


def _alpha_name(base: str, alpha: float | None) -> str:
    return base if alpha is None else f"{base} (α={alpha:g})"

