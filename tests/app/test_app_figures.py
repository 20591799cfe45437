"""Figures and exports as a researcher uses them (issue 17): colour bars on every heatmap and a colour-scale
choice (shared, per panel, log10) on the grid and home pages, readable "compare all" cards with error maps,
loss curves with readable ticks, CSV downloads whose columns and file names carry the view's parameters, the
camera button's PNG file name, the operator list in full and the training form's reward source.

AppTest against the tiny test zoo (see conftest); the figure builders are tested as pure functions.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from sculpt_core.app import grid_figures as F
from sculpt_core.app.exports import composition_meta, csv_with_meta, meta_stem, meta_title
from sculpt_core.core import algebra as A

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30


def _grid(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    # the plotly figure, whose spec these tests read (the default "image" view is tested on its own)
    at.query_params.update({"fig": "interactive", **(query or {})})
    at.switch_page("pages/grid_sculpting.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _configs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.config or "{}") for c in at.get("plotly_chart")]


def _heatmap_bars(spec: dict) -> tuple[int, int]:
    """(heatmaps, colour bars) of a figure spec: a colour axis with a colorbar serves its heatmaps."""
    heat = [t for t in spec["data"] if t["type"] == "heatmap"]
    axes = {t.get("coloraxis") for t in heat if t.get("coloraxis")}
    bars = sum(1 for a in axes if spec["layout"].get(a, {}).get("colorbar") is not None)
    bars += sum(1 for t in heat if not t.get("coloraxis") and t.get("showscale", True))
    return len(heat), bars


def _compare_specs(at: AppTest) -> list[dict]:
    """The charts of the "compare all" cards (not the base models' figure below them, nor the training
    section's preview of a new model's target)."""
    return [s for s in _specs(at) if not any("model p" in t.get("name", "") or "new model" in t.get("name", "")
                                             for t in s["data"])]


def _z(trace: dict) -> np.ndarray:
    """A heatmap's z from a figure spec (plotly sends arrays as base64 typed arrays)."""
    z = trace["z"]
    if isinstance(z, dict):
        arr = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        return arr.reshape([int(n) for n in str(z["shape"]).split(",")]) if "shape" in z else arr
    return np.asarray(z, dtype=float)


def _last(calls: list[dict], label: str) -> dict:
    return [c for c in calls if c["label"] == label][-1]


def _csv_rows(data) -> list[dict]:
    text = data() if callable(data) else data
    return list(csv.DictReader(io.StringIO(text if isinstance(text, str) else text.decode())))


# ----- colour scales and colour bars ----------------------------------------------------------------------------
def test_every_grid_heatmap_has_a_colour_bar_under_every_scale(app_env):
    at = _grid()
    for scale in ("shared", "panel", "log"):
        at.radio(key="g_scale").set_value(scale).run()
        assert not at.exception
        for spec in _specs(at):
            heat, bars = _heatmap_bars(spec)
            assert heat and bars >= 1, scale
            if scale == "panel":
                assert bars == heat  # one bar per panel
        composed = _specs(at)[0]
        if scale == "log":
            bar = composed["layout"]["coloraxis"]["colorbar"]
            assert bar["title"]["text"] == "p (log)" and all(t.startswith("1e") or t == "1" for t in bar["ticktext"])
            assert composed["layout"]["coloraxis"]["cmax"] <= 0  # log10 of a probability
    assert at.query_params["scale"] == "log"  # the choice travels in the URL


def test_scale_choice_changes_the_figure_and_is_restored_from_the_url(app_env):
    at = _grid()
    shared = _specs(at)[0]
    assert len({shared["layout"]["coloraxis"]["cmax"]}) == 1 and "coloraxis2" not in shared["layout"]
    at.radio(key="g_scale").set_value("panel").run()
    panel = _specs(at)[0]
    assert "coloraxis2" in panel["layout"] and panel != shared
    at = _grid({"scale": "panel"})
    assert at.radio(key="g_scale").value == "panel"
    at = _grid({"scale": "rainbow"})
    assert any("scale='rainbow' ignored" in w.value for w in at.warning) and at.radio(key="g_scale").value == "shared"


