"""Widgets shared by the pages."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import streamlit as st

from sculpt_core.core.operators import ALPHA_RANGE, OPERATOR_LABELS, OPERATORS, alpha_applies


#: The α slider's step (one arrow-key press).
ALPHA_STEP = 0.01
#: The labels box's value when nothing was typed yet: the harmonic mean of the first two models.
DEFAULT_LABELS = "1,2"


def operator_short_label(key: str) -> str:
    """An operator's name as the select box shows it: short enough for the sidebar (the full label with its
    formula is the caption under the box and the help)."""
    return OPERATORS[key].name if key in OPERATORS else str(key)


def operator_caption(key: str) -> str:
    """The full label of operator ``key`` (what the short name means), e.g. "A and B (p1 ⊗ p2)"."""
    full = OPERATOR_LABELS.get(key, str(key))
    name = OPERATORS[key].name if key in OPERATORS else ""
    rest = full[len(name):].strip(" —") if name and full.startswith(name) else full
    return " ".join(rest.split()) or full


#: Every operator in full, for the select box's help tooltip.
OPERATOR_HELP = "\n".join(f"- **{op.name}**: {operator_caption(k)}" for k, op in OPERATORS.items())


def operator_controls(container: Any, prefix: str, m: int,
                      on_alpha_change: Callable[[], None] | None = None) -> tuple[str, bool, float]:
    """The operator widgets of a page's sidebar (operator, labels, weights, α), keyed ``{prefix}_op`` etc.:
    returns (operator, whether α applies, α). Weights reset to equal ones when the number of models changes.
    ``on_alpha_change`` runs when the user moves the α slider."""
    ss = st.session_state
    op = container.selectbox("Operator", list(OPERATORS), format_func=operator_short_label, key=f"{prefix}_op",
                             help=OPERATOR_HELP)
    container.caption(operator_caption(op))
    inputs = OPERATORS[op].inputs
    if inputs == "labels":
        key, kept = f"{prefix}_labels", f"_{prefix}_labels_kept"
        if key not in ss:  # a rerun (e.g. of a fragment) that did not draw the box dropped its state
            ss[key] = ss.get(kept, DEFAULT_LABELS)
        container.text_input("Observed labels y1..yn", key=key,
                             help="Model numbers, repeats allowed: 1,2 = harmonic mean, 1,1 = contrast, "
                                  "1,2,3 = all three.")
        ss[kept] = ss[key]
    if inputs == "weights":
        if not ss.get(f"{prefix}_weights") or ss.get(f"{prefix}_weights_m", m) != m:
            ss[f"{prefix}_weights"] = ",".join(["1"] * max(m, 1))
        ss[f"{prefix}_weights_m"] = m
        container.text_input("Weights ω1..ωm", key=f"{prefix}_weights",
                             help="One non-negative number per chosen model, e.g. 1,0.5")
    alpha_ok = alpha_applies(op, m, ss.get(f"{prefix}_labels", ""))
    alpha = container.slider("α (eq. 7: weight of p1 vs p2 in the denominator)", ALPHA_RANGE[0], ALPHA_RANGE[1],
                             step=ALPHA_STEP, key=f"{prefix}_alpha", disabled=not alpha_ok, on_change=on_alpha_change,
                             help="p(x | y1, y2; α) ∝ p_y1 p_y2 / (α p1 + (1-α) p2); α = 0.5 is the plain operator.")
    if not alpha_ok:
        container.caption("α applies to two models with two labels (eq. 7)"
                          + (f"; with {m} models it is undefined." if m != 2 else "; this operator has no α."))
    return op, alpha_ok, float(alpha)


def classifier_note(method: str, composition: Any, classifier: Any, alternatives: Sequence[str],
                    fallback: Sequence[str]) -> str | None:
    """Why classifier guidance cannot sample ``composition`` (a neutral note naming ``alternatives``, the domain's
    methods that need no classifier; ``fallback`` their method keys), or None (also for any other ``method``).
    Without ``classifier`` only what holds for any classifier is checked."""
    if method != "classifier":
        return None
    if composition.kind == "chained_hm":
        return ("Classifier guidance does not apply to the chained harmonic mean (eq. 8): it is not a label "
                f"posterior, so no classifier can express it. Use {' or '.join(alternatives)} for it, or the custom "
                "labels operator (e.g. 1,2,3) to condition on all the bases with the classifier.")
    if classifier is None:
        return None
    from sculpt_core.core.methods import check_classifier_compat
    from sculpt_core.errors import SculptError

    try:
        check_classifier_compat(classifier.cfg, composition.n_models, composition, fallback=tuple(fallback))
    except SculptError as exc:
        return f"Classifier guidance does not apply here: {exc}. Needs no classifier: {', '.join(alternatives)}."
    return None


__all__ = ["ALPHA_STEP", "DEFAULT_LABELS", "OPERATOR_HELP", "classifier_note", "operator_caption", "operator_controls",
           "operator_short_label"]
