"""The composition methods, validated and routed in one place; domains supply only the builders.

- :func:`check_models`: a composition is defined for as many models as were chosen;
- :func:`check_classifier_compat`: whether a classifier can guide a composition (one set of rules and messages);
- :class:`ClassifierGuidance`: the composition-dependent part of classifier guidance, shared by every domain:
  label compositions are guided by the observed labels' posterior, mixtures and linear scalarisations only
  reweight the classifier's y1-posterior by the composition's prior weights (no guidance term);
- :func:`dispatch`: validates the method name and u source and calls the domain's builder for the method.

Method names: ``base`` (one model as is), ``oracle`` (guidance with the exact posterior, enumerable spaces),
``classifier`` (guidance with a learned classifier), ``reaching`` (Routing-by-Reaching mixing, u_i from a
domain-chosen source), ``ensemble`` (the same mixing with u_i = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.core.labels import logit, observed_log_prob, terminal_joint
from sculpt_core.errors import SculptError

METHOD_NAMES = ("base", "oracle", "classifier", "reaching", "ensemble")

T = TypeVar("T")


def check_models(n_bases: int, composition: Composition) -> None:
    """SculptError unless ``composition`` is defined for ``n_bases`` models."""
    if composition.n_models != n_bases:
        raise SculptError(f"{composition.describe()} is defined for {composition.n_models} models, {n_bases} chosen")


def check_classifier_compat(cfg: Any, n_bases: int, composition: Composition,
                            fallback: Sequence[str] = ("reaching",)) -> None:
    """SculptError unless a classifier of shape ``cfg`` (n_models, n_labels, alpha_cond) can guide
    ``composition`` over ``n_bases`` models. ``fallback``: the domain's methods that work without one."""
    check_models(n_bases, composition)
    if cfg.n_models != n_bases:
        raise SculptError(f"this classifier was trained for {cfg.n_models} base models, {n_bases} chosen")
    if composition.kind == "chained_hm":
        raise SculptError("the chained harmonic mean (eq. 8) is not a label posterior, so classifier guidance "
                          f"cannot express it; use the {' or '.join(fallback)} method")
    if composition.kind == "labels":
        if composition.beta != 1.0:
            raise SculptError("classifier guidance samples the composition at β = 1; use reaching for a β on the result")
        if len(composition.labels) > cfg.n_labels:
            raise SculptError(f"this classifier knows {cfg.n_labels} labels, the composition observes {len(composition.labels)}")
        if composition.alpha is not None and not cfg.alpha_cond and abs(composition.alpha - 0.5) > 1e-12:
            raise SculptError("this classifier is not α-conditioned; only α = 0.5 is available")


@dataclass(frozen=True)
class ClassifierGuidance:
    """How a (checked) classifier guides one composition. Build with :meth:`of`.

    ``guided``: a label composition (guidance terms from the observed labels); ``alpha`` / ``logit_alpha``: the α
    the classifier is evaluated at (None unless α-conditioned and the composition has one); ``n_labels``: label
    axes of the terminal joint; ``log_prior``: log c_i of mixtures / linear scalarisation (None when guided)."""

    composition: Composition
    guided: bool
    alpha: float | None
    logit_alpha: float | None
    n_labels: int
    log_prior: torch.Tensor | None

    @classmethod
    def of(cls, composition: Composition, cfg: Any, log_z: torch.Tensor | None = None) -> "ClassifierGuidance":
        guided = composition.kind == "labels"
        use_alpha = guided and composition.alpha is not None and bool(cfg.alpha_cond)
        alpha = composition.alpha if use_alpha else None
        n_labels = max(cfg.n_labels, len(composition.labels)) if guided else cfg.n_labels
        prior = None if guided else composition.prior_log_weights(log_z)
        return cls(composition, guided, alpha, None if alpha is None else logit(alpha), n_labels, prior)

    @staticmethod
    def y1_marginal(log_qn: torch.Tensor) -> torch.Tensor:
        """log Q(y1 = i | s) ``[B, m]`` from the non-terminal joint ``[B, m, …, m]``."""
        return torch.logsumexp(log_qn.flatten(2), 2) if log_qn.dim() > 2 else log_qn

    def mixture_weights(self, log_y1: torch.Tensor) -> torch.Tensor:
        """log mixture weights ``[B, m]`` of the bases at each state: the y1-posterior for label compositions;
        for mixtures / linear the posterior with its uniform prior swapped for the composition's c_i."""
        if self.guided:
            return log_y1
        log_w = log_y1 + self.log_prior.to(log_y1.device)[None, :]
        return log_w - torch.logsumexp(log_w, 1, keepdim=True)

    def observed(self, log_joint: torch.Tensor) -> torch.Tensor:
        """log Q(y = observed labels | ·) ``[B]`` from a joint ``[B, m, …, m]``."""
        return observed_log_prob(log_joint, self.composition.labels)

    def stop_values(self, log_q_terminal: torch.Tensor) -> torch.Tensor:
        """log Q(y | x) ``[B]`` of stopping at x, from the terminal single-label posterior ``[B, m]``."""
        return self.observed(terminal_joint(log_q_terminal, self.n_labels, self.alpha))


def dispatch(
    method: str,
    builders: Mapping[str, Callable[..., T]],
    n_bases: int,
    composition: Composition | None,
    *,
    u_source: str | None = None,
    u_sources: Sequence[str] = (),
    classifier: Any = None,
    classifier_hint: str = "train one first",
) -> T:
    """Validate and route one composition request to the domain's ``builders`` (its method names, in order).

    ``builders["base"]()``, ``builders["classifier"](classifier)``, ``builders["reaching"](u_source)``, and
    ``builders[m]()`` for the other methods; ``u_source`` (if given) must be one of ``u_sources``."""
    unknown = [name for name in builders if name not in METHOD_NAMES]
    if unknown:
        raise SculptError(f"no such composition method {unknown[0]!r}; one of {', '.join(METHOD_NAMES)}")
    if method not in builders:
        raise SculptError(f"unknown method {method!r}; one of {', '.join(builders)}")
    if u_source is not None and u_source not in u_sources:
        raise SculptError(f"unknown u source {u_source!r}; one of {', '.join(u_sources)}")
    if method == "base":
        if n_bases != 1:
            raise SculptError(f"method 'base' samples ONE base model, got {n_bases}")
        return builders["base"]()
    if composition is None:
        raise SculptError(f"method {method!r} needs a composition (labels y or weights)")
    check_models(n_bases, composition)
    if method == "classifier":
        if classifier is None:
            raise SculptError(f"no classifier for these base models: {classifier_hint}")
        return builders["classifier"](classifier)
    if method == "reaching":
        return builders["reaching"](u_source)
    return builders[method]()


__all__ = ["ClassifierGuidance", "METHOD_NAMES", "check_classifier_compat", "check_models", "dispatch"]
