"""The Diffusion Sculpting page (AppTest) and its pure helpers.

Most tests run against the tiny test zoo (conftest), which ships no diffusion models, so the page composes the
exact built-in specs; one test uses the shipped learned models in ``assets/``. Every run samples few particles
over few steps (URL ``n``/``steps``), so each page run takes well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from sculpt_core.app import diffusion_state as S
from sculpt_core.errors import SculptError

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
SMALL = {"n": "200", "steps": "20"}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for the helpers called outside a page run (the page pins its own thread)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _page(query: dict | None = None, small: bool = True) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update({**(SMALL if small else {}), **(query or {})})
    at.switch_page("pages/diffusion_sculpting.py").run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _infos(at: AppTest) -> str:
    return " ".join(i.value for i in at.info)


def _errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


# ----- the page ---------------------------------------------------------------------------------------------
def test_page_opens_on_exact_specs(app_env):
    at = _page()
    assert at.multiselect(key="d_bases").value == ["spec:ring", "spec:band"]
    metrics = _metrics(at)
    assert {"binned L1", "L1 noise floor", "L1 / floor", "EMD (floor)", "sampling time"} <= set(metrics)
    assert not at.error
    densities = _charts(at)[0]
    assert [t["type"] for t in densities["data"]] == ["heatmap"] * 3  # p1, p2, the exact composed target
    assert any("p1 ⊗ p2" in md.value for md in at.markdown)
    assert len(at.download_button) == 4
    assert at.query_params["bases"] == "spec:ring,spec:band" and at.query_params["method"] == "oracle"
    assert at.query_params["n"] == "200" and at.query_params["steps"] == "20"


def test_alpha_move_changes_target_samples_and_url(app_env):
    at = _page()
    before = (_metrics(at)["binned L1"], json.dumps(_charts(at)[:2], sort_keys=True))
    at.sidebar.slider(key="d_alpha").set_value(0.2).run()
    _ok(at)
    after = (_metrics(at)["binned L1"], json.dumps(_charts(at)[:2], sort_keys=True))
    assert after[1] != before[1]
    assert at.query_params["alpha"] == "0.2"
    assert any("α=0.2" in md.value for md in at.markdown)


def test_switching_methods(app_env):
    at = _page()
    oracle_l1 = _metrics(at)["binned L1"]
    at.sidebar.radio(key="d_method").set_value("score-sum").run()
    _ok(at)
    assert _metrics(at)["binned L1"] != oracle_l1 and at.query_params["method"] == "score-sum"
    at.sidebar.radio(key="d_method").set_value("superdiff").run()  # the AND at α = 0.5: applies
    _ok(at)
    assert "binned L1" in _metrics(at) and not at.error
    at.sidebar.slider(key="d_alpha").set_value(0.3).run()  # an α-operator: SuperDiff does not apply
    _ok(at)
    assert "SuperDiff composes mixtures" in _infos(at) and not at.error and "binned L1" not in _metrics(at)
    at.sidebar.radio(key="d_method").set_value("base").run()
    _ok(at)
    at.sidebar.selectbox(key="d_model").set_value(2).run()
    _ok(at)
    assert at.query_params["model"] == "2" and "binned L1" in _metrics(at)


def test_compare_all(app_env):
    at = _page({"method": "compare"})
    metrics = _metrics(at)
    assert {"oracle: L1 / floor", "score-sum: L1 / floor", "superdiff: L1 / floor"} <= set(metrics)
    assert len(at.dataframe) == 2 and not at.error  # the comparison table and the spec editor
    compare = _charts(at)[1]
    assert len(compare["data"]) == 1 + len([k for k in metrics if k.endswith("L1 / floor")])


def test_classifier_note_and_training(app_env):
    from sculpt_core.app.diffusion import methods

    if "classifier" not in methods():
        pytest.skip("the diffusion domain offers no classifier method yet")
    at = _page({"method": "classifier"})
    assert "no classifier trained for these bases" in _infos(at) and not at.error
    at.button(key="d_train_clf").click().run()  # a tiny one (SCULPT_FAST_TRAINING)
    _ok(at)
    assert not at.error and "binned L1" in _metrics(at)
    assert any("trained in this session" in c.value for c in at.caption)
    at.sidebar.radio(key="d_method").set_value("compare").run()
    _ok(at)
    assert "classifier: L1 / floor" in _metrics(at)


def test_time_slider_and_animation(app_env):
    at = _page()
    slider = at.select_slider(key="d_t")
    assert len(slider.options) == 20 and slider.value == slider.options[-1]
    last = json.dumps(_charts(at)[2], sort_keys=True)
    slider.set_value(slider.options[0]).run()
    _ok(at)
    first = _charts(at)[2]
    assert json.dumps(first, sort_keys=True) != last
    assert first["layout"]["xaxis"]["range"][1] > 8  # at t ≈ 1 the particles spread over the prior (σ(1) ≈ 9.85)
    at.checkbox(key="d_anim").check().run()
    _ok(at)
    assert len(_charts(at)[2]["frames"]) == 20


def test_a_slow_guided_run_is_previewed_then_replaced(app_env):
    at = _page({"n": "800", "steps": "20"})  # more than the preview (300 × 20): one is drawn first
    captions = " ".join(c.value for c in at.caption)
    assert "800 particles, 20 Euler–Maruyama steps" in captions and "Preview" not in captions
    assert at.session_state["d_answer_ms"] > 0
    assert len([c for c in at.get("plotly_chart")]) == 3  # densities, samples, snapshot: the preview was replaced


def test_three_bases_and_undefined_operator(app_env):
    at = _page({"bases": "spec:ring,spec:band,spec:column"})
    assert "Operator undefined" in _errors(at) and not at.exception
    at.sidebar.selectbox(key="d_op").set_value("labels").run()
    at.sidebar.text_input(key="d_labels").set_value("1,2,3").run()
    _ok(at)
    assert not at.error and "binned L1" in _metrics(at)
    at.sidebar.text_input(key="d_labels").set_value("1,4").run()
    assert "label 4" in _errors(at) and not at.exception


def test_mixture_weights(app_env):
    at = _page({"op": "mixture", "weights": "1,3", "method": "superdiff"})
    assert at.sidebar.text_input(key="d_weights").value == "1,3"
    assert "binned L1" in _metrics(at) and not at.error
    at.sidebar.text_input(key="d_weights").set_value("1,x").run()
    assert "weights must be" in _errors(at) and "1,x" in _errors(at) and not at.exception


@pytest.mark.parametrize("text, message", [
    ("{\"weights\": [1, 1], \"means\": [[0, 0]", "invalid JSON"),
    ("{\"weights\": [1], \"means\": [[0, 0]], \"covs\": [[[1, 2], [2, 1]]]}", "not positive definite"),
    ("{\"weights\": [1], \"means\": [[0, 0, 1]], \"stds\": [0.5]}", "means must be one point"),
    ("[1, 2]", "must be a JSON object"),
])
def test_bad_json_spec_is_an_error(app_env, text, message):
    at = _page()
    at.text_input(key="d_spec_name").set_value("mine")
    at.text_area(key="d_spec_json").set_value(text)
    at.button(key="d_add_json").click().run()
    _ok(at)
    assert message in _errors(at)
    assert at.multiselect(key="d_bases").value == ["spec:ring", "spec:band"]


def test_spec_outside_the_square_warns(app_env):
    at = _page()
    at.text_input(key="d_spec_name").set_value("far")
    at.text_area(key="d_spec_json").set_value('{"weights": [1], "means": [[9, 9]], "stds": [0.05]}')
    at.button(key="d_add_json").click().run()
    _ok(at)
    assert any("Widen the square" in w.value for w in at.warning) and not at.exception
    at.sidebar.slider(key="d_extent").set_value(10.0).run()  # a larger square holds it
    _ok(at)
    assert not at.error and not at.warning and at.query_params["extent"] == "10"


def test_added_spec_joins_the_bases_and_the_url(app_env):
    at = _page()
    at.text_input(key="d_spec_name").set_value("pair")
    at.text_area(key="d_spec_json").set_value('{"weights": [1, 2], "means": [[-1, 1], [1, 1]], "stds": [0.4, 0.3]}')
    at.button(key="d_add_json").click().run()
    _ok(at)
    assert at.multiselect(key="d_bases").value == ["spec:ring", "user:pair"]
    assert not at.error and "binned L1" in _metrics(at)
    query = dict(at.query_params)
    assert json.loads(query["specs"])["pair"]["stds"] == [0.4, 0.3]
    # a shared link restores the spec in a fresh session
    fresh = _page(query)
    assert fresh.multiselect(key="d_bases").value == ["spec:ring", "user:pair"]
    assert _metrics(fresh)["binned L1"] == _metrics(at)["binned L1"]


def test_url_state_restores_the_view(app_env):
    at = _page({"bases": "spec:band,spec:column", "op": "contrast", "alpha": "0.3", "gamma": "1.5",
                "method": "score-sum", "n": "300", "steps": "30", "seed": "4", "sampler": "pc", "extent": "4"})
    assert not at.warning
    assert at.multiselect(key="d_bases").value == ["spec:band", "spec:column"]
    assert at.selectbox(key="d_op").value == "contrast"
    assert at.slider(key="d_alpha").value == pytest.approx(0.3)
    assert at.slider(key="d_gamma").value == pytest.approx(1.5)
    assert at.radio(key="d_method").value == "score-sum"
    assert (at.number_input(key="d_n").value, at.number_input(key="d_steps").value,
            at.number_input(key="d_seed").value) == (300, 30, 4)
    assert at.selectbox(key="d_sampler").value == "pc" and at.slider(key="d_extent").value == pytest.approx(4.0)
    assert "300 particles" in " ".join(c.value for c in at.caption)


def test_bad_url_params_warn_and_use_defaults(app_env):
    at = _page({"bases": "nope,spec:band", "op": "xor", "alpha": "3", "gamma": "-1", "method": "magic",
                "n": "0", "specs": "{not json"})
    warnings = " ".join(w.value for w in at.warning)
    for word in ("bases=", "op=", "alpha=", "gamma=", "method=", "n=", "specs ignored"):
        assert word in warnings
    assert at.multiselect(key="d_bases").value == ["spec:ring", "spec:band"]
    assert "binned L1" in _metrics(at)


def test_emd_on_demand(app_env):
    at = _page()
    assert _metrics(at)["EMD (floor)"] == "off"
    at.checkbox(key="d_emd").check().run()
    _ok(at)
    value = _metrics(at)["EMD (floor)"]
    assert value != "off" and "(" in value


def test_train_a_score_model_in_the_page(app_env):
    at = _page()
    at.selectbox(key="d_train_spec").set_value("spec:column")
    at.text_input(key="d_train_name").input("col_quick")
    at.form_submit_button[0].click().run()
    _ok(at)
    assert at.multiselect(key="d_bases").value == ["spec:ring", "trained:col_quick"]
    assert any("Trained col_quick" in s.value for s in at.success)
    assert "binned L1" in _metrics(at) and not at.error
    loss = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("fig_loss_last"))
    assert loss["layout"]["xaxis"]["tickformat"] == ",d" and loss["layout"]["yaxis"]["tickformat"] == ".3g"


def test_learned_zoo_bases(monkeypatch):
    """The shipped learned models (``assets/``) are the default bases; their learned scores drive score-sum."""
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    from sculpt_core.domains.diffusion.zoo import diffusion_model_names

    if not {"ring", "band"} <= set(diffusion_model_names()):
        pytest.skip("the shipped diffusion models are missing from assets/")
    at = _page({"method": "score-sum"})
    assert at.multiselect(key="d_bases").value == ["ring", "band"]
    assert "scores: p1 learned, p2 learned" in " ".join(c.value for c in at.caption)
    assert not at.error
    from sculpt_core.domains.diffusion import zoo as Z

    find = getattr(Z, "find_diffusion_classifier", None)
    if find is not None and find(["ring", "band"]) is not None:  # the shipped classifier guides the zoo pair
        at.sidebar.radio(key="d_method").set_value("classifier").run()
        _ok(at)
        assert any("shipped with the zoo" in c.value for c in at.caption) and "binned L1" in _metrics(at)
        at.sidebar.multiselect(key="d_bases").set_value(["spec:ring", "spec:band"]).run()  # not for exact specs
        _ok(at)
        assert "no classifier trained for these bases" in _infos(at) and not at.error


# ----- pure helpers ----------------------------------------------------------------------------------------------
def test_state_helpers():
    state, warnings = S.parse_query({}, [], ["oracle", "score-sum"])
    assert state.bases == ["spec:ring", "spec:band"] and not warnings
    assert S.default_bases(["ring", "band", "column"]) == ["ring", "band"]
    q = S.DiffusionPageState(["spec:ring", "user:a"], "mixture", 0.5, weights="1,2", specs={"a": {"x": 1}}).to_query()
    assert q["weights"] == "1,2" and "labels" not in q and json.loads(q["specs"]) == {"a": {"x": 1}}
    assert S.with_new_base(["a", "b"], "c", "hm") == ["a", "c"]
    assert S.with_new_base(["a", "b"], "c", "labels") == ["a", "b", "c"]
    assert S.with_new_base(["a", "b", "d"], "c", "labels") == ["a", "b", "c"]
    assert S.base_label("spec:ring") == "ring (exact spec)" and S.base_label("ring") == "ring (zoo, learned)"
    with pytest.raises(SculptError, match="taken"):
        S.check_name("a", ["a"])
    with pytest.raises(SculptError, match="letters"):
        S.check_name("a b", [])


def test_spec_editing_helpers():
    rows = S.spec_rows({"weights": [1, 1], "means": [[0, 0], [1, 1]], "stds": [0.5, 0.2]})
    data, spec = S.spec_from_rows(rows + [{"weight": None, "mean_x": None, "mean_y": None, "std": None}], "t")
    assert data["stds"] == [0.5, 0.2] and spec.n_components == 2
    with pytest.raises(SculptError, match="component 1: std"):
        S.spec_from_rows([{"weight": 1, "mean_x": 0, "mean_y": 0, "std": "x"}], "t")
    with pytest.raises(SculptError, match="stds must be positive"):
        S.spec_from_rows([{"weight": 1, "mean_x": 0, "mean_y": 0, "std": -1}], "t")
    _, tilted = S.spec_from_json('{"weights": [1], "means": [[0, 0]], "covs": [[[1, 0.5], [0.5, 1]]]}', "t")
    assert "covs" in S.compact_spec(tilted) and "stds" in S.compact_spec(spec)


def test_method_notes():
    comp = S.diffusion_composition("hm", 2, 0.5)
    assert comp.alpha is None and S.method_note("superdiff", comp) is None
    assert S.method_note("superdiff", S.diffusion_composition("hm", 2, 0.3)) is not None
    assert S.method_note("superdiff", S.diffusion_composition("linear", 3, None, weights="1,1,2")) is None
    assert S.diffusion_composition("linear", 2, None, weights="1,2").kind == "mixture"
    assert S.method_note("oracle", S.diffusion_composition("chained_hm", 3, None)) is not None
    assert S.method_note("score-sum", comp) is None


def test_viz_builders():
    from sculpt_core.domains.diffusion import viz as V
    from sculpt_core.domains.diffusion.spec import load_spec

    q = V.base_density(load_spec("band"), 3.5, 20, nodes=4)
    assert q.shape == (20, 20) and abs(q.sum() - 1) < 1e-9
    assert q[:, 10].sum() > 2 * q[10, :].sum()  # band: three blobs along y = 0 (ix bins x, iy bins y)
    x = np.random.default_rng(0).normal(size=(500, 2))
    h = V.sample_histogram(x, 3.5, 20)
    assert abs(h.sum() - 1) < 1e-12
    fig = V.density_row([("q", q), ("h", h)], 3.5, shared_scale=True, points={0: x})
    assert [t.type for t in fig.data] == ["heatmap", "heatmap", "scattergl"]
    anim = V.animation_figure(np.stack([x * 10, x]), [0.99, 0.001], 3.5)
    assert len(anim.frames) == 2 and anim.frames[0].layout.xaxis.range[1] > anim.frames[1].layout.xaxis.range[1]
    assert V.density_csv(q, 3.5).splitlines()[0] == "ix,iy,x,y,p" and len(V.density_csv(q, 3.5).splitlines()) == 401
    assert V.samples_csv(x[:3]).count("\n") == 4


def test_sample_keys_ignore_what_a_method_ignores():
    from sculpt_core.app.diffusion import RunSettings, sample_key
    from sculpt_core.app.diffusion_state import diffusion_composition as comp

    class B:
        token = "t"

    bases = [B(), B()]
    s = RunSettings(200, 20)
    hm3, hm5 = comp("hm", 2, 0.3), comp("hm", 2, 0.5)
    assert sample_key(bases, hm3, "score-sum", s) == sample_key(bases, hm5, "score-sum", s)
    assert sample_key(bases, hm3, "base", s) == sample_key(bases, comp("contrast", 2, 0.5), "base", s)
    assert sample_key(bases, hm3, "oracle", s) != sample_key(bases, hm5, "oracle", s)
    exact_prior = RunSettings(200, 20, prior="exact")
    assert sample_key(bases, hm3, "score-sum", exact_prior) != sample_key(bases, hm5, "score-sum", exact_prior)
    assert sample_key(bases, hm3, "score-sum", s) == sample_key(bases, hm3, "score-sum", RunSettings(200, 20, gamma=2))
    assert sample_key(bases, hm3, "oracle", s) != sample_key(bases, hm3, "oracle", RunSettings(200, 20, gamma=2))


def test_snapshot_steps():
    from sculpt_core.app.diffusion import snapshot_steps

    assert snapshot_steps(100)[-1] == 100 and len(snapshot_steps(100)) == 20
    assert snapshot_steps(5) == [1, 2, 3, 4, 5]


def test_downloads_carry_the_view_in_columns_and_file_names(downloads):
    import csv as _csv
    import io as _io

    _page({"bases": "spec:ring,spec:band", "op": "contrast", "alpha": "0.3", "method": "oracle", "gamma": "1.5"})
    by_label = {c["label"]: c for c in downloads}
    density = by_label["Density (CSV)"]
    samples = next(c for label, c in by_label.items() if label == "Samples (CSV)")
    for call, method in ((density, "target"), (samples, "oracle")):
        for part in ("sculpt_diffusion", "ring+band", "contrast", "a0.3", method):
            assert part in call["file_name"], (part, call["file_name"])
    assert "gamma1.5" in samples["file_name"] and "gamma" not in density["file_name"]
    rows = list(_csv.DictReader(_io.StringIO(samples["data"]())))
    head = rows[0]
    assert head["method"] == "oracle" and head["alpha"] == "0.3" and head["operator"] == "contrast"
    assert head["gamma"] == "1.5" and head["labels"] == "1 1" and float(head["x"]) == float(head["x"])
    q_rows = list(_csv.DictReader(_io.StringIO(density["data"]())))
    assert abs(sum(float(r["p"]) for r in q_rows) - 1.0) < 1e-6 and q_rows[0]["bases"] == "ring+band"


@pytest.mark.parametrize("widget, key, value, url", [
    ("slider", "d_gamma", 2.0, ("gamma", "2")),
    ("number_input", "d_n", 300, ("n", "300")),
    ("number_input", "d_steps", 30, ("steps", "30")),
    ("number_input", "d_seed", 4, ("seed", "4")),
    ("selectbox", "d_sampler", "pc", ("sampler", "pc")),
])
def test_every_sampling_control_resamples_and_writes_the_link(app_env, widget, key, value, url):
    """Each sampling control draws other samples (another binned L1) and writes the link (AppTest per control)."""
    at = _page({"method": "oracle"})
    before = _metrics(at)["binned L1"]
    getattr(at, widget)(key=key).set_value(value).run()
    _ok(at)
    assert not _errors(at) and at.query_params[url[0]] == url[1]
    assert _metrics(at)["binned L1"] != before
