"""Fuzzing the grid page's inputs (hypothesis): the URL state (``parse_query``, then the page itself through
AppTest) and the free-text label and weight boxes. Any input gives a page without an exception: bad URL values
fall back with a warning, bad text shows an error element, good ones a composition. AppTest runs are slow, so
those examples are few; the pure parser gets many."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from sculpt_core.app.grid import METHOD_CHOICES, POINTS_MAX, U_CHOICES, GridPageState, parse_query
from sculpt_core.core.operators import ALPHA_RANGE, OPERATORS

ROOT = Path(__file__).resolve().parents[2]
DERANDOMIZE = os.environ.get("SCULPT_FUZZ_SCALE", "1") == "1"  # reproducible by default, random in deep runs
AVAILABLE = ["symmetric_shubert", "diag_sigmoid", "circle1", "circle2", "circle3"]
KEYS = ["bases", "op", "alpha", "beta", "method", "u", "labels", "weights", "points", "junk"]
HOSTILE = ["", "nan", "inf", "-1", "1e400", "¹", "١٢", "0x10", "circle1,circle1", "circle1,nope", ",", "hm", "labels",
           "oracle", "trajectory", "a" * 500, "1,2,3", "0.5", "99999999999999999999", "\x00", "%20", "<script>"]
VALUE = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20),
                  st.lists(st.sampled_from(HOSTILE), max_size=3))  # repeated parameters arrive as lists
QUERY = st.dictionaries(st.sampled_from(KEYS), VALUE, max_size=6)
COUNTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """Inputs tried, how many the page answered with a warning or an error, exceptions (always 0 when green)."""
    yield
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    (out / "fuzz_counts_app.json").write_text(json.dumps(dict(COUNTS), indent=2, sort_keys=True) + "\n")
    print("\napp fuzz counts:", dict(COUNTS))


@settings(max_examples=300, deadline=None, database=None, derandomize=DERANDOMIZE)
@given(QUERY)
def test_parse_query_never_raises_and_keeps_a_valid_state(params):
    state, warnings = parse_query(params, AVAILABLE)
    COUNTS["parse_query tried"] += 1
    COUNTS["parse_query warned"] += bool(warnings)
    assert all(isinstance(w, str) and w for w in warnings)
    assert 1 <= len(state.bases) <= 3 and len(set(state.bases)) == len(state.bases)
    assert set(state.bases) <= set(AVAILABLE)
    assert state.op in OPERATORS and state.method in METHOD_CHOICES and state.u in U_CHOICES
    assert ALPHA_RANGE[0] <= state.alpha <= ALPHA_RANGE[1]
    assert state.beta is None or (math.isfinite(state.beta) and state.beta > 0)
    assert 0 <= state.points <= POINTS_MAX and len(state.labels) <= 60 and len(state.weights) <= 80
    again, more = parse_query(state.to_query(), AVAILABLE)  # a state's own URL restores it without warnings
    assert not more and again.to_query() == state.to_query()


@settings(max_examples=300, deadline=None, database=None, derandomize=DERANDOMIZE)
@given(st.builds(GridPageState, bases=st.lists(st.sampled_from(AVAILABLE), min_size=1, max_size=3, unique=True),
                 op=st.sampled_from(list(OPERATORS)), alpha=st.floats(*ALPHA_RANGE).map(lambda a: round(a, 2)),
                 method=st.sampled_from(list(METHOD_CHOICES)), u=st.sampled_from(list(U_CHOICES)),
                 labels=st.sampled_from(["1,2", "1,1,2", "2"]), weights=st.sampled_from(["1,1", "1,2,3"]),
                 points=st.integers(0, POINTS_MAX)))
def test_every_page_state_survives_its_url(state):
    back, warnings = parse_query(state.to_query(), AVAILABLE)
    assert not warnings and back.to_query() == state.to_query()


APP = settings(max_examples=8, deadline=None, database=None, derandomize=DERANDOMIZE,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _page(query: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update(query)
    at.switch_page("pages/grid_sculpting.py").run()
    return at


@APP
@given(QUERY)
def test_grid_page_survives_any_url(app_env, params):
    at = _page({k: (v[-1] if isinstance(v, list) and v else v if not isinstance(v, list) else "") for k, v in params.items()})
    COUNTS["page URL tried"] += 1
    COUNTS["page URL exceptions"] += bool(at.exception)
    COUNTS["page URL warned"] += bool(at.warning)
    assert not at.exception, [e.value for e in at.exception]


@APP
@given(st.sampled_from(["labels", "linear", "mixture"]),
       st.one_of(st.sampled_from(["1,2", "¹,²", "١,٢", "1.5", "0", "9,9", "", "y1 y2", "1;2;1", "nan", "1e400,1",
                                  "1,1,1,1,1,1,1", "-1,2"]), st.text(max_size=12)))
def test_grid_page_text_inputs(app_env, op, text):
    at = _page({"bases": "symmetric_shubert,diag_sigmoid", "op": op})
    assert not at.exception
    key = "g_labels" if op == "labels" else "g_weights"
    at.text_input(key=key).set_value(text).run()
    COUNTS["page text tried"] += 1
    COUNTS["page text exceptions"] += bool(at.exception)
    COUNTS["page text errors"] += bool(at.error)
    assert not at.exception, [e.value for e in at.exception]
    assert at.error or at.get("plotly_chart"), "neither an error nor a figure"
