"""Molecule page figures as the page draws them: the diversity and uniqueness of every sample set beside the
samples, and the text shown when the sEH proxy weights are missing. Pure functions of arrays and SMILES (no
Streamlit). The reward KDE figure (axes ranged to the data) is :func:`sculpt_core.domains.molecules.viz.
reward_kde_figure`, re-exported here with :func:`~sculpt_core.domains.molecules.viz.data_range`.
"""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from sculpt_core.domains.molecules.viz import (BAR_LINE, BASE_COLORS, COMPOSED_COLOR, MIN_SPAN, PAD, data_range,  # noqa: F401
                                               reward_kde_figure, white_template)


def diversity_figure(rows: Sequence[tuple[str, float, float | None]], composed: str | None = None,
                     height: int = 330) -> go.Figure:
    """Uniqueness (% distinct molecules) and diversity (mean pairwise Tanimoto distance, Morgan radius 3) of
    each sample set, ``rows`` = (name, uniqueness in [0, 1], diversity or None), as two bar panels."""
    names = [r[0] for r in rows]
    palette = iter(BASE_COLORS * 4)
    colors = [COMPOSED_COLOR if n == composed else next(palette) for n in names]
    uniq = [100 * r[1] for r in rows]
    div = [r[2] if r[2] is not None else 0.0 for r in rows]
    bars = [go.Bar(y=names, x=uniq, orientation="h", marker_color=colors, marker_line=BAR_LINE, name="unique %",
                   text=[f"{u:.0f}%" for u in uniq], textposition="auto", xaxis="x", yaxis="y",
                   hovertemplate="%{y}: %{x:.1f}% unique<extra></extra>"),
            go.Bar(y=names, x=div, orientation="h", marker_color=colors, marker_line=BAR_LINE, name="diversity",
                   text=["n/a" if r[2] is None else f"{r[2]:.2f}" for r in rows], textposition="auto",
                   xaxis="x2", yaxis="y2", hovertemplate="%{y}: diversity %{x:.3f}<extra></extra>")]
    return go.Figure(data=bars, layout={  # in one go, with the light template: see white_template
        "height": height, "template": white_template(), "showlegend": False,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 40},
        "xaxis": {"domain": [0, 1], "anchor": "y", "range": [0, 100], "title": {"text": "unique (% of samples)"}},
        "yaxis": {"domain": [0.58, 1.0], "anchor": "x", "autorange": "reversed", "automargin": True},
        "xaxis2": {"domain": [0, 1], "anchor": "y2", "range": [0, 1],
                   "title": {"text": "diversity (mean Tanimoto distance)"}},
        "yaxis2": {"domain": [0.0, 0.36], "anchor": "x2", "autorange": "reversed", "automargin": True},
    })


def seh_missing_text(reason: str, env_var: str = "SCULPT_SEH_WEIGHTS") -> tuple[str, str]:
    """(the message, the detail) shown when the sEH proxy weights cannot be found: what it means, what still
    works and the one setting that fixes it."""
    message = (
        "**The sEH reward is off: its proxy weights were not found.** sEH (a binding proxy for the soluble "
        "epoxide hydrolase target, one of the paper's three rewards) needs a 2.6 MB weight file that is not "
        "shipped with the code, so no molecule gets an sEH score here, and the Table 1 bins (which need all three "
        "rewards) are not drawn. **Still works:** every model samples (the sEH base model too), SA and QED are "
        "scored exactly, the KDE, the gallery, diversity and the CSV cover SA and QED. **Fix:** set "
        f"`{env_var}=/path/to/best_params.pkl.gz` before starting the app, or fetch the public file once with "
        "`python -c \"from sculpt_core.domains.molecules.seh_proxy import download_seh_weights; "
        "download_seh_weights()\"`, then reload.")
    return message, reason


__all__ = ["MIN_SPAN", "PAD", "data_range", "diversity_figure", "reward_kde_figure", "seh_missing_text"]
