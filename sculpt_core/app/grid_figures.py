"""Grid heatmap figures as the pages draw them: a colour bar on every heatmap, a colour scale the user picks
(shared, per panel or log10), panels in rows that stay readable, error maps (composed − target), loss curves
with readable ticks, and the export settings of Plotly's camera button (file name and title carry the
composition's parameters).

Pure functions of numpy arrays (no Streamlit). Same convention as :mod:`sculpt_core.domains.grid.viz`:
``p[z0, z1]``, z0 on the vertical axis, z1 on the horizontal one, the start state in the lower-left corner.
"""

from __future__ import annotations

import math
import textwrap
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from sculpt_core.domains.grid.viz import DIST_COLORSCALE, POINT_COLOR, X_TITLE, Y_TITLE

Panel = tuple[str, np.ndarray]

#: The colour-scale choices of the pages: key → label.
SCALES: dict[str, str] = {
    "shared": "shared",
    "panel": "per panel",
    "log": "log10 (shared)",
}
SCALE_HELP = ("shared: one colour scale for every panel, so colours compare across panels; per panel: each panel "
              "spans its own range (shape, not level); log10: one shared scale of log10 p, which shows the "
              "low-probability regions (cells below 1e-8 of the largest value are drawn at the floor).")
#: How the grid page draws its main figure: key → label. "image": one PNG with axes, colour bars and the title
#: (:func:`sculpt_core.app.png_export.panels_png`), so an α move repaints one image; "interactive": plotly (hover
#: values, zoom), which the browser rebuilds on every move (Streamlit gives a changed figure a new element).
FIGURE_MODES: dict[str, str] = {
    "image": "image (fast)",
    "interactive": "interactive (hover, zoom)",
}
FIGURE_MODE_HELP = ("image: the heatmaps as one picture with axes, colour bars and the view's parameters; an α move "
                    "repaints it at once. interactive: plotly figures with hover values and zoom; the browser "
                    "rebuilds them on every move (202 against 151 ms p50 per α move measured on two cores). The PNG and HTML "
                    "downloads are the same in both.")
ERROR_COLORSCALE = "RdBu_r"
#: A log-scale panel shows at most this many decades below its largest value.
LOG_DECADES = 8


# ----- colour ranges -------------------------------------------------------------------------------------
def _finite_max(z: np.ndarray) -> float | None:
    z = np.asarray(z, dtype=np.float64)
    ok = np.isfinite(z)
    return float(z[ok].max()) if ok.any() else None


def _log10(z: np.ndarray, floor: float) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.maximum(z, floor))
    out[~np.isfinite(z)] = np.nan
    return out


