"""Figures of molecule sample sets: reward KDE contours, Table 1 bins, a molecule gallery.

Pure functions of SMILES and numpy arrays (no Streamlit, no torch). Colours are explicit so a host theme cannot
recolour them; the composed set is always drawn in :data:`COMPOSED_COLOR`, base models in the palette.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from sculpt_core.domains.molecules.metrics import PAPER_TABLE1, TABLE1_NAMES

COMPOSED_COLOR = "#d62728"
BASE_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b")
#: KDE grid points per axis: contour lines of a 60-sample set look the same at 48 as at 60, and each contour's
#: grid is part of every α move's payload.
KDE_GRID = 48


#: The bar outline plotly_white gives bars (its trace part, which :func:`white_template` leaves out).
BAR_LINE = {"color": "white", "width": 0.5}


@lru_cache(maxsize=1)
def white_template() -> go.layout.Template:
    """The layout part of plotly's "plotly_white" template. These figures set their traces' colours
    themselves (bars take :data:`BAR_LINE`), and applying the whole named template copies every trace type's defaults: about 18 ms a figure
    against 10 ms for its layout part (measured with a KDE figure of three contours)."""
    import plotly.io as pio

    return go.layout.Template(layout=pio.templates["plotly_white"].layout)


def kde_density(points: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float],
                n: int = KDE_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Gaussian KDE (Scott's bandwidth) of 2-D points on an ``n × n`` grid: (xs, ys, density[y, x]).
    None when the points are too few or degenerate (all on a line) for a 2-D density."""
    from scipy.stats import gaussian_kde

    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) < 5:
        return None
    cov = np.cov(pts.T)
    eig = np.linalg.eigvalsh(cov) if np.isfinite(cov).all() else np.zeros(2)
    if eig.min() <= 1e-10 * max(eig.max(), 1e-300):  # points on a line or a single point: no 2-D density
        return None
    try:
        kde = gaussian_kde(pts.T)
    except (np.linalg.LinAlgError, ValueError):
        return None
    xs = np.linspace(*x_range, n)
    ys = np.linspace(*y_range, n)
    gx, gy = np.meshgrid(xs, ys)
    dens = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(n, n)
    return (xs, ys, dens) if np.isfinite(dens).all() else None


PAD = 0.08
MIN_SPAN = 0.05


def data_range(values: np.ndarray, pad: float = PAD, min_span: float = MIN_SPAN) -> tuple[float, float]:
    """The axis range of ``values``: their finite min..max, padded by ``pad`` of the span (at least
    ``min_span`` wide, so a set of one value still gets an axis); (0, 1) when there is no finite value."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    span = hi - lo
    return lo - pad * span, hi + pad * span


def reward_kde_figure(sets: Mapping[str, np.ndarray], x_label: str, y_label: str, composed: str | None = None,
                      thresholds: tuple[float, float] | None = None, title: str | None = None,
                      height: int = 450) -> go.Figure:
    """KDE contour lines of every set's 2-D rewards (name → ``[N, 2]``) on axes that range to the data, the
    composed set's points, and the Table 1 thresholds as dashed lines where they fall inside the axes (a
    threshold outside is named at the axis edge)."""
    arrays = [np.asarray(v, dtype=np.float64).reshape(-1, 2) for v in sets.values()]
    pts = np.concatenate(arrays) if arrays else np.zeros((0, 2))
    xr, yr = data_range(pts[:, 0]), data_range(pts[:, 1])
    palette = iter(BASE_COLORS * 4)
    traces: list = []
    for name, arr in zip(sets, arrays):
        color = COMPOSED_COLOR if name == composed else next(palette)
        grid = kde_density(arr, xr, yr)
        if grid is not None:
            xs, ys, dens = grid
            # float32: half the payload of float64, far below what a contour line can show
            traces.append(go.Contour(x=xs, y=ys, z=dens.astype(np.float32), name=name, showscale=False,
                                     contours_coloring="lines",
                                     line={"width": 2.5 if name == composed else 1.5},
                                     colorscale=[[0, color], [1, color]], ncontours=6, showlegend=True,
                                     hoverinfo="skip"))
        if name == composed:
            traces.append(go.Scatter(x=arr[:, 0], y=arr[:, 1], mode="markers", name=f"{name} (samples)",
                                     marker={"size": 4, "color": color, "opacity": 0.45},
                                     hovertemplate="%{x:.3f}, %{y:.3f}<extra></extra>"))
    notes, shapes, annotations = [], [], []
    dashed = {"dash": "dash", "color": "#555555"}
    if thresholds is not None:
        tx, ty = thresholds
        if xr[0] <= tx <= xr[1]:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": tx, "x1": tx, "y0": 0, "y1": 1,
                           "line": dashed})
        else:
            notes.append(f"{x_label} threshold {tx:g} {'←' if tx < xr[0] else '→'}")
        if yr[0] <= ty <= yr[1]:
            shapes.append({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": ty, "y1": ty,
                           "line": dashed})
        else:
            notes.append(f"{y_label} threshold {ty:g} {'↓' if ty < yr[0] else '↑'}")
    if notes:
        annotations.append({"text": " · ".join(notes) + " (outside the data's range)", "xref": "paper",
                            "yref": "paper", "x": 0.0, "y": 0.0, "xanchor": "left", "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 10, "color": "#555555"}})
    layout = {"height": height, "margin": {"l": 60, "r": 10, "t": 70 if title else 30, "b": 50},
              "template": white_template(), "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom"},
              "xaxis": {"title": {"text": x_label}, "range": list(xr), "tickformat": ".2f", "nticks": 8},
              "yaxis": {"title": {"text": y_label}, "range": list(yr), "tickformat": ".2f", "nticks": 8},
              "shapes": shapes, "annotations": annotations}
    if title:
        layout["title"] = {"text": title, "x": 0.0, "xanchor": "left", "y": 0.98, "font": {"size": 13}}
    return go.Figure(data=traces, layout=layout)  # in one go: plotly validates each property once


def table1_codes() -> list[str]:
    """Bin labels in the paper's order, e.g. '000' … '111' read as (sEH, SA, QED) high/low."""
    return [f"{i >> 2 & 1}{i >> 1 & 1}{i & 1}" for i in range(8)]


