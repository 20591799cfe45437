"""The operator vocabulary: one key per composition operator ("hm", "contrast", "reverse", "chained_hm",
"labels", "linear", "mixture"), its label, how it builds a :class:`~sculpt_core.core.algebra.Composition` and
whether the α of the two-label posterior p(x | y1, y2; α) ∝ p_y1 p_y2 / (α p1 + (1-α) p2) applies.

Also the parsing of the free-text inputs some operators take (observed labels, weights). Pure: no UI, no domain.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Literal

from sculpt_core.core import algebra as A
from sculpt_core.errors import SculptError

ALPHA_RANGE = (0.01, 0.99)
MAX_LABELS = 6

Builder = Callable[[int, "float | None", tuple[int, ...], tuple[float, ...]], A.Composition]


@dataclass(frozen=True)
class Operator:
    """One composition operator.

    ``build(m, alpha, labels, weights)`` makes the composition of ``m`` models; ``inputs`` names the free-text
    input it reads ("labels", "weights" or none); ``fixed_labels`` are the observed labels of the two-model
    operators (α applies to them); ``takes_alpha`` says α can apply at all (two models, two labels)."""

    name: str
    label: str
    build: Builder
    takes_alpha: bool = False
    fixed_labels: tuple[int, ...] | None = None
    inputs: Literal["", "labels", "weights"] = ""

    @property
    def two_models(self) -> bool:
        """Defined for exactly two models."""
        return self.fixed_labels is not None


OPERATORS: dict[str, Operator] = {
    "hm": Operator("harmonic mean", "harmonic mean — A and B  (p1 ⊗ p2)",
                   lambda m, a, y, w: A.harmonic_mean(a), takes_alpha=True, fixed_labels=(1, 2)),
    "contrast": Operator("contrast", "contrast — A but not B  (p1 ◑ p2)",
                         lambda m, a, y, w: A.contrast(a), takes_alpha=True, fixed_labels=(1, 1)),
    "reverse": Operator("reverse contrast", "reverse contrast — B but not A  (p2 ◑ p1)",
                        lambda m, a, y, w: A.reverse_contrast(a), takes_alpha=True, fixed_labels=(2, 2)),
    "chained_hm": Operator("chained harmonic mean", "chained harmonic mean — all of them (eq. 8)",
                           lambda m, a, y, w: A.chained_harmonic_mean(m)),
    "labels": Operator("custom labels", "custom labels y1..yn (with multiplicities)",
                       lambda m, a, y, w: A.conditioning(y, m, a), takes_alpha=True, inputs="labels"),
    "linear": Operator("linear weights", "linear weights  Σ ω_i R_i", lambda m, a, y, w: A.linear(w),
                       inputs="weights"),
    "mixture": Operator("mixture", "mixture  Σ ω_i p_i", lambda m, a, y, w: A.mixture(w), inputs="weights"),
}
OPERATOR_LABELS: dict[str, str] = {key: op.label for key, op in OPERATORS.items()}
TWO_MODEL_OPS: tuple[str, ...] = tuple(key for key, op in OPERATORS.items() if op.two_models)


def _split(text: str) -> list[str]:
    return [p for p in re.split(r"[,\s;]+", (text or "").strip()) if p]


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def parse_int(text: str, what: str) -> int:
    """An integer written with the ASCII digits 0-9 (``int()`` would also take ``"1_0"`` or Arabic-Indic
    digits, and fails on superscripts that ``str.isdigit()`` accepts); SculptError naming ``what`` otherwise."""
    token = str(text).strip()
    if not _INT.fullmatch(token):
        raise SculptError(f"{what} must be an integer written with the digits 0-9, got {text!r}")
    return int(token)


def parse_float(text: str, what: str) -> float:
    """A finite decimal number (``1``, ``-0.5``, ``2e-3``); SculptError naming ``what`` otherwise."""
    token = str(text).strip()
    value = float(token) if _FLOAT.fullmatch(token) else math.nan
    if not math.isfinite(value):
        raise SculptError(f"{what} must be a finite decimal number, got {text!r}")
    return value


def parse_labels(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` / ``"y1 y1 y2"`` → (1, 2, 3) / (1, 1, 2). Raises SculptError for anything else."""
    parts = _split(text)
    if not parts:
        raise SculptError("enter the observed labels, e.g. 1,2 (harmonic mean) or 1,1 (contrast)")
    if len(parts) > MAX_LABELS:
        raise SculptError(f"at most {MAX_LABELS} labels, got {len(parts)}")
    out = []
    for part in parts:
        token = part[1:] if part[:1] in ("y", "Y") else part
        if not (token.isascii() and token.isdigit()):  # "¹".isdigit() is True, and int("¹") fails
            raise SculptError(f"labels must be model numbers like 1,2,3 (digits 0-9, repeats allowed); {part!r} is not one")
        out.append(int(token))
    return tuple(out)


def parse_weights(text: str, m: int) -> tuple[float, ...]:
    """``"1, 0.5"`` → (1.0, 0.5); one finite weight per model. Raises SculptError."""
    try:
        weights = tuple(parse_float(p, "a weight") for p in _split(text))
    except SculptError:
        raise SculptError(f"weights must be finite numbers separated by commas, e.g. {','.join(['1'] * m)}; "
                          f"got {text!r}") from None
    if len(weights) != m:
        raise SculptError(f"give one weight per chosen model ({m}), got {len(weights)}: {text!r}")
    if any(not math.isfinite(w) for w in weights):
        raise SculptError(f"weights must be finite numbers, got {text!r}")
    return weights


def alpha_applies(op: str, m: int, labels_text: str = "") -> bool:
    """Whether α means something: two models and an operator with two observed labels."""
    spec = OPERATORS.get(op)
    if m != 2 or spec is None or not spec.takes_alpha:
        return False
    if spec.fixed_labels is not None:
        return len(spec.fixed_labels) == 2
    try:
        return len(parse_labels(labels_text)) == 2
    except SculptError:
        return False


def build_composition(op: str, m: int, alpha: float | None, labels_text: str = "", weights_text: str = "") -> A.Composition:
    """The composition operator ``op`` of ``m`` models describes. Raises SculptError saying what to do when it
    is undefined."""
    spec = OPERATORS.get(op)
    if spec is None:
        raise SculptError(f"unknown operator {op!r}")
    if m < 2:
        raise SculptError("choose at least two base models to compose")
    if spec.two_models and m != 2:
        raise SculptError(f"the {spec.name} is defined for two models, {m} chosen: "
                          "drop one, or use the chained harmonic mean or custom labels such as 1,2,3")
    labels: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    if spec.inputs == "labels":
        labels = parse_labels(labels_text)
        bad = [y for y in labels if y > m or y < 1]
        if bad:
            raise SculptError(f"label {bad[0]} refers to model {bad[0]}, but only {m} models are chosen: "
                              f"use labels in 1..{m}")
        if not (m == 2 and len(labels) == 2):
            alpha = None
    elif spec.inputs == "weights":
        weights = parse_weights(weights_text, m)
    return spec.build(m, alpha if spec.takes_alpha else None, labels, weights)


def composition_key(c: A.Composition) -> tuple:
    """A hashable identity of a composition (its name is presentation only)."""
    return (c.kind, c.n_models, c.labels, c.alpha, c.weights, c.beta)


__all__ = ["ALPHA_RANGE", "OPERATORS", "OPERATOR_LABELS", "Operator", "TWO_MODEL_OPS", "alpha_applies",
           "build_composition", "composition_key", "parse_float", "parse_int", "parse_labels", "parse_weights"]