def color_ranges(arrays: Sequence[np.ndarray], scale: str) -> list[tuple[float, float]]:
    """The (cmin, cmax) of each panel under ``scale``: shared and per-panel in p, log in log10 p."""
    if scale not in SCALES:
        raise ValueError(f"unknown colour scale {scale!r}: one of {', '.join(SCALES)}")
    maxima = [_finite_max(z) for z in arrays]
    top = max((v for v in maxima if v is not None), default=1.0)
    top = top if top > 0 else 1.0
    if scale == "shared":
        return [(0.0, top)] * len(arrays)
    if scale == "panel":
        return [(0.0, v if v is not None and v > 0 else 1.0) for v in maxima]
    hi = math.log10(top)
    positive = [float(np.asarray(z)[np.isfinite(z) & (np.asarray(z) > 0)].min()) for z in arrays
                if (np.isfinite(z) & (np.asarray(z) > 0)).any()]
    lo = max(math.log10(min(positive)) if positive else hi - LOG_DECADES, hi - LOG_DECADES)
    return [(lo, hi if hi > lo else lo + 1.0)] * len(arrays)


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks of a log10 axis at whole decades, labelled as powers of ten (1e-3)."""
    first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    step = max(1, math.ceil((last - first + 1) / 6))
    vals = [float(k) for k in range(last, first - 1, -step)][::-1]
    return vals, [f"1e{int(k)}" if k else "1" for k in vals]


# ----- layout ---------------------------------------------------------------------------------------------
def wrap_title(title: str, width: int) -> str:
    """A panel title broken on word boundaries into lines of at most ``width`` characters (``<br>``)."""
    return "<br>".join(textwrap.wrap(title, max(8, width), break_long_words=True)) or title


def _domains(n: int, gap: float) -> list[tuple[float, float]]:
    width = (1.0 - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def jittered_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z0, z1) of sampled cells ``[n, 2]``, each spread inside its cell (±0.35, seeded: the same picture on every
    draw) so that repeated cells show as a cloud; the page's figure and its PNG draw the same dots."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    jitter = np.random.default_rng(0).uniform(-0.35, 0.35, size=pts.shape)
    return pts[:, 0] + jitter[:, 0], pts[:, 1] + jitter[:, 1]


def heatmap_panels(panels: Sequence[Panel], scale: str = "shared", cols: int | None = None,
                   row_height: int = 330, title: str | None = None, points: np.ndarray | None = None,
                   points_panel: int = 0, ranges: Sequence[tuple[float, float]] | None = None,
                   colorbar_title: str = "p", title_chars: int | None = None) -> go.Figure:
    """Distributions as square heatmaps in rows of ``cols`` panels (default: all in one row), each with a colour
    bar (one bar for a shared or log scale, one per panel otherwise). ``ranges`` overrides the colour ranges
    (to share a scale across several figures); ``title`` goes above the panels (the export carries it);
    ``points``: sampled cells ``[n, 2]`` (z0, z1) drawn over panel ``points_panel``. ``z`` is sent as float32
    (7 significant digits, half the browser payload of float64; the colour ranges are computed in float64)."""
    n = len(panels)
    if n == 0:
        raise ValueError("no panels to draw")
    cols = max(1, min(cols or n, n))
    rows = math.ceil(n / cols)
    arrays = [np.asarray(z, dtype=np.float64) for _, z in panels]
    ranges = list(ranges) if ranges is not None else color_ranges(arrays, scale)
    per_panel = scale == "panel"
    chars = title_chars or max(16, int(120 / cols))
    titles = [wrap_title(t, chars) for t, _ in panels]
    title_lines = max(t.count("<br>") + 1 for t in titles)
    right = 0.93 if not per_panel else 1.0
    xdoms = [(a * right, b * right) for a, b in _domains(cols, 0.13 if per_panel else 0.06)]
    title_px = 16 * title_lines + 6
    gap_px = title_px + 30  # between rows: the tick labels of the row above, then the titles of the row below
    height = rows * row_height + (rows - 1) * gap_px + (40 if title else 0)
    plot_px = height - (title_px + (40 if title else 30)) - 45  # the plotting area, inside the margins
    gap = gap_px / max(plot_px, 1)
    row_frac = (1.0 - gap * (rows - 1)) / rows
    ydoms = [(1.0 - r * (row_frac + gap) - row_frac, 1.0 - r * (row_frac + gap)) for r in range(rows)]
    size = max(a.shape[0] for a in arrays)
    rng = [-0.5, size - 0.5]
    layout: dict = {"height": height, "margin": {"l": 55, "r": 20, "t": title_px + (40 if title else 30), "b": 45},
                    "plot_bgcolor": "white", "paper_bgcolor": "white", "font": {"size": 11}, "showlegend": False,
                    "annotations": []}
    if title:
        layout["title"] = {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 13}}
    data: list[dict] = []
    for i, (label, z) in enumerate(zip(titles, arrays)):
        r, c = divmod(i, cols)
        sfx = "" if i == 0 else str(i + 1)
        (x0, x1), (y0, y1) = xdoms[c], ydoms[r]
        layout[f"xaxis{sfx}"] = {"domain": [x0, x1], "anchor": f"y{sfx}", "range": rng, "constrain": "domain",
                                 "title": {"text": X_TITLE if r == rows - 1 or i + cols >= n else ""},
                                 "showgrid": False, "zeroline": False}
        layout[f"yaxis{sfx}"] = {"domain": [y0, y1], "anchor": f"x{sfx}", "range": rng, "constrain": "domain",
                                 "scaleanchor": f"x{sfx}", "showgrid": False, "zeroline": False,
                                 "title": {"text": Y_TITLE if c == 0 else ""}}
        layout["annotations"].append({"text": label, "x": (x0 + x1) / 2, "y": y1, "xref": "paper", "yref": "paper",
                                      "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                                      "font": {"size": 12}})
        axis = "coloraxis" if not per_panel or i == 0 else f"coloraxis{i + 1}"
        shown = _log10(z, 10 ** ranges[i][0]) if scale == "log" else z
        hover = "log10 p" if scale == "log" else colorbar_title
        data.append({"type": "heatmap", "z": shown.astype(np.float32), "xaxis": f"x{sfx}", "yaxis": f"y{sfx}", "coloraxis": axis,
                     "name": label, "hovertemplate": f"z0=%{{y}}, z1=%{{x}}<br>{hover}=%{{z:.3g}}<extra></extra>"})
        if per_panel or i == 0:
            bar: dict = {"title": {"text": colorbar_title}, "thickness": 10}
            if not per_panel:
                bar.update({"x": right + 0.01, "xanchor": "left"})
            else:
                bar.update({"x": x1 + 0.008, "xanchor": "left", "y": (y0 + y1) / 2, "yanchor": "middle",
                            "len": 0.9 * (y1 - y0)})
            if scale == "log":
                vals, text = log_ticks(*ranges[i])
                bar.update({"title": {"text": f"{colorbar_title} (log)"}, "tickvals": vals, "ticktext": text})
            layout[axis] = {"colorscale": DIST_COLORSCALE, "cmin": ranges[i][0], "cmax": ranges[i][1],
                            "colorbar": bar}
    if points is not None and len(points):
        z0, z1 = jittered_points(points)
        sfx = "" if points_panel == 0 else str(points_panel + 1)
        data.append({"type": "scattergl", "x": z1, "y": z0,
                     "mode": "markers", "xaxis": f"x{sfx}", "yaxis": f"y{sfx}", "name": f"{len(z0)} samples",
                     "hoverinfo": "skip", "marker": {"size": 3, "color": POINT_COLOR, "opacity": 0.55}})
    return go.Figure({"data": data, "layout": layout})


def error_range(errors: Sequence[np.ndarray]) -> float:
    """The symmetric colour span of error maps: their largest |composed − target|."""
    spans = [float(np.nanmax(np.abs(e))) for e in errors if np.isfinite(e).any()]
    return max(max(spans, default=0.0), 1e-12)


def error_figure(composed: np.ndarray, target: np.ndarray, title: str, span: float | None = None,
                 row_height: int = 300, title_chars: int | None = None) -> go.Figure:
    """The error map composed − target (red: too much mass, blue: too little), on a symmetric colour bar."""
    err = np.asarray(composed, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    s = span if span is not None else error_range([err])
    fig = heatmap_panels([(title, err)], "shared", row_height=row_height, ranges=[(-s, s)],
                         colorbar_title="q − p", title_chars=title_chars)
    fig.update_layout(coloraxis={"colorscale": ERROR_COLORSCALE, "cmid": 0.0})
    fig.update_traces(hovertemplate="z0=%{y}, z1=%{x}<br>composed − target=%{z:.3g}<extra></extra>")
    return fig


def bases_panels(names: Sequence[str], dists: Sequence[np.ndarray], targets: Sequence[np.ndarray | None]
                 ) -> list[Panel]:
    """Each base's model p (first row) over its target ∝ R^β (second row); NaN panel where the reward is unknown."""
    top = [(f"{name}: model p", p) for name, p in zip(names, dists)]
    bottom = [(f"{name}: target ∝ R^β" if t is not None else f"{name}: reward unknown",
               t if t is not None else np.full_like(p, np.nan)) for name, p, t in zip(names, dists, targets)]
    return top + bottom


