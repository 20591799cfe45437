"""The Streamlit app, driven by ``streamlit.testing.v1.AppTest`` against the tiny test zoo (see conftest).

Every page runs without an exception; every slider, select box and radio on the grid page changes the
shown numbers or figures; undefined operators, bad labels and bad uploads show an error element.
Also unit tests of the pure helpers in ``sculpt_core.core.operators`` and ``sculpt_core.app.grid``, the
import direction of the app, and the figure builders in ``sculpt_core.domains.grid.viz``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30


# ----- helpers ------------------------------------------------------------------------------------------
def _home(app_env) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    return at


def _grid(app_env, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    # the plotly figure, whose spec these tests read (the default "image" view is tested on its own)
    at.query_params.update({"fig": "interactive", **(query or {})})
    at.switch_page("pages/grid_sculpting.py").run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _spec(at: AppTest, index: int = 0) -> dict:
    """The plotly spec of the ``index``-th chart (0 = the composed figure on the grid page)."""
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def _view(at: AppTest) -> tuple[dict[str, str], str]:
    """What the user sees of the result: the metrics and the composed figure."""
    return _metrics(at), json.dumps(_spec(at), sort_keys=True)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, log_r=np.zeros((32, 32)))
    return buf.getvalue()


# ----- pages run --------------------------------------------------------------------------------------------
def test_home_page_runs(tiny_zoo_contents, app_env):
    at = _home(app_env)
    _ok(at)
    assert not _errors(at)
    assert _metrics(at)["Zoo grid models"] == "7"
    assert len(at.get("plotly_chart")) == 1
    text = " ".join(md.value for md in at.markdown)
    assert "2309.16115" in text and "Routing by Reaching" in text


def test_home_and_map_pages_keep_their_view_in_the_url(app_env):
    """Issue 17: the home page's colour scale and the map page's controls live in the URL; a link restores them
    and a bad value falls back with one warning."""
    at = _home(app_env)
    assert at.radio(key="home_scale").value == "panel" and "scale" not in at.query_params  # the default
    at.radio(key="home_scale").set_value("log").run()
    assert at.query_params["scale"] == ["log"] or at.query_params["scale"] == "log"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["scale"] = "shared"
    at.run()
    _ok(at)
    assert at.radio(key="home_scale").value == "shared" and not at.warning
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["scale"] = "rainbow"
    at.run()
    assert at.radio(key="home_scale").value == "panel" and "scale='rainbow' ignored" in at.warning[0].value

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update({"embedding": "mds", "seed": "7", "distances": "paper", "perplexity": "x"})
    at.switch_page("pages/distribution_map.py").run()
    _ok(at)
    assert at.radio(key="dm_embed").value == "mds" and at.number_input(key="dm_seed").value == 7
    assert at.radio(key="dm_fig4_source").value == "paper"
    assert len(at.warning) == 1 and "perplexity='x' ignored" in at.warning[0].value
    at.radio(key="dm_embed").set_value("tsne").run()
    query = {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert query == {"seed": "7", "distances": "paper"}, query


def test_home_page_with_empty_zoo_warns(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("SCULPT_ASSETS", str(tmp_path))
    at = _home(app_env)
    _ok(at)
    assert any("No pre-trained grid models" in w.value for w in at.warning)


def test_grid_page_with_empty_zoo_warns(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("SCULPT_ASSETS", str(tmp_path))
    at = _grid(app_env)
    assert any("zoo is empty" in w.value for w in at.warning)
    figures = [c for c in at.get("plotly_chart") if getattr(c, "key", None) != "fig_train_preview"]
    assert at.multiselect(key="g_bases").options == [] and not figures and not _metrics(at)
    # training is still offered, and works: the trained model becomes the first base and is drawn
    at.selectbox(key="tb_reward").set_value("circle1")
    at.text_input(key="tb_name").set_value("mine")
    at.button(key="tb_train").click().run()
    _ok(at)
    assert not _errors(at), _errors(at)
    assert at.multiselect(key="g_bases").value == ["mine"] and at.get("plotly_chart")
    assert any("Trained mine" in s.value for s in [*at.success, *at.warning])


@pytest.mark.parametrize("method", ["oracle", "classifier", "reaching", "ensemble", "compare"])
def test_grid_page_runs_every_method(app_env, method):
    at = _grid(app_env)
    at.radio(key="g_method").set_value(method).run()
    _ok(at)
    assert not _errors(at)
    metrics = _metrics(at)
    if method == "compare":
        assert {"oracle: L1 to target", "classifier: L1 to target", "reaching (exact u): L1 to target",
                "ensemble: L1 to target"} <= set(metrics)
    else:
        assert "L1 to target" in metrics and "L1 to true target" in metrics
    assert len(at.download_button) == 4


# ----- every control changes what is shown ---------------------------------------------------------------------
def test_alpha_slider_changes_result(app_env):
    at = _grid(app_env)
    before = _view(at)
    at.slider(key="g_alpha").set_value(0.2).run()
    _ok(at)
    after = _view(at)
    assert after[1] != before[1]
    assert after[0]["L1 to true target"] != before[0]["L1 to true target"]
    assert at.query_params["alpha"] == "0.2"


def test_operator_select_changes_result(app_env):
    at = _grid(app_env)
    seen = {_view(at)[1]}
    for op in ("contrast", "reverse", "chained_hm", "mixture", "linear"):
        at.selectbox(key="g_op").set_value(op).run()
        _ok(at)
        assert not _errors(at), op
        seen.add(_view(at)[1])
    assert len(seen) == 6


def test_method_radio_changes_result(app_env):
    at = _grid(app_env)
    seen = set()
    for method in ("oracle", "classifier", "reaching", "ensemble", "compare"):
        at.radio(key="g_method").set_value(method).run()
        seen.add(_view(at)[1])
    assert len(seen) == 5


def test_u_source_radio_changes_result(app_env):
    at = _grid(app_env)
    at.radio(key="g_method").set_value("reaching").run()
    views = {}
    for u in ("exact", "flow", "trajectory"):
        at.radio(key="g_u").set_value(u).run()
        _ok(at)
        assert not _errors(at)
        views[u] = _view(at)
    assert len({v[1] for v in views.values()}) == 3
    assert any("Monte-Carlo histogram" in c.value for c in at.caption)  # trajectory u is labelled as sampled


def test_bases_multiselect_changes_result(app_env):
    at = _grid(app_env)
    before = _view(at)
    at.multiselect(key="g_bases").set_value(["circle1", "circle2"]).run()
    _ok(at)
    assert _view(at)[1] != before[1]
    bases_before = _spec(at, 1)
    at.multiselect(key="g_bases").set_value(["circle1", "circle2", "circle3"]).run()
    _ok(at)
    assert any("defined for two models" in e for e in _errors(at))  # harmonic mean of 3 models is undefined
    at.selectbox(key="g_op").set_value("chained_hm").run()
    _ok(at)
    assert not _errors(at)
    assert _spec(at, 1) != bases_before
    assert at.slider(key="g_alpha").disabled


def test_points_slider_overlays_samples(app_env):
    at = _grid(app_env)
    n_traces = len(_spec(at)["data"])
    at.slider(key="g_points").set_value(1000).run()
    _ok(at)
    data = _spec(at)["data"]
    assert len(data) == n_traces + 1 and data[-1]["type"] == "scattergl"
    assert at.query_params["points"] == "1000"


def test_beta_slider_only_for_beta_conditioned_models(tiny_zoo_contents, app_env):
    at = _grid(app_env)
    assert at.slider(key="g_beta_off").disabled
    assert any("not β-conditioned" in c.value.replace("Not β", "not β") for c in at.sidebar.caption)
    at.multiselect(key="g_bases").set_value(["shubert_beta", "diag_beta"]).run()
    _ok(at)
    beta = at.slider(key="g_beta")
    assert not beta.disabled
    before = _view(at)
    bases_before = _spec(at, 1)
    beta.set_value(1.0).run()
    _ok(at)
    assert not _errors(at)
    assert _view(at)[1] != before[1]
    assert _spec(at, 1) != bases_before  # the base distributions move with β
    assert at.query_params["beta"] == "1"


def test_labels_and_weights_inputs_change_result(app_env):
    at = _grid(app_env)
    at.selectbox(key="g_op").set_value("labels").run()
    at.text_input(key="g_labels").input("1,2").run()
    hm = _view(at)[1]
    at.text_input(key="g_labels").input("1,1").run()
    _ok(at)
    assert not _errors(at)
    assert _view(at)[1] != hm
    at.selectbox(key="g_op").set_value("linear").run()
    at.text_input(key="g_weights").input("1,1").run()
    equal = _view(at)[1]
    at.text_input(key="g_weights").input("1,3").run()
    _ok(at)
    assert _view(at)[1] != equal


# ----- honest messages -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels, message", [("1,3", "only 2 models"), ("a,b", "model numbers"), ("", "enter the observed")])
def test_bad_labels_show_error(app_env, labels, message):
    at = _grid(app_env)
    at.selectbox(key="g_op").set_value("labels").run()
    at.text_input(key="g_labels").input(labels).run()
    _ok(at)
    assert any(message in e for e in _errors(at)), _errors(at)


@pytest.mark.parametrize("weights, message", [("1", "one weight per chosen model"), ("1,x", "numbers"),
                                              ("0,0", "positive sum")])
def test_bad_weights_show_error(app_env, weights, message):
    at = _grid(app_env)
    at.selectbox(key="g_op").set_value("mixture").run()
    at.text_input(key="g_weights").input(weights).run()
    _ok(at)
    assert any(message in e for e in _errors(at)), _errors(at)


def test_missing_classifier_is_explained(tiny_zoo_contents, app_env):
    at = _grid(app_env)
    at.multiselect(key="g_bases").set_value(["circle1", "circle2"]).run()
    at.radio(key="g_method").set_value("classifier").run()
    _ok(at)
    assert any("no classifier is shipped or trained" in i.value for i in at.info)
    assert "L1 to target" not in _metrics(at)
    at.radio(key="g_method").set_value("compare").run()
    assert any("Classifier guidance left out" in c.value for c in at.caption)


def test_classifier_for_a_chained_harmonic_mean_is_a_neutral_note(tiny_zoo_contents, app_env):
    at = _grid(app_env, {"bases": "circle1,circle2,circle3", "op": "chained_hm", "method": "classifier"})
    notes = [i.value for i in at.info if "does not apply to the chained harmonic mean" in i.value]
    assert len(notes) == 1 and "oracle" in notes[0] and "custom labels" in notes[0]
    assert not _errors(at) and "L1 to target" not in _metrics(at)
    at.radio(key="g_method").set_value("compare").run()
    _ok(at)
    assert not _errors(at) and any("does not apply to the chained" in c.value for c in at.caption)
    assert "Classifier guidance left out" not in " ".join(c.value for c in at.caption)


@pytest.mark.parametrize("name, payload, message", [
    ("bad.npy", b"this is not numpy", "not a .npy file"),
    ("shape.npy", _npy(np.zeros((16, 16))), "expected shape (32, 32)"),
    ("nan.npy", _npy(np.full((32, 32), np.nan)), "NaN"),
    ("text.npy", _npy(np.array([["a"] * 32] * 32)), "numeric"),
    ("objects.npy", _pickled_npy(), "never loaded"),
    ("archive.npy", _npz(), ".npz archive"),
    ("huge.npy", _npy(np.full((32, 32), 1.8e19)), "subtract a constant"),
    ("big.npy", _npy(np.zeros((400, 400))), "the bound is 1 MiB"),
], ids=["garbage", "shape", "nan", "text", "pickled", "npz", "huge constant", "over the bound"])
def test_bad_upload_shows_error(app_env, name, payload, message):
    at = _grid(app_env)
    at.radio(key="tb_source").set_value("upload a log-reward .npy").run()
    at.file_uploader(key="tb_upload").set_value((name, payload, "application/octet-stream")).run()
    _ok(at)
    assert any(message in e for e in _errors(at)), _errors(at)  # said on upload, before any training
    assert at.button(key="tb_train").disabled  # nothing to train on


def test_upload_missing_file_cannot_train(app_env):
    at = _grid(app_env)
    at.radio(key="tb_source").set_value("upload a log-reward .npy").run()
    _ok(at)
    assert at.button(key="tb_train").disabled
    assert any("Choose a file" in c.value for c in at.caption)


def test_upload_is_previewed_with_a_time_estimate(app_env):
    from sculpt_core.app import grid_training as GT

    at = _grid(app_env)
    at.radio(key="tb_source").set_value("upload a log-reward .npy").run()
    charts_before = len(at.get("plotly_chart"))
    ridge = -np.abs(np.subtract.outer(np.arange(32), np.arange(32))) / 4.0
    at.file_uploader(key="tb_upload").set_value(("ridge.npy", _npy(ridge), "application/octet-stream")).run()
    _ok(at)
    assert not _errors(at) and not at.button(key="tb_train").disabled
    assert len(at.get("plotly_chart")) == charts_before + 1  # the preview of p ∝ R^(1/T)
    assert any(c.value.startswith("Estimated training time: about") for c in at.caption)
    p = GT.target_distribution(torch.as_tensor(ridge), 2.0)
    assert p.sum() == pytest.approx(1.0) and p[5, 5] > p[0, 31]  # the ridge's diagonal is the likely part
    text = GT.estimate_text(600, False, {"steps": 100, "seconds": 5.0, "beta": False})
    assert "ms/step, from your last training" in text and "50 ms/step" in text
    assert GT.manifest_seconds_per_step({"a": {"steps": 100, "train_seconds": 10.0},
                                         "b": {"steps": 10, "train_seconds": 3.0, "beta_range": [1, 2]}},
                                        False) == pytest.approx(0.1)
    hostile = {"x": {"steps": 0, "train_seconds": 1.0}, "y": {"steps": "ten", "train_seconds": 2.0}, "z": [1, 2],
               "w": {"steps": 10, "train_seconds": float("nan")}}
    assert GT.manifest_seconds_per_step(hostile, False) is None and GT.manifest_seconds_per_step([1], False) is None


# ----- training in the page ------------------------------------------------------------------------------------
def test_train_base_model_joins_selection(app_env):
    at = _grid(app_env)
    at.selectbox(key="tb_reward").set_value("corners")
    at.text_input(key="tb_name").input("my_corners")
    at.button(key="tb_train").click().run()
    _ok(at)
    assert not _errors(at)
    assert "my_corners" in at.multiselect(key="g_bases").options
    # the harmonic mean takes two models and two are chosen: the page asks before replacing p2
    assert at.multiselect(key="g_bases").value == ["symmetric_shubert", "diag_sigmoid"]
    assert any("use my_corners instead of diag_sigmoid" in i.value for i in at.info)
    at.button(key="g_offer_no").click().run()
    assert at.multiselect(key="g_bases").value == ["symmetric_shubert", "diag_sigmoid"]
    assert not any("instead of" in i.value for i in at.info)
    # the fast in-app training ends far from its target: a warning, not a success
    assert any("Trained my_corners" in w.value and "far from its target" in w.value for w in at.warning)
    assert not any("Trained my_corners" in s.value for s in at.success)
    at.text_input(key="tb_name").input("my_corners2")
    at.button(key="tb_train").click().run()
    at.button(key="g_offer_yes").click().run()
    _ok(at)
    assert at.multiselect(key="g_bases").value == ["symmetric_shubert", "my_corners2"]
    assert not _errors(at) and "L1 to target" in _metrics(at)
    # with a many-model operator a newly trained model is added without a question
    at.selectbox(key="g_op").set_value("chained_hm").run()
    at.selectbox(key="tb_reward").set_value("currin")
    at.text_input(key="tb_name").input("my_currin")
    at.button(key="tb_train").click().run()
    _ok(at)
    assert at.multiselect(key="g_bases").value == ["symmetric_shubert", "my_corners2", "my_currin"]
    assert not _errors(at) and "L1 to target" in _metrics(at)


def test_train_uploaded_beta_conditioned_model(app_env):
    at = _grid(app_env)
    at.radio(key="tb_source").set_value("upload a log-reward .npy").run()
    at.file_uploader(key="tb_upload").set_value(("ridge.npy", _npy(-np.abs(np.subtract.outer(np.arange(32), np.arange(32))) / 4.0),
                                                 "application/octet-stream")).run()
    at.checkbox(key="tb_beta").check()
    at.button(key="tb_train").click().run()
    _ok(at)
    assert not _errors(at)
    assert "ridge_1" in at.multiselect(key="g_bases").options
    at.multiselect(key="g_bases").set_value(["shubert_beta", "ridge_1"]).run()
    _ok(at)
    assert not at.slider(key="g_beta").disabled


def test_train_classifier_when_none_is_shipped(tiny_zoo_contents, app_env):
    at = _grid(app_env)
    at.multiselect(key="g_bases").set_value(["circle1", "circle2"]).run()
    at.radio(key="g_method").set_value("classifier").run()
    assert at.info and "L1 to target" not in _metrics(at)
    at.button(key="train_clf").click().run()
    _ok(at)
    assert not _errors(at)
    assert "L1 to target" in _metrics(at)
    assert any("trained in this session" in c.value for c in at.caption)


def test_train_classifier_from_compare_all(tiny_zoo_contents, app_env):
    at = _grid(app_env, {"bases": "circle1,circle2", "method": "compare"})
    assert "classifier: L1 to target" not in _metrics(at)
    at.button(key="train_clf").click().run()
    _ok(at)
    assert not _errors(at)
    assert "classifier: L1 to target" in _metrics(at)
    names = [t.get("name", "") for i in range(len(at.get("plotly_chart"))) for t in _spec(at, i)["data"]]
    methods = [n for n in names if n.startswith(("oracle", "classifier", "reaching", "ensemble"))]
    assert len(methods) == 8 and sum("L1" in n for n in methods) == 4  # a heatmap and an error map each
    assert sum(" − target" in n for n in names) == 4  # one error map per method


def test_shipped_classifier_is_used(app_env):
    at = _grid(app_env)
    at.radio(key="g_method").set_value("classifier").run()
    _ok(at)
    assert any("shipped with the zoo" in c.value for c in at.caption)
    before = _view(at)
    at.slider(key="g_alpha").set_value(0.3).run()
    assert _view(at)[1] != before[1]


# ----- never a blank page while sampling ------------------------------------------------------------------------
def test_sampled_view_reports_progress_and_clears_it(app_env, monkeypatch):
    """Issue 17: a trajectory-product view is sampled in chunks behind a progress bar with counts (the previous
    view stays on screen, marked stale); once it is ready the note and the bar are gone, and the same view again
    is served from the cache without sampling."""
    from sculpt_core.app import grid as G
    from sculpt_core.app import grid_views as GV
    from sculpt_core.domains.grid.compose import SAMPLE_CHUNK

    reports: list[tuple[int, int]] = []
    original = GV.StaleWhileComputing.__call__

    def record(self, done, total):
        reports.append((done, total))
        return original(self, done, total)

    monkeypatch.setattr(GV.StaleWhileComputing, "__call__", record)
    at = _grid(app_env, {"bases": "circle1,circle2", "op": "hm", "alpha": "0.37", "method": "reaching",
                         "u": "exact"})  # an α no other test samples: not cached in this process yet
    assert reports == []  # exact u: nothing is sampled, no progress bar
    at.radio(key="g_u").set_value("trajectory").run()
    _ok(at)
    total = G.TRAJECTORY_SAMPLES
    assert reports[0] == (0, total) and reports[-1] == (total, total)
    done = [d for d, _ in reports]
    assert done == sorted(done) and len(set(done)) == total // SAMPLE_CHUNK + 1
    assert not any(GV.STALE_CAPTION in c.value for c in at.caption)  # cleared once the new view is drawn
    assert not at.get("progress")
    assert any(f"histogram of {total} sampled trajectories" in c.value for c in at.caption)
    assert "L1 to target" in _metrics(at)
    reports.clear()
    at.slider(key="g_points").set_value(250).run()  # another rerun of the same view: cached, no sampling
    _ok(at)
    assert reports == []


def test_stale_note_and_progress_bar_show_counts_and_time_left():
    """While sampling, the stale note and a progress bar with counts done / total and the time left are shown."""

    def script():
        import streamlit as st

        from sculpt_core.app import grid_views as GV

        st.plotly_chart({"data": [{"type": "heatmap", "z": [[1, 2]]}]}, key="fig_previous")
        pending = GV.StaleWhileComputing()
        pending(0, 20000)
        pending(8000, 20000)
        if st.session_state.get("clear"):
            pending.clear()

    at = AppTest.from_function(script, default_timeout=TIMEOUT).run()
    _ok(at)
    from sculpt_core.app.grid_views import STALE_CAPTION

    assert [c.value for c in at.caption] == [STALE_CAPTION]
    bar = at.get("progress")[0].proto
    assert bar.value == 40 and "8,000 / 20,000" in bar.text and "s left" in bar.text, bar
    at.session_state["clear"] = True
    at.run()
    assert not at.caption and not at.get("progress")


def test_sampled_compose_in_chunks_is_a_normalised_deterministic_histogram_shared_with_the_cli():
    from sculpt_core.app import grid as G
    from sculpt_core.core import algebra as A
    from sculpt_core.core.metrics import l1_distance
    from sculpt_core.domains.grid.compose import compose, prepare_bases, sample_composed, sampled_histogram
    from sculpt_core.domains.grid.sampling import terminal_histogram
    from sculpt_core.errors import SculptError

    from helpers import random_model

    bases = prepare_bases([random_model(9, seed=s, name=f"m{s}") for s in (21, 22)])
    comp = A.harmonic_mean()
    reports: list[tuple[int, int]] = []
    p = sampled_histogram(bases, comp, 2500, seed=3, progress=lambda d, t: reports.append((d, t)), chunk=1000)
    assert reports == [(0, 2500), (1000, 2500), (2000, 2500), (2500, 2500)]
    chunks = [(1000, 3), (1000, 4), (500, 5)]  # chunk k is seeded seed + k
    counts = sum(terminal_histogram(bases.env, sample_composed(bases, comp, n, sd)).numpy() * n for n, sd in chunks)
    np.testing.assert_allclose(p, counts / 2500, atol=1e-12)
    assert np.array_equal(sampled_histogram(bases, comp, 2500, seed=3, chunk=1000), p)
    # the page's view is the CLI's (`grid compose --u trajectory --samples n --seed s`) for the same seed
    reports.clear()
    view = G.sampled_compose(bases, comp, 4500, seed=3, progress=lambda d, t: reports.append((d, t)))
    cli = compose(bases, comp, "reaching", u_source="trajectory", n_samples=4500, seed=3)
    assert np.array_equal(view.p, cli.p) and reports[-1] == (4500, 4500) and len(reports) == 4
    assert view.sampled and view.n_samples == 4500 and view.method == "reaching" and view.u_source == "trajectory"
    assert view.p.sum() == pytest.approx(1.0) and view.l1 == pytest.approx(l1_distance(view.p, view.target))
    assert not np.array_equal(G.sampled_compose(bases, comp, 4500, seed=4).p, view.p)
    with pytest.raises(SculptError, match="at least 1"):
        sampled_histogram(bases, comp, 0)


# ----- the URL holds the view ----------------------------------------------------------------------------------
def test_query_params_restore_the_view(app_env):
    at = _grid(app_env, {"bases": "circle1,circle2", "op": "contrast", "alpha": "0.3", "method": "reaching",
                         "u": "flow", "points": "500"})
    assert not at.warning
    assert at.multiselect(key="g_bases").value == ["circle1", "circle2"]
    assert at.selectbox(key="g_op").value == "contrast"
    assert at.slider(key="g_alpha").value == pytest.approx(0.3)
    assert at.radio(key="g_method").value == "reaching"
    assert at.radio(key="g_u").value == "flow"
    assert at.slider(key="g_points").value == 500


def test_bad_query_params_warn_and_use_defaults(app_env):
    at = _grid(app_env, {"bases": "nope,diag_sigmoid", "op": "xor", "alpha": "7", "method": "magic",
                         "points": "-3", "beta": "2"})
    warnings = " ".join(w.value for w in at.warning)
    for word in ("bases=", "op=", "alpha=", "method=", "points=", "beta ignored"):
        assert word in warnings
    assert at.multiselect(key="g_bases").value == ["symmetric_shubert", "diag_sigmoid"]
    assert at.slider(key="g_alpha").value == pytest.approx(0.5)
    assert "L1 to target" in _metrics(at)


# ----- pure helpers --------------------------------------------------------------------------------------------
def test_app_state_helpers():
    from sculpt_core.app import grid as G
    from sculpt_core.core import operators as O
    from sculpt_core.errors import SculptError

    assert O.parse_labels("1, 2,2") == (1, 2, 2)
    assert O.parse_labels("y1 y3") == (1, 3)
    with pytest.raises(SculptError):
        O.parse_labels("1,b")
    assert O.parse_weights("1, 0.5", 2) == (1.0, 0.5)
    with pytest.raises(SculptError):
        O.parse_weights("1", 2)
    assert O.alpha_applies("hm", 2) and not O.alpha_applies("hm", 3)
    assert O.alpha_applies("labels", 2, "1,1") and not O.alpha_applies("labels", 2, "1,1,2")
    assert O.build_composition("contrast", 2, 0.3).alpha == 0.3
    with pytest.raises(SculptError, match="two models"):
        O.build_composition("hm", 3, None)
    with pytest.raises(SculptError, match="only 2 models"):
        O.build_composition("labels", 2, None, "1,3")
    state, warnings = G.parse_query({"alpha": "0.25", "points": "100"}, ["a", "b"])
    assert state.alpha == 0.25 and state.points == 100 and state.bases == ["a", "b"] and not warnings
    state, warnings = G.parse_query({"alpha": "nan", "bases": "a,a"}, ["a", "b"])
    assert state.alpha == 0.5 and len(warnings) == 2
    p = np.arange(6, dtype=float).reshape(2, 3) / 15
    csv = G.distribution_csv(p).splitlines()
    assert csv[0] == "z0,z1,p" and csv[1 + 1 * 3 + 2].startswith("1,2,")
    assert np.array_equal(np.load(io.BytesIO(G.distribution_npy(p))), p)
    with pytest.raises(SculptError, match="empty"):
        G.load_uploaded_log_reward(b"", "x.npy")


def test_grid_page_pure_helpers():
    from sculpt_core.app import grid as G

    assert G.with_new_base(["a", "b"], "new", ["a", "b", "c", "new"], "hm") == ["a", "new"]
    assert G.with_new_base(["a", "b"], "new", ["a", "b", "c", "new"], "chained_hm") == ["a", "b", "new"]
    assert G.with_new_base(["a", "b", "c"], "new", ["a", "b", "c", "new"], "labels") == ["a", "b", "new"]
    assert G.with_new_base(["gone", "a"], "new", ["a", "new"], "hm") == ["a", "new"]
    assert G.delta_range_text(np.array([0.5, np.inf, 2.0])) == "0.5 – 2"
    assert G.delta_range_text(np.array([np.nan])) == "n/a"
    assert G.fmt(None) == "n/a" and G.fmt(0.12345) == "0.1235" and G.fmt(1e-5) == "1.00e-05"
    q = G.GridPageState(["a", "b"], "linear", 0.5, None, "1,2", "1,2", "oracle", "exact", 0).to_query()
    assert q["weights"] == "1,2" and "labels" not in q
    q = G.GridPageState(["a", "b"], "labels", 0.5, 2.0, "1,1", "", "reaching", "flow", 250).to_query()
    assert q == {"bases": "a,b", "op": "labels", "alpha": "0.5", "method": "reaching", "u": "flow", "beta": "2",
                 "labels": "1,1", "points": "250"}


def test_operator_table_is_one_vocabulary():
    from sculpt_core.core import algebra as A
    from sculpt_core.core import operators as O

    key = O.composition_key
    assert O.TWO_MODEL_OPS == ("hm", "contrast", "reverse")
    assert key(O.build_composition("hm", 2, 0.3)) == key(A.harmonic_mean(0.3))
    assert key(O.build_composition("reverse", 2, None)) == key(A.reverse_contrast())
    assert key(O.build_composition("labels", 2, 0.4, "1,1")) == key(A.contrast(0.4))
    assert key(O.build_composition("labels", 3, 0.4, "1,2,3")) == key(A.conditioning((1, 2, 3), 3))
    assert key(O.build_composition("chained_hm", 3, None)) == key(A.chained_harmonic_mean(3))
    assert key(O.build_composition("mixture", 2, None, weights_text="1,2")) == key(A.mixture((1, 2)))
    assert [k for k, op in O.OPERATORS.items() if op.inputs == "weights"] == ["linear", "mixture"]
    assert set(O.OPERATOR_LABELS) == set(O.OPERATORS)


def test_app_imports_point_one_way():
    """The app imports no CLI module; the core imports neither streamlit nor the app nor a domain."""
    import ast

    def imports(path: Path) -> set[str]:
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
        return out

    app_files = [*(ROOT / "sculpt_core" / "app").glob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"]
    for path in app_files:
        assert not [m for m in imports(path) if "cli" in m.split(".")[-1]], path
    for path in (ROOT / "sculpt_core" / "core").glob("*.py"):
        bad = [m for m in imports(path) if m.split(".")[0] == "streamlit"
               or m.startswith(("sculpt_core.app", "sculpt_core.domains"))]
        assert not bad, (path, bad)


def test_viz_builders():
    from sculpt_core.domains.grid import viz as V

    p = np.random.default_rng(0).random((32, 32))
    p /= p.sum()
    fig = V.heatmap_row([("a", p), ("b", p.T)], points=np.array([[3, 5], [10, 1]]))
    assert [t.type for t in fig.data] == ["heatmap", "heatmap", "scattergl"]
    assert fig.layout.yaxis.title.text.startswith("z0") and fig.layout.xaxis.title.text.startswith("z1")
    assert fig.layout.coloraxis.colorscale  # explicit, not left to a theme
    assert list(fig.data[2].y.round()) == [3, 10]  # z0 on the vertical axis
    assert V.heatmap(p, "p").data[0].z.shape == (32, 32)
    delta = np.ones((32, 32))
    delta[0, 0] = 0.0
    assert V.delta_figure(delta).layout.coloraxis.cmid == 0.0
    assert len(V.loss_curve([1, 2], [0.5, 0.2], [1.0, 0.5]).data) == 2
    png = V.panels_png([("a", p), ("b", np.full_like(p, np.nan))])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert V.figure_png(fig, [("a", p)])[:4] == b"\x89PNG"
    assert V.l1_title("oracle", 0.01234) == "oracle · L1 0.0123"


def test_gc_freeze_after_warm_up_runs(monkeypatch):
    """The heap alive after the warm-up script runs is frozen (gc.freeze), so later gen-2 collections do not
    rescan it during a slider move; SCULPT_GC_FREEZE=0 turns it off."""
    import gc

    from sculpt_core.app import gc_tuning as GC

    monkeypatch.setattr(GC, "_runs", 0)
    gc.unfreeze()
    keep = [object() for _ in range(10)] + [[i] for i in range(1000)]  # noqa: F841 (alive across the freeze)
    assert GC.after_script_run() and gc.get_freeze_count() >= 1000  # run 1: frozen
    frozen = gc.get_freeze_count()
    assert not GC.after_script_run() and gc.get_freeze_count() == frozen  # run 2: nothing
    monkeypatch.setenv("SCULPT_GC_FREEZE", "0")
    assert not GC.after_script_run() and GC.script_runs() == 3  # run 3 would freeze, but it is turned off
    gc.unfreeze()