def test_home_page_heatmaps_have_colour_bars_and_a_scale_choice(tiny_zoo_contents, app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    heat, bars = _heatmap_bars(_specs(at)[0])
    assert heat == 4 and bars == 4  # per panel by default: four different distributions, a bar each
    at.radio(key="home_scale").set_value("shared").run()
    heat, bars = _heatmap_bars(_specs(at)[0])
    assert heat == 4 and bars == 1


def test_base_model_heatmaps_have_colour_bars(app_env):
    at = _grid()
    bases = next(s for s in _specs(at) if any("model p" in t.get("name", "") for t in s["data"]))
    heat, bars = _heatmap_bars(bases)
    assert heat == 4 and bars >= 1
    at.radio(key="g_scale").set_value("panel").run()
    bases = next(s for s in _specs(at) if any("model p" in t.get("name", "") for t in s["data"]))
    assert _heatmap_bars(bases) == (4, 4)


# ----- compare all --------------------------------------------------------------------------------------------
def test_compare_all_cards_line_up_with_their_panels_and_have_error_maps(app_env):
    at = _grid({"method": "compare"})
    specs = _compare_specs(at)
    names = [s["data"][0].get("name", "") for s in specs]
    methods = [n for n in names if "L1" in n]
    errors = [n for n in names if n.endswith("− target")]
    assert len(methods) >= 3 and len(errors) == len(methods)
    metric_labels = [m.label for m in at.metric if m.label.endswith("L1 to target")]
    assert len(metric_labels) == len(methods)  # one card per method panel
    for spec in specs:  # one panel per chart, so titles cannot overlap and cards sit above their panel
        assert sum(t["type"] == "heatmap" for t in spec["data"]) == 1
        assert spec["layout"]["height"] >= 250
    err = next(s for s in specs if s["data"][0]["name"].endswith("− target"))
    axis = err["layout"]["coloraxis"]
    assert axis["cmin"] == -axis["cmax"] and axis.get("cmid") == 0.0  # symmetric, diverging
    oracle = next(s for s in specs if s["data"][0]["name"] == "oracle − target")
    assert np.abs(_z(oracle["data"][0])).max() < 1e-9  # the oracle is exact
    spans = {s["layout"]["coloraxis"]["cmax"] for s in specs if s["data"][0]["name"].endswith("− target")}
    assert len(spans) == 1  # one error scale for every method


def test_compare_all_shares_the_colour_scale_across_cards_unless_per_panel(app_env):
    at = _grid({"method": "compare"})
    panels = [s for s in _compare_specs(at) if not s["data"][0]["name"].endswith("− target") and "δ" not in
              s["data"][0]["name"]]
    assert len({s["layout"]["coloraxis"]["cmax"] for s in panels}) == 1
    at.radio(key="g_scale").set_value("panel").run()
    panels = [s for s in _compare_specs(at) if not s["data"][0]["name"].endswith("− target") and "δ" not in
              s["data"][0]["name"]]
    assert len({round(s["layout"]["coloraxis"]["cmax"], 12) for s in panels}) > 1


# ----- exports ------------------------------------------------------------------------------------------------
def test_grid_csv_carries_the_parameters_as_columns_and_in_the_file_name(app_env, downloads):
    at = _grid({"op": "contrast", "alpha": "0.3", "method": "ensemble"})
    assert not at.exception
    call = _last(downloads, "Distribution (CSV)")
    assert call["file_name"].endswith(".csv")
    for part in ("contrast", "y1-1", "a0.3", "ensemble", "symmetric_shubert+diag_sigmoid"):
        assert part in call["file_name"], (part, call["file_name"])
    rows = _csv_rows(call["data"])
    assert len(rows) == 32 * 32
    assert {"method", "alpha", "beta", "labels", "operator", "bases", "z0", "z1", "p"} <= set(rows[0])
    assert rows[0]["method"] == "ensemble" and rows[0]["alpha"] == "0.3" and rows[0]["labels"] == "1 1"
    assert abs(sum(float(r["p"]) for r in rows) - 1.0) < 1e-6
    for label in ("Distribution (NPY)", "Figure (HTML)", "Figure (PNG)"):
        assert _last(downloads, label)["file_name"].startswith(call["file_name"][:-4])


def test_camera_button_saves_a_png_named_after_the_view_with_parameters_in_the_title(app_env):
    at = _grid({"op": "contrast", "alpha": "0.3"})
    config = _configs(at)[0]["toImageButtonOptions"]
    assert config["format"] == "png" and "contrast" in config["filename"] and "a0.3" in config["filename"]
    title = _specs(at)[0]["layout"]["title"]["text"]
    assert "contrast" in title and "α = 0.3" in title and "method = oracle" in title
    at.slider(key="g_alpha").set_value(0.6).run()
    assert "a0.6" in _configs(at)[0]["toImageButtonOptions"]["filename"]


# ----- operator list and the training form --------------------------------------------------------------------
def test_operator_names_fit_the_sidebar_and_the_full_label_is_shown(app_env):
    from sculpt_core.app.widgets import OPERATOR_HELP, operator_caption, operator_short_label
    from sculpt_core.core.operators import OPERATORS

    assert all(len(operator_short_label(k)) <= 24 for k in OPERATORS)
    at = _grid()
    box = at.sidebar.selectbox(key="g_op")
    assert box.options == [operator_short_label(k) for k in OPERATORS]
    assert any(c.value == "A and B (p1 ⊗ p2)" for c in at.sidebar.caption)
    box.set_value("mixture").run()
    assert any(c.value == operator_caption("mixture") for c in at.sidebar.caption)
    assert all(op.name in OPERATOR_HELP for op in OPERATORS.values())


def test_training_form_shows_either_the_paper_reward_or_the_upload(app_env):
    at = _grid()
    assert at.selectbox(key="tb_reward") is not None
    assert not [u for u in at.get("file_uploader")]
    at.radio(key="tb_source").set_value("upload a log-reward .npy").run()
    assert not at.exception
    assert len(at.get("file_uploader")) == 1
    assert "tb_reward" not in [s.key for s in at.selectbox]


def test_loss_curve_ticks_are_readable():
    fig = F.loss_curve([1, 2, 300, 4000], [0.5, 0.3, 0.25, 0.22], [1.0, 0.6, 0.5, 0.4])
    assert fig.layout.xaxis.tickformat == ",d"
    assert list(fig.layout.yaxis.ticktext) == ["0.2", "0.5", "1"]  # a curve inside one decade still gets ticks
    assert fig.layout.yaxis2.tickformat == ".2f"
    wide = F.loss_curve([1, 2], [100.0, 0.01])
    assert list(wide.layout.yaxis.tickvals) == [0.01, 0.1, 1.0, 10.0, 100.0]
    flat = F.loss_curve([1, 2], [-1.0, 0.5])  # a loss that is not positive: linear axis
    assert flat.layout.yaxis.type != "log" and flat.layout.yaxis.tickformat == ".3g"


# ----- pure helpers -------------------------------------------------------------------------------------------
def test_rows_of_panels_leave_room_for_ticks_and_titles():
    p = np.ones((32, 32)) / 1024
    fig = F.heatmap_panels([("a", p), ("b", p), ("c", p), ("d", p)], "panel", cols=2, row_height=300)
    top, bottom = fig.layout.yaxis.domain, fig.layout.yaxis3.domain  # panels 1 and 3: one above the other
    gap_px = (bottom[1] - top[0]) * -1 * (fig.layout.height - fig.layout.margin.t - fig.layout.margin.b)
    assert gap_px >= 40  # tick labels of the upper row and the titles of the lower row fit between them
    assert fig.layout.xaxis3.title.text and not fig.layout.xaxis.title.text  # axis names on the last row only


def test_colour_ranges_and_log_ticks():
    p = np.array([[0.0, 0.1], [0.2, 0.7]])
    q = np.array([[0.5, 0.5], [0.0, 0.0]])
    assert F.color_ranges([p, q], "shared") == [(0.0, 0.7), (0.0, 0.7)]
    assert F.color_ranges([p, q], "panel") == [(0.0, 0.7), (0.0, 0.5)]
    (lo, hi), _ = F.color_ranges([p, q], "log")
    assert hi == pytest.approx(np.log10(0.7)) and lo == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        F.color_ranges([p], "rainbow")
    vals, text = F.log_ticks(-7.3, -2.1)
    assert vals == [-7, -6, -5, -4, -3] and text[0] == "1e-7"
    fig = F.heatmap_panels([("a", p), ("b", np.full_like(p, np.nan))], "log")
    assert np.isnan(np.asarray(fig.data[0].z, dtype=float)).sum() == 0  # zeros drawn at the floor, not NaN
    assert F.wrap_title("reaching (trajectory u, sampled) · L1 0.0456", 20).count("<br>") >= 1


def test_export_metadata_helpers():
    comp = A.contrast(0.3)
    meta = composition_meta(["a", "b"], "contrast", comp, 1.5, "oracle", u="exact")
    assert meta == {"bases": "a+b", "operator": "contrast", "labels": "1 1", "alpha": "0.3", "beta": "1.5",
                    "weights": "", "method": "oracle", "u": "exact"}
    assert meta_stem("sculpt_grid", meta) == "sculpt_grid_a+b_contrast_y1-1_a0.3_b1.5_oracle_uexact"
    assert "α = 0.3" in meta_title(meta) and "β = 1.5" in meta_title(meta)
    mix = composition_meta(["a", "b", "c"], "mixture", A.mixture((1.0, 2.0, 1.0)), None, "reaching")
    assert mix["alpha"] == "" and mix["weights"] == "1 2 1" and "w1-2-1" in meta_stem("x", mix)
    assert "/" not in meta_stem("x", {"bases": "../etc/passwd", "method": "m"})
    text = csv_with_meta(("smiles", "qed"), [("C,C", 0.5)], {"method": "m", "alpha": "0.5"})
    assert list(csv.reader(io.StringIO(text))) == [["method", "alpha", "smiles", "qed"], ["m", "0.5", "C,C", "0.5"]]


def test_png_download_has_axes_colour_bars_and_the_parameters(app_env, downloads):
    from PIL import Image

    from sculpt_core.app import png_export as P

    at = _grid({"op": "contrast", "alpha": "0.3"})
    assert not at.exception
    call = _last(downloads, "Figure (PNG)")
    assert call["file_name"].endswith(".png") and "a0.3" in call["file_name"]
    png = call["data"]()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape[1] > 3 * 32 * 8  # three panels and a colour bar, not bare cells
    p = np.outer(np.arange(1, 33), np.ones(32))
    p /= p.sum()
    plain = np.asarray(Image.open(io.BytesIO(P.panels_png([("a", p)], "", "shared"))).convert("RGB"))
    titled = np.asarray(Image.open(io.BytesIO(P.panels_png([("a", p)], "contrast · α = 0.3", "shared"))).convert("RGB"))
    assert titled.shape[0] > plain.shape[0]  # room for the title
    per_panel = np.asarray(Image.open(io.BytesIO(P.panels_png([("a", p), ("b", p)], "", "panel"))).convert("RGB"))
    shared = np.asarray(Image.open(io.BytesIO(P.panels_png([("a", p), ("b", p)], "", "shared"))).convert("RGB"))
    assert per_panel.shape[1] > shared.shape[1]  # one colour bar per panel
    bar_column = shared[60:60 + 256, -90 + 5]  # the shared colour bar: Viridis from yellow (top) to purple
    assert bar_column[0].tolist() != bar_column[-1].tolist()
    assert P.panels_png([("nan", np.full((32, 32), np.nan))], "t", "log")[:4] == b"\x89PNG"
    assert P.ascii_text("α ⊗ β →") == "alpha (x) beta ->"
    assert P.colormap(np.array([0.0, 1.0, np.nan])).tolist()[2] == [P.NAN_GREY] * 3


def test_heatmap_payload_is_float32_and_keeps_the_values():
    """Issue 17 (grid ≤ 200 ms): heatmaps are sent to the browser as float32 typed arrays, half the float64 bytes."""
    import plotly.io as pio

    from sculpt_core.app import grid_figures as F

    z = np.random.default_rng(0).random((32, 32))
    z /= z.sum()
    spec = json.loads(pio.to_json(F.heatmap_panels([("a", z), ("b", z)], "shared"), validate=False))
    assert all(t["z"]["dtype"] == "f4" for t in spec["data"])
    assert np.allclose(_z(spec["data"][0]).reshape(32, 32), z, rtol=1e-6, atol=0)


# ----- the live figure: one PNG by default, plotly on request (issue 17: grid ≤ 200 ms) --------------------------
def _live(query: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.switch_page("pages/grid_sculpting.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _composed_keys(at: AppTest) -> list[str]:
    return [c.proto.id for c in at.get("plotly_chart") if c.proto.id.endswith("fig_composed")]


def test_default_view_is_one_png_that_follows_alpha_and_the_radio_switches_to_plotly(app_env):
    at = _live({"op": "contrast", "alpha": "0.3"})
    assert at.radio(key="g_fig").value == "image" and "fig" not in at.query_params
    images = at.get("image")
    assert len(images) == 1 and not _composed_keys(at)
    first = images[0].proto.imgs[0].url
    assert first.endswith(".png")  # kept as PNG (Streamlit's "auto" would re-encode it as JPEG)
    at.slider(key="g_alpha").set_value(0.6).run()
    assert not at.exception
    assert at.get("image")[0].proto.imgs[0].url != first  # a new picture for the new α
    at.radio(key="g_fig").set_value("interactive").run()
    assert not at.exception and _composed_keys(at) and not at.get("image")
    assert at.query_params["fig"] == ["interactive"] or at.query_params["fig"] == "interactive"
    title = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if c.proto.id.endswith("fig_composed"))["layout"]["title"]["text"]
    assert "α = 0.6" in title


def test_figure_mode_from_the_url_and_a_bad_value_warns(app_env):
    at = _live({"fig": "interactive"})
    assert at.radio(key="g_fig").value == "interactive" and _composed_keys(at)
    at = _live({"fig": "svg"})
    assert any("fig='svg'" in w.value for w in at.warning) and at.radio(key="g_fig").value == "image"


def test_png_draws_the_sample_overlay_on_its_panel_only():
    from PIL import Image

    from sculpt_core.app import png_export as P

    p = np.full((32, 32), 1 / 1024)
    points = np.array([[5, 5], [20, 10], [30, 30]] * 50)
    bare = np.asarray(Image.open(io.BytesIO(P.panels_png([("a", p), ("b", p)]))).convert("RGB")).astype(int)
    dots = np.asarray(Image.open(io.BytesIO(P.panels_png([("a", p), ("b", p)], points=points)))
                      .convert("RGB")).astype(int)
    assert bare.shape == dots.shape
    changed = np.argwhere(np.abs(dots - bare).sum(2) > 0)
    assert len(changed) > 20
    left, top, cell = 62, 30, 8
    centres = np.array([[top + 32 * cell - (z0 + 0.5) * cell, left + (z1 + 0.5) * cell]  # (row, column) in pixels
                        for z0, z1 in ((5, 5), (20, 10), (30, 30))])
    near = np.abs(changed[:, None, :] - centres[None, :, :]).max(2).min(1)
    assert near.max() <= 0.35 * cell + 3  # every drawn pixel is a dot at its own cell (z0 up, z1 right), jittered
    assert all((np.abs(changed - c).max(1) <= 4).any() for c in centres)  # and every cell has its dots
    red = dots[changed[:, 0], changed[:, 1]]
    assert (red[:, 0] > red[:, 1] + 60).mean() > 0.5  # the overlay's red
    assert P.panels_png([("a", p)], points=points, compress_level=1)[:4] == b"\x89PNG"


def test_grid_prefetch_composes_the_next_alpha_steps(app_env, monkeypatch):
    """After a view, α ± 0.01 and ± 0.02 are composed on the grid prefetch thread: the next arrow-key step is a
    cache hit, not a new exact DP."""
    from sculpt_core.app import grid as G
    from sculpt_core.app.prefetch import grid_prefetcher

    calls: list[float] = []
    real = G.run_compose

    def counting(bases, composition, method, *a, **k):
        calls.append(round(float(composition.alpha), 4) if composition.alpha is not None else -1.0)
        return real(bases, composition, method, *a, **k)

    monkeypatch.setattr(G, "run_compose", counting)
    monkeypatch.setenv("SCULPT_PREFETCH", "1")
    G.cached_compose.clear()  # nothing composed by an earlier test
    at = _live({"bases": "circle1,circle2", "op": "hm", "alpha": "0.41", "method": "oracle"})
    assert grid_prefetcher().wait_idle(60)
    assert {0.39, 0.4, 0.42, 0.43} <= set(calls)
    before = len(calls)
    at.slider(key="g_alpha").set_value(0.42).run()
    assert not at.exception
    assert 0.42 not in calls[before:]  # drawn from the prefetched entry