# ----- loss curves ----------------------------------------------------------------------------------------
def nice_log_ticks(values: Sequence[float], max_ticks: int = 6) -> list[float]:
    """Tick values for a log axis over ``values``: whole decades when they span more than one, else
    1-2-5 steps (so a curve inside one decade still gets labelled ticks)."""
    v = np.asarray([x for x in values if math.isfinite(x) and x > 0], dtype=np.float64)
    if v.size == 0:
        return []
    lo, hi = math.log10(v.min()), math.log10(v.max())
    if hi - lo >= 1.0:
        first, last = math.floor(lo), math.ceil(hi)
        step = max(1, math.ceil((last - first + 1) / max_ticks))
        return [10.0 ** k for k in range(first, last + 1, step)]
    ticks = [m * 10.0 ** k for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if 10 ** lo / 1.0001 <= t <= 10 ** hi * 1.0001]
    below = [t for t in ticks if t < 10 ** lo]
    above = [t for t in ticks if t > 10 ** hi]
    return (below[-1:] + inside + above[:1])[: max_ticks + 2]


def readable_loss_axes(fig: go.Figure, losses: Sequence[float]) -> go.Figure:
    """Readable ticks on a loss-curve figure (any domain's): whole steps on x, labelled decades or 1-2-5 values on
    a log loss axis (so a curve inside one decade still gets ticks), three significant digits on a linear one,
    two decimals on a second (L1) axis."""
    fig.update_xaxes(tickformat=",d", nticks=8, showgrid=True, gridcolor="#eeeeee", title_text="training step")
    if fig.layout.yaxis.type == "log":
        ticks = nice_log_ticks(losses)
        if ticks:
            fig.update_layout(yaxis={"tickvals": ticks, "ticktext": [f"{t:.3g}" for t in ticks],
                                     "range": [math.log10(min(ticks)), math.log10(max(ticks))],
                                     "showgrid": True, "gridcolor": "#eeeeee"})
    else:
        fig.update_layout(yaxis={"tickformat": ".3g", "nticks": 6, "showgrid": True, "gridcolor": "#eeeeee"})
    if "yaxis2" in fig.layout and fig.layout["yaxis2"].overlaying:
        fig.update_layout(yaxis2={"tickformat": ".2f", "nticks": 6})
    return fig


def loss_curve(steps: Sequence[int], losses: Sequence[float], l1s: Sequence[float] | None = None,
               height: int = 280) -> go.Figure:
    """The grid's training loss (left, log axis when positive) and exact L1 (right) against step
    (:func:`sculpt_core.domains.grid.viz.loss_curve`) with :func:`readable_loss_axes`."""
    from sculpt_core.domains.grid import viz as V

    return readable_loss_axes(V.loss_curve(steps, losses, l1s, height=height), losses)


# ----- export ---------------------------------------------------------------------------------------------
def export_config(filename: str) -> dict:
    """Plotly config for ``st.plotly_chart``: the camera button saves a PNG named ``filename`` at 2× scale
    (with the figure's axes, colour bars and title, drawn by the browser: no kaleido needed)."""
    return {"toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}, "displaylogo": False}


__all__ = ["FIGURE_MODES", "FIGURE_MODE_HELP", "SCALES", "SCALE_HELP", "bases_panels", "color_ranges", "error_figure", "error_range", "export_config",
           "heatmap_panels", "jittered_points", "log_ticks", "loss_curve", "nice_log_ticks", "readable_loss_axes", "wrap_title"]
