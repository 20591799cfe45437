"""What the Molecule Sculpting page puts beside its samples: each method's Table-1-style figures (high fractions,
all-high fraction, uniqueness, diversity, molecules/s) and, when the view is one of the paper's Table 1 rows, that
row's percentages. Pure functions (no Streamlit); the paper's numbers come from
``domains/molecules/metrics.py`` (``PAPER_TABLE1``) and the rows from ``domains/molecules/table1.py``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sculpt_core.core import algebra as A
from sculpt_core.domains.molecules.metrics import PAPER_TABLE1, PAPER_TABLE1_LABELS, TABLE1_NAMES, TABLE1_THRESHOLDS
from sculpt_core.domains.molecules.table1 import TABLE1_ROWS

#: The β of every row of the paper's Table 1.
PAPER_BETA = 32.0
#: The figure cards of one sample set, in the order every column shows them (so columns line up).
FIGURE_KEYS = ("mol_per_s", "seh", "sa", "qed", "all_high", "unique", "diversity")
REWARD_TITLES = {"seh": "sEH", "sa": "SA", "qed": "QED"}


def figure_label(key: str) -> str:
    """The card title of figure ``key``."""
    if key in TABLE1_NAMES:
        return f"high {key} (≥ {dict(zip(TABLE1_NAMES, TABLE1_THRESHOLDS))[key]:g})"
    return {"mol_per_s": "molecules / s", "all_high": "all high", "unique": "unique",
            "diversity": "diversity"}[key]


@dataclass(frozen=True)
class PaperMatch:
    """The paper's Table 1 row of a view (``key`` None when the view is not one) and the sentence that says so."""

    key: str | None
    text: str


def _row_of_rewards(rewards: Counter) -> str | None:
    """The Table 1 composition row whose labels name exactly these rewards (with their repeats)."""
    for key, row in TABLE1_ROWS.items():
        if row.labels is not None and key in PAPER_TABLE1:
            if Counter(TABLE1_NAMES[y - 1] for y in row.labels) == rewards:
                return key
    return None


def paper_row(base_rewards: Sequence[str | None], composition: A.Composition, beta: float) -> PaperMatch:
    """Match the view to a row of the paper's Table 1: the three bases sEH, SA and QED (in any order: the labels
    are read as the rewards of the bases they name), an observed-label composition (labels operator, no α, no
    posterior β) whose labels name the row's rewards, and β = 32."""
    none = "not a row of the paper's Table 1"
    if sorted(r for r in base_rewards if r) != sorted(TABLE1_NAMES) or len(base_rewards) != 3:
        return PaperMatch(None, f"{none} (its rows compose the three bases sEH, SA and QED)")
    if composition.kind != "labels" or composition.alpha is not None or composition.beta != 1.0:
        return PaperMatch(None, f"{none} (its rows condition on observed labels y, e.g. the labels operator 1,2,3)")
    rewards = Counter(base_rewards[y - 1] for y in composition.labels)
    key = _row_of_rewards(rewards)
    if key is None:
        return PaperMatch(None, f"{none} (no row conditions on these labels)")
    label = PAPER_TABLE1_LABELS[key]
    if abs(float(beta) - PAPER_BETA) > 1e-9:
        return PaperMatch(None, f"{none} at β = {beta:g}: row {label} is sampled at β = {PAPER_BETA:g}")
    return PaperMatch(key, f"row {label} of the paper's Table 1 (classifier guidance, β = {PAPER_BETA:g})")


def paper_figures(key: str) -> dict[str, float]:
    """The paper's row ``key`` as fractions: high sEH, high SA, high QED (sums of its bins) and all high."""
    from sculpt_core.domains.molecules.viz import table1_codes

    percent = PAPER_TABLE1[key]
    out = {name: sum(p for code, p in zip(table1_codes(), percent) if code[j] == "1") / 100.0
           for j, name in enumerate(TABLE1_NAMES)}
    out["all_high"] = percent[-1] / 100.0
    return out


def set_figures(samples: Any, uniqueness: float, diversity: float | None) -> dict[str, float | None]:
    """The figures of one :class:`~sculpt_core.app.molecules.MolSamples` (fractions; None where not scored)."""
    return {"mol_per_s": samples.molecules_per_s, **samples.high_fractions(), "all_high": samples.all_high(),
            "unique": uniqueness, "diversity": diversity}


def format_figure(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if key == "mol_per_s":
        return f"{value:.0f}"
    if key == "diversity":
        return f"{value:.2f}"
    return f"{100 * value:.0f}%"


def table1_markdown(rows: Sequence[tuple[str, Mapping[str, float | None]]]) -> str:
    """A markdown table of high sEH / SA / QED and all-high percentages, one row per (name, figures)."""
    keys = (*TABLE1_NAMES, "all_high")
    head = "| | " + " | ".join(f"high {REWARD_TITLES[k]}" if k in REWARD_TITLES else "all high" for k in keys) + " |"
    lines = [head, "|---|" + "---:|" * len(keys)]
    for name, figures in rows:
        lines.append(f"| {name} | " + " | ".join(format_figure(k, figures.get(k)) for k in keys) + " |")
    return "\n".join(lines)


__all__ = ["FIGURE_KEYS", "PAPER_BETA", "PaperMatch", "figure_label", "format_figure", "paper_figures",
           "paper_row", "set_figures", "table1_markdown"]
