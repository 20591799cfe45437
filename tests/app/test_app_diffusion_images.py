"""The Diffusion Images page (AppTest) and its pure helpers, on the tiny 7×7 colored-MNIST zoo of conftest
(``tiny_image_zoo``: a family of the five sets, a judge, both classifiers). Every run samples 4 images over 3
steps (URL ``n``/``steps``), so a page run takes well under a second after the first."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from sculpt_core.app import diffusion_images as DI
from sculpt_core.app import image_grid as IG

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
SMALL = {"n": "4", "steps": "3"}
FAMILIES = {"mnist16": ["mn1", "mn2", "mn3", "m1", "m2"]}


@pytest.fixture
def images_env(tiny_image_zoo, monkeypatch):
    """The tiny image zoo in SCULPT_ASSETS (the shipped assets under SCULPT_TEST_REAL_ZOO=1)."""
    if tiny_image_zoo is not None:
        monkeypatch.setenv("SCULPT_ASSETS", str(tiny_image_zoo))
    return tiny_image_zoo


def _page(query: dict | None = None, small: bool = True) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update({**(SMALL if small else {}), **(query or {})})
    at.switch_page("pages/diffusion_images.py").run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _text(at: AppTest, kind: str) -> str:
    return " ".join(e.value for e in getattr(at, kind))


def _images(at: AppTest) -> int:
    return len(at.get("image"))


# ----- the page ---------------------------------------------------------------------------------------------
def test_opens_on_the_papers_triple(images_env):
    at = _page()
    assert at.multiselect(key="di_bases").value == ["mn1", "mn2", "mn3"]
    assert at.sidebar.radio(key="di_preset").value == "triple"
    assert at.sidebar.text_input(key="di_labels").value == "1,2,3"
    assert at.sidebar.number_input(key="di_gamma").value == 10.0
    assert set(_metrics(at)) == {"p1: in its own set", "p2: in its own set", "p3: in its own set",
                                 "classifier: in the expected set"}
    assert _images(at) == 4 and len(at.get("download_button")) == 4 and not at.error
    captions = _text(at, "caption")
    assert "expected: green 0 ·" in captions  # the ideal composition of y = (1, 2, 3)
    assert "expected: green 0, green 1, green 2, green 3" in captions  # MN1's own set
    assert "judged as:" in captions and "classifier_mn1+mn2+mn3.pt · γ = 10" in captions
    assert any("p(x | y=123)" in md.value for md in at.markdown)
    assert dict(at.query_params) == {"bases": "mn1,mn2,mn3", "op": "labels", "labels": "1,2,3", "alpha": "0.5",
                                     "gamma": "10", "method": "classifier", "n": "4", "steps": "3", "seed": "0"}


def test_the_pair_and_its_three_operators(images_env):
    at = _page()
    at.sidebar.radio(key="di_preset").set_value("pair").run()
    _ok(at)
    assert at.multiselect(key="di_bases").value == ["m1", "m2"] and at.sidebar.selectbox(key="di_op").value == "hm"
    assert _images(at) == 3 and "expected: green 0 ·" in _text(at, "caption") and not at.error
    for op, expected in (("contrast", "red 0"), ("reverse", "green 1")):
        at.sidebar.selectbox(key="di_op").set_value(op).run()
        _ok(at)
        assert f"expected: {expected} ·" in _text(at, "caption") and not at.error
        assert at.query_params["op"] == op and at.query_params["bases"] == "m1,m2"
    at.sidebar.slider(key="di_alpha").set_value(0.3).run()  # the shipped pair classifier is not α-conditioned
    _ok(at)
    assert "only α = 0.5" in _text(at, "info") and not at.error and at.query_params["alpha"] == "0.3"


def test_methods_one_base_and_compare(images_env):
    at = _page()
    at.sidebar.radio(key="di_method").set_value("superdiff").run()  # the AND of all three bases
    _ok(at)
    assert "superdiff: in the expected set" in _metrics(at) and not at.error
    at.sidebar.radio(key="di_method").set_value("score-sum").run()
    _ok(at)
    assert "score-sum: in the expected set" in _metrics(at) and "whatever the operator" in _text(at, "caption")
    at.sidebar.radio(key="di_method").set_value("base").run()
    _ok(at)
    at.sidebar.selectbox(key="di_model").set_value(2).run()
    _ok(at)
    assert at.query_params["model"] == "2" and "one base: in its own set" in _metrics(at)
    assert any("one base alone: p2 = mn2" in md.value for md in at.markdown)
    at.sidebar.radio(key="di_method").set_value("compare").run()
    _ok(at)
    assert {f"{m}: in the expected set" for m in ("classifier", "superdiff", "score-sum")} <= set(_metrics(at))
    assert _images(at) == 6 and not at.error and at.query_params["method"] == "compare"
    assert any("The composition by every method" in s.value for s in at.subheader)
    table = at.dataframe[-1].value
    assert list(table["method"]) == ["classifier guidance", "SuperDiff (training-free)", "score sum Σ s_i"]


def test_gamma_buttons_seed_and_cached_grids(images_env):
    at = _page()
    at.sidebar.button(key="di_gamma_theory").click().run()
    _ok(at)
    assert at.sidebar.number_input(key="di_gamma").value == 1.0 and at.query_params["gamma"] == "1"
    at.sidebar.button(key="di_gamma_paper").click().run()
    _ok(at)
    assert at.query_params["gamma"] == "10"
    at.sidebar.number_input(key="di_seed").set_value(3).run()
    _ok(at)
    assert at.query_params["seed"] == "3" and _images(at) == 4
    key = DI.sample_key(DI.family_token("mnist16"), ["mn1", "mn2", "mn3"], None, "base", 4, 3, 3, 10.0, 1)
    assert DI.cached_grid(key) is not None  # sampled once, kept for the next run


def test_url_round_trip(images_env):
    query = {"bases": "m1,m2", "op": "contrast", "alpha": "0.5", "gamma": "3", "method": "superdiff", "n": "4",
             "steps": "3", "seed": "7"}
    at = _page(query, small=False)
    assert at.multiselect(key="di_bases").value == ["m1", "m2"] and at.sidebar.selectbox(key="di_op").value == "contrast"
    assert at.sidebar.number_input(key="di_gamma").value == 3.0 and at.sidebar.number_input(key="di_seed").value == 7
    assert at.sidebar.radio(key="di_preset").value == "pair"
    assert dict(at.query_params) == query
    assert "SuperDiff composes mixtures" in _text(at, "info")  # the contrast is no AND: a note, not an error
    again = _page(dict(at.query_params), small=False)
    assert dict(again.query_params) == query


def test_bad_url_values_give_messages(images_env):
    at = _page({"bases": "mn1,zz", "n": "abc", "method": "oracle", "gamma": "-1", "family": "nope", "op": "xor"})
    warnings = _text(at, "warning")  # (n falls back to 64 images; the 3 steps keep the run short)
    for part in ("bases='mn1,zz' ignored", "n='abc' ignored", "method='oracle' ignored", "gamma='-1' ignored",
                 "family='nope' ignored", "op='xor' ignored"):
        assert part in warnings, part
    assert at.multiselect(key="di_bases").value == ["mn1", "mn2", "mn3"] and not at.error


def test_bad_labels_and_one_base(images_env):
    at = _page({"labels": "1,9"})
    assert "Operator undefined" in _text(at, "error") and _images(at) == 3  # the bases still show
    at = _page({"bases": "m2"})
    assert "One base chosen" in _text(at, "info") and _images(at) == 1 and not at.error


def test_no_image_family_gives_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SCULPT_ASSETS", str(tmp_path))
    at = _page()
    assert "No colored-MNIST image models are shipped" in _text(at, "warning")
    assert not at.error and _images(at) == 0
    (tmp_path / "manifest.json").write_text('{"diffusion_image_models": []}')
    at = _page()
    assert "manifest could not be read" in _text(at, "error")


# ----- pure helpers -----------------------------------------------------------------------------------------
def test_parse_query_defaults_and_presets():
    state, warnings = DI.parse_image_query({}, FAMILIES, "mnist16")
    assert not warnings and state.bases == ("mn1", "mn2", "mn3") and state.op == "labels" and state.gamma == 10.0
    assert state.to_query() == {"bases": "mn1,mn2,mn3", "op": "labels", "labels": "1,2,3", "alpha": "0.5",
                                "gamma": "10", "method": "classifier", "n": "64", "steps": "200", "seed": "0"}
    state, _ = DI.parse_image_query({"bases": "m1,m2"}, FAMILIES, "mnist16")
    assert state.op == "hm" and "labels" not in state.to_query()
    state, warnings = DI.parse_image_query({"n": "٣", "model": "5", "steps": "1e9", "seed": "-1"}, FAMILIES, "mnist16")
    assert len(warnings) == 4 and (state.n, state.steps, state.seed, state.model) == (64, 200, 0, 1)
    assert DI.preset_of(["m2", "m1"]) == DI.CUSTOM and DI.default_bases(["m1", "m2"]) == ["m1", "m2"]


HOSTILE = ["", "nan", "inf", "-1", "1e400", "¹", "١٢", "0x10", "+-3", "mn1,mn1", "mn1,nope", ",", "\x00", "a" * 500,
           "99999999999999999999", ["mn1", "m2"], []]


@pytest.mark.parametrize("key", ["family", "bases", "op", "alpha", "labels", "weights", "gamma", "method", "model",
                                 "n", "steps", "seed"])
def test_parse_query_survives_hostile_values(key):
    for value in HOSTILE:
        state, warnings = DI.parse_image_query({key: value}, FAMILIES, "mnist16")
        assert set(state.bases) <= set(FAMILIES["mnist16"]) and 1 <= len(state.bases) <= DI.MAX_BASES
        assert DI.N_RANGE[0] <= state.n <= DI.N_RANGE[1] and DI.STEPS_RANGE[0] <= state.steps <= DI.STEPS_RANGE[1]
        assert math.isfinite(state.gamma) and state.gamma > 0 and 1 <= state.model <= len(state.bases)
        assert len(state.labels) <= 60 and all(isinstance(w, str) for w in warnings)


def test_method_notes():
    from sculpt_core.core import algebra as A

    assert DI.method_note("superdiff", A.conditioning((3, 1, 2), 3), 3) is None
    assert "does not apply" in DI.method_note("superdiff", A.contrast(), 2)
    assert "chained" in DI.method_note("classifier", A.chained_harmonic_mean(3), 3)
    assert DI.method_note("classifier", None, 1) and DI.method_note("base", None, 1) is None


def test_tile_and_png():
    x = np.zeros((5, 3, 2, 2), np.float32)
    x[:, 1] = 1.0  # green squares
    rgb = IG.tile(x)
    assert IG.grid_shape(5) == (2, 3) and IG.grid_shape(64) == (8, 8)
    assert rgb.shape == (2 * 3 + 1, 3 * 3 + 1, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 1]) == (0, 255, 0) and tuple(rgb[0, 0]) == (76, 76, 76)
    assert tuple(rgb[4, 7]) == (76, 76, 76)  # the sixth cell is empty
    png = IG.grid_png(x)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    plain = IG.png_bytes_plain(rgb)
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(plain)).convert("RGB")), rgb)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[::IG.display_scale(rgb.shape[1])][
        :, ::IG.display_scale(rgb.shape[1])], rgb)
    assert IG.enlarge(rgb, 3).shape == (21, 30, 3)


def test_bases_gamma_labels_and_weights_controls(images_env):
    """The controls the preset buttons also set, each moved by hand (AppTest for every control)."""
    at = _page()
    at.sidebar.text_input(key="di_labels").input("1,2").run()
    _ok(at)
    assert at.query_params["labels"] == "1,2" and not at.error
    at.multiselect(key="di_bases").set_value(["mn1", "mn3"]).run()
    _ok(at)
    assert at.query_params["bases"] == "mn1,mn3" and at.sidebar.radio(key="di_preset").value != "triple"
    assert not at.error, [e.value for e in at.error]
    at.sidebar.number_input(key="di_gamma").set_value(4.0).run()
    _ok(at)
    assert at.query_params["gamma"] == "4" and not at.error
    at.sidebar.selectbox(key="di_op").set_value("mixture").run()
    at.sidebar.text_input(key="di_weights").input("1,3").run()
    _ok(at)
    assert at.query_params["weights"] == "1,3" and not at.error, [e.value for e in at.error]