def table1_figure(rows: Sequence[tuple[str, Sequence[int]]], paper_key: str | None = None,
                  height: int = 330, title: str | None = None) -> go.Figure:
    """Grouped bars of Table 1 percentages (one group per bin, one bar per row); ``paper_key`` adds the paper's
    row of that key for comparison; ``title`` (the view's parameters) goes above the legend, so a saved PNG says
    what it shows."""
    codes = table1_codes()
    palette = iter((COMPOSED_COLOR,) + BASE_COLORS * 2)
    bars = [go.Bar(x=codes, y=list(percent), name=name, marker_color=next(palette), marker_line=BAR_LINE)
            for name, percent in rows]
    if paper_key is not None and paper_key in PAPER_TABLE1:
        bars.append(go.Bar(x=codes, y=list(PAPER_TABLE1[paper_key]), name=f"paper row {paper_key}",
                           marker_color="#aaaaaa", marker_line=BAR_LINE))
    return go.Figure(data=bars, layout={
        "barmode": "group", "height": height + (50 if title else 0), "template": white_template(),
        "margin": {"l": 50, "r": 10, "t": 90 if title else 40, "b": 60},
        **({"title": {"text": title, "font": {"size": 12}, "x": 0.01, "y": 0.98, "yanchor": "top"}} if title else {}),
        "xaxis": {"title": {"text": "bin: " + ", ".join(TABLE1_NAMES) + " high (1) or low (0)"}},
        "yaxis": {"title": {"text": "% of samples"}, "range": [0, 100]},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom"}})


def molecule_gallery_png(smiles: Sequence[str], legends: Sequence[str] | None = None, per_row: int = 4,
                         size: tuple[int, int] = (230, 180)) -> bytes:
    """A PNG grid of molecule drawings (RDKit), ``per_row`` cells of ``size`` per row; unparsable SMILES are
    drawn as empty cells. Each cell is drawn once per (SMILES, legend, size) and kept (:func:`molecule_tile`):
    neighbouring slider values share most of their molecules, so a new gallery mostly reuses its cells."""
    from PIL import Image

    smiles = [str(s) for s in smiles]
    legends = [str(x) for x in legends] if legends is not None else [""] * len(smiles)
    if len(legends) != len(smiles):
        raise ValueError("one legend per molecule is required")
    w, h = int(size[0]), int(size[1])
    cols = max(int(per_row), 1)
    rows = max(-(-len(smiles) // cols), 1)
    canvas = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    for k, (smi, legend) in enumerate(zip(smiles, legends)):
        tile = Image.open(io.BytesIO(molecule_tile(smi, legend, w, h)))
        canvas.paste(tile.convert("RGB"), ((k % cols) * w, (k // cols) * h))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


@lru_cache(maxsize=4096)
def molecule_tile(smiles: str, legend: str, width: int, height: int) -> bytes:
    """One gallery cell: the molecule of ``smiles`` drawn by RDKit with ``legend`` below it, as PNG bytes (an
    unparsable SMILES gives an empty cell)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Draw import rdMolDraw2D

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) or Chem.Mol()
    drawer = rdMolDraw2D.MolDraw2DCairo(width, height)
    drawer.DrawMolecule(mol, legend=legend)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


__all__ = ["data_range", "kde_density", "molecule_gallery_png", "molecule_tile", "reward_kde_figure", "table1_codes", "table1_figure",
           "white_template", "BAR_LINE"]
