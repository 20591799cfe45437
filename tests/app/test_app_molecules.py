"""The Molecule Sculpting page (AppTest, on the shipped molecule models in ``assets/``) and its pure helpers.

The shipped checkpoints carry their fragment library, so the page runs without ``../shared/data``; without the
sEH proxy weights it says so and shows SA and QED only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rdkit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sculpt_core.app import molecules as M  # noqa: E402
from sculpt_core.app.molecules import MolSamples, beta_window, default_mol_bases  # noqa: E402
from sculpt_core.core import algebra as A  # noqa: E402

from helpers import molecule_page  # noqa: E402
from sculpt_core.errors import SculptError  # noqa: E402
from sculpt_core.domains.molecules import viz as V  # noqa: E402

TIMEOUT = 90


def _page(query: dict | None = None, **state) -> AppTest:
    return molecule_page(query, TIMEOUT, **state)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _kde(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_page_samples_the_default_composition(mol_env):
    from sculpt_core.domains.molecules.seh_proxy import seh_available

    at = _page()
    metrics = _metrics(at)
    assert {"molecules / s", "high sa (≥ 0.6)", "high qed (≥ 0.25)", "unique"} <= set(metrics)
    assert any("p1 ⊗ p2" in md.value for md in at.markdown)
    names = {t.get("name") for t in _kde(at)["data"]}
    assert {"p1 = seh", "p2 = sa", "p1 ⊗ p2 (α=0.5)"} <= names
    assert len(at.get("image")) == 1 and len(at.get("download_button")) == 1
    if seh_available():
        assert metrics["high seh (≥ 0.5)"].endswith("%") and len(at.get("plotly_chart")) == 3  # KDE, Table 1, diversity
    else:
        assert any("sEH reward is off" in w.value for w in at.warning)


def test_sliders_change_what_is_sampled(mol_env):
    at = _page()
    before = json.dumps(_kde(at), sort_keys=True)
    at.sidebar.slider(key="m_alpha").set_value(0.1).run()
    assert not at.exception
    after_alpha = json.dumps(_kde(at), sort_keys=True)
    assert after_alpha != before
    at.sidebar.slider(key="m_beta").set_value(8.0).run()
    assert not at.exception and json.dumps(_kde(at), sort_keys=True) != after_alpha
    at.sidebar.radio(key="m_method").set_value("ensemble").run()
    assert not at.exception and not at.error


def test_undefined_operators_and_missing_classifiers_are_explained(mol_env):
    at = _page(m_op="labels", m_labels="1,5")
    assert any("label 5 refers to model 5" in e.value for e in at.error)
    at = _page(m_bases=["seh", "sa", "qed"], m_op="hm")
    assert any("defined for two models" in e.value for e in at.error)
    at = _page(m_bases=["sa", "seh"], m_method="classifier")  # no classifier for this order
    assert any("no classifier is shipped for sa + seh" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_missing_seh_weights_are_reported_not_raised(mol_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SCULPT_SEH_WEIGHTS", str(tmp_path / "absent.pkl.gz"))
    at = _page(m_bases=["sa", "qed"])
    assert any("sEH reward is off" in w.value for w in at.warning)
    assert "high seh (≥ 0.5)" in _metrics(at) and _metrics(at)["high seh (≥ 0.5)"] == "n/a"


def test_shipped_classifier_guides_the_pair(mol_env):
    from sculpt_core.domains.molecules.zoo import find_mol_classifier

    if find_mol_classifier(["seh", "sa"]) is None:
        pytest.skip("no (seh, sa) classifier shipped")
    at = _page(m_method="classifier", m_alpha=0.3)
    assert any("Classifier: shipped" in c.value for c in at.caption)
    assert _metrics(at)["molecules / s"]
    fast_view = json.dumps(_kde(at), sort_keys=True)
    at.sidebar.radio(key="m_scoring").set_value("topk").run()
    assert not at.exception and json.dumps(_kde(at), sort_keys=True) != fast_view
    at = _page(m_method="classifier", m_beta=40.0)
    assert any("trained on the bases at β = 32" in i.value for i in at.info)


def _axis_titles(at: AppTest) -> tuple[str, str]:
    layout = _kde(at)["layout"]
    titles = [layout[k]["title"] for k in ("xaxis", "yaxis")]
    return tuple(t["text"] if isinstance(t, dict) else t for t in titles)


def _assert_selectors_name_the_plot(at: AppTest) -> tuple[str, str]:
    """Each axis selector's value, and the value the browser is sent for it, is the plotted axis title."""
    titles = _axis_titles(at)
    for key, title in zip(("m_x", "m_y"), titles):
        box = at.selectbox(key=key)
        assert M.REWARD_LABELS[box.value] == title, (key, box.value, title)
        assert box.proto.set_value and box.proto.raw_value == title, (key, box.proto.raw_value, title)
    return at.selectbox(key="m_x").value, at.selectbox(key="m_y").value


def test_kde_axis_selectors_always_name_what_is_plotted(mol_env):
    at = _page()
    assert _assert_selectors_name_the_plot(at) == ("seh", "sa")
    at.sidebar.multiselect(key="m_bases").set_value(["qed", "sa"]).run()
    assert not at.exception and _assert_selectors_name_the_plot(at) == ("qed", "sa")  # the axes follow the bases
    at.sidebar.selectbox(key="m_op").set_value("contrast").run()
    assert not at.exception and _assert_selectors_name_the_plot(at) == ("qed", "sa")
    at.sidebar.multiselect(key="m_bases").set_value(["seh", "sa", "qed"]).run()  # contrast of 3: no plot
    assert not at.exception and not at.get("plotly_chart") and at.error
    at.sidebar.selectbox(key="m_op").set_value("chained_hm").run()
    assert not at.exception and _assert_selectors_name_the_plot(at) == ("seh", "sa")
    at.selectbox(key="m_x").set_value("qed").run()  # the user's pick stays through a run that stops early
    assert not at.exception and _assert_selectors_name_the_plot(at) == ("qed", "sa")
    at.sidebar.selectbox(key="m_op").set_value("hm").run()
    assert not at.exception and not at.get("plotly_chart")
    at.sidebar.selectbox(key="m_op").set_value("chained_hm").run()
    assert not at.exception and _assert_selectors_name_the_plot(at) == ("qed", "sa")
    at.selectbox(key="m_x").set_value("sa").run()  # x takes y's reward: y moves, the plot follows both
    assert not at.exception and _assert_selectors_name_the_plot(at) == ("sa", "seh")


BEST = "best in the composition's objectives (smallest reward / threshold ratio)"


def test_best_samples_rank_on_the_rewards_the_composition_targets(mol_env):
    from sculpt_core.domains.molecules.seh_proxy import seh_available

    at = _page(m_order=BEST)
    ranked = [c.value for c in at.caption if c.value.startswith("Ranked on")]
    assert len(ranked) == 1 and "QED" not in ranked[0] and "SA ((10−SA)/9)" in ranked[0]
    assert ("sEH (proxy/8)" in ranked[0]) == seh_available()
    at = _page(m_order=BEST, m_bases=["qed", "sa"], m_op="labels", m_labels="1,1")
    ranked = [c.value for c in at.caption if c.value.startswith("Ranked on")]
    assert len(ranked) == 1 and ranked[0].startswith("Ranked on QED:")
    at.radio(key="m_order").set_value("first sampled").run()
    assert not at.exception and not [c for c in at.caption if c.value.startswith("Ranked on")]


def test_targeted_rewards_and_their_ranking():
    bases = ["seh", "sa", "qed"]
    assert M.targeted_rewards(A.harmonic_mean(), bases[:2]) == ["seh", "sa"]
    assert M.targeted_rewards(A.contrast(), bases[:2]) == ["seh"]
    assert M.targeted_rewards(A.mixture((0.0, 1.0, 2.0)), bases) == ["sa", "qed"]
    assert M.targeted_rewards(A.linear((1.0, 0.0, 0.0)), bases) == ["seh"]
    assert M.targeted_rewards(A.chained_harmonic_mean(3), bases) == bases
    rewards = np.array([[0.6, 0.7, 0.1], [0.2, 0.9, 0.3], [0.9, 0.1, 0.5], [0.7, 0.8, 0.4]])
    s = MolSamples(["CCO", "CCN", "CCC", "CCO"], rewards, 2.0, 0.1, 1)
    assert s.gallery_order(best=True, rewards=["seh", "sa"]) == [3, 0, 1, 2]
    assert s.gallery_order(best=True, rewards=["seh"]) == [2, 3, 0, 1]
    assert s.gallery_order(best=True, rewards=["sa", "qed"]) == [3, 1, 0, 2]


def test_classifier_for_a_chained_harmonic_mean_is_a_neutral_note(mol_env):
    at = _page(m_bases=["seh", "sa", "qed"], m_op="chained_hm", m_method="classifier")
    assert not at.error
    notes = [i.value for i in at.info if "does not apply to the chained harmonic mean" in i.value]
    assert len(notes) == 1 and "reaching mixing" in notes[0] and "custom labels" in notes[0]
    at.sidebar.radio(key="m_method").set_value("reaching").run()
    assert not at.exception and not at.error and at.get("plotly_chart")


# ----- the URL holds the view -------------------------------------------------------------------------------------
def test_query_params_restore_the_molecule_view(mol_env):
    query = {"bases": "sa,qed", "op": "contrast", "alpha": "0.3", "beta": "16", "method": "ensemble", "n": "32",
             "seed": "3"}
    at = _page(query)
    assert not [w.value for w in at.warning if "URL parameter" in w.value]
    assert at.multiselect(key="m_bases").value == ["sa", "qed"]
    assert at.selectbox(key="m_op").value == "contrast"
    assert at.slider(key="m_alpha").value == pytest.approx(0.3)
    assert at.slider(key="m_beta").value == pytest.approx(16.0)
    assert at.radio(key="m_method").value == "ensemble"
    assert at.select_slider(key="m_n").value == 32 and at.number_input(key="m_seed").value == 3
    assert any("p1 ◑ p2" in md.value for md in at.markdown) and at.get("plotly_chart")
    assert dict(at.query_params) == query  # the restored view writes the same link
    at = _page({"bases": "seh,sa", "op": "labels", "labels": "1,1,2", "method": "reaching", "u": "flow", "n": "32"})
    assert at.text_input(key="m_labels").value == "1,1,2" and at.radio(key="m_u").value == "flow"


def test_the_url_follows_the_controls(mol_env):
    at = _page()
    assert at.query_params["bases"] == "seh,sa" and at.query_params["op"] == "hm"
    at.sidebar.slider(key="m_alpha").set_value(0.2).run()
    assert not at.exception and at.query_params["alpha"] == "0.2"
    at.sidebar.radio(key="m_method").set_value("ensemble").run()
    assert not at.exception and at.query_params["method"] == "ensemble" and "u" not in at.query_params
    at.sidebar.selectbox(key="m_op").set_value("mixture").run()
    assert not at.exception and at.query_params["weights"] == "1,1" and "labels" not in at.query_params


def test_the_url_keeps_the_kde_axes_and_the_gallery_order(mol_env):
    at = _page({"bases": "sa,qed", "op": "hm", "n": "32"})
    assert not {"x", "y", "order"} & set(at.query_params)  # the defaults stay out of the link
    at.selectbox(key="m_x").set_value("seh").run()
    at.radio(key="m_order").set_value(M.GALLERY_ORDERS["best"]).run()
    assert not at.exception
    link = dict(at.query_params)
    assert link["x"] == "seh" and link["y"] == at.selectbox(key="m_y").value and link["order"] == "best"
    again = _page(link)  # the copied link restores the same figures' choices, and writes the same link
    assert (again.selectbox(key="m_x").value, again.selectbox(key="m_y").value) == (link["x"], link["y"])
    assert again.radio(key="m_order").value == M.GALLERY_ORDERS["best"] and dict(again.query_params) == link
    bad = _page({"bases": "sa,qed", "n": "32", "x": "logp", "order": "random"})
    warnings = [w.value for w in bad.warning if "URL parameter" in w.value]
    assert len(warnings) == 2 and not {"x", "order"} & set(bad.query_params)


def test_bad_query_params_warn_once_each_and_use_defaults(mol_env):
    bad = {"bases": "nope,sa", "op": "xor", "alpha": "7", "beta": "abc", "method": "magic", "u": "psychic",
           "scoring": "slow", "n": "33", "seed": "-1"}
    at = _page(bad)
    warnings = [w.value for w in at.warning if "URL parameter" in w.value]
    for key in bad:
        assert sum(w.startswith(f"URL parameter {key}=") for w in warnings) == 1, (key, warnings)
    assert len(warnings) == len(bad)
    assert at.multiselect(key="m_bases").value == ["seh", "sa"] and at.selectbox(key="m_op").value == "hm"
    assert at.slider(key="m_alpha").value == pytest.approx(0.5) and at.radio(key="m_method").value == "reaching"
    assert at.get("plotly_chart") and not at.error
    at = _page({"beta": "500", "n": "32"})
    assert sum("URL parameter beta=500 is outside" in w.value for w in at.warning) == 1
    assert at.slider(key="m_beta").value == pytest.approx(beta_window([M.load_mol("seh"), M.load_mol("sa")])[1])


def test_parse_query_round_trips_and_never_raises():
    zoo = ["qed", "sa", "seh"]
    state = M.MolPageState(["sa", "qed", "seh"], "labels", 0.3, 16.0, "1,1,3", "", "classifier", "flow", "topk",
                           128, 7)
    back, warnings = M.parse_query(state.to_query(), zoo)
    assert not warnings and back.to_query() == state.to_query()
    for raw in ("", "nan", "inf", "1e400", "¹", "١٢", "0x10", "<script>", "a" * 500, ["1", "x"], []):
        got, _ = M.parse_query({k: raw for k in M.URL_KEYS}, zoo)
        assert got.op in M.OPERATORS and got.n in M.N_CHOICES and 0 <= got.seed <= M.SEED_MAX
        assert 0 <= got.beta <= 1000 and 1 <= len(got.bases) <= 3


# ----- pure helpers and figures -------------------------------------------------------------------------------------
def test_kde_density_is_a_density_and_refuses_degenerate_sets():
    rng = np.random.default_rng(0)
    pts = rng.normal([0.5, 0.5], 0.1, size=(400, 2))
    xs, ys, dens = V.kde_density(pts, (-0.5, 1.5), (-0.5, 1.5), n=80)
    mass = dens.sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert dens.shape == (80, 80) and abs(mass - 1.0) < 0.02
    iy, ix = np.unravel_index(dens.argmax(), dens.shape)
    assert abs(xs[ix] - 0.5) < 0.05 and abs(ys[iy] - 0.5) < 0.05
    assert V.kde_density(np.ones((50, 2)), (0, 1), (0, 1)) is None  # singular covariance
    assert V.kde_density(pts[:3], (0, 1), (0, 1)) is None


def test_table1_figure_and_codes():
    assert V.table1_codes() == ["000", "001", "010", "011", "100", "101", "110", "111"]
    fig = V.table1_figure([("ours", [0, 1, 2, 3, 4, 5, 6, 79])], paper_key="d")
    assert [t.name for t in fig.data] == ["ours", "paper row d"]
    assert list(fig.data[1].y) == [0, 7, 2, 11, 2, 19, 10, 49]


def test_gallery_png_and_sample_set_helpers():
    png = V.molecule_gallery_png(["CCO", "not a smiles", "c1ccccc1"], ["a", "b", "c"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        V.molecule_gallery_png(["CCO"], ["a", "b"])
    rewards = np.array([[0.6, 0.7, 0.1], [0.2, 0.9, 0.3], [0.9, 0.1, 0.5], [0.7, 0.8, 0.4]])
    s = MolSamples(["CCO", "CCN", "CCC", "CCO"], rewards, 2.0, 0.1, 1)
    assert s.high_fractions() == {"seh": 0.75, "sa": 0.75, "qed": 0.75}
    assert s.table1_percent() == [0, 0, 0, 25, 0, 25, 25, 25] and s.molecules_per_s == 2.0
    assert s.uniqueness() == 0.75
    assert s.csv().splitlines()[1] == "CCO,0.6,0.7,0.1"
    no_seh = MolSamples(["CCO"], np.array([[np.nan, 0.7, 0.1]]), 1.0, 0.0, 0)
    assert no_seh.high_fractions()["seh"] is None and no_seh.table1_percent() is None
    assert no_seh.csv().splitlines()[1] == "CCO,,0.7,0.1"


def test_gallery_order_and_legends():
    rewards = np.array([[0.6, 0.7, 0.1], [0.2, 0.9, 0.3], [0.9, 0.1, 0.5], [0.7, 0.8, 0.4]])
    s = MolSamples(["CCO", "CCN", "CCC", "CCO"], rewards, 2.0, 0.1, 1)
    assert s.gallery_order() == [0, 1, 2, 3]
    assert s.gallery_order(best=True) == [3, 0, 1, 2]  # smallest reward / threshold ratio, highest first
    assert s.legend(0) == "seh 0.60 sa 0.70 qed 0.10"
    no_seh = MolSamples(["CCO"], np.array([[np.nan, 0.7, 0.1]]), 1.0, 0.0, 0)
    assert no_seh.legend(0) == "sa 0.70 qed 0.10" and no_seh.gallery_order(best=True) == [0]


def test_beta_window_and_default_bases():
    class Fake:
        def __init__(self, name, lo, hi):
            self.name, self.beta_range = name, (lo, hi)

    assert beta_window([Fake("a", 0, 96), Fake("b", 10, 64)]) == (10.0, 64.0)
    with pytest.raises(SculptError, match="do not overlap"):
        beta_window([Fake("a", 0, 5), Fake("b", 10, 64)])
    assert default_mol_bases(["qed", "sa", "seh"]) == ["seh", "sa"]
    assert default_mol_bases(["x", "y", "z"]) == ["x", "y"]


# ----- issue 17: figures and extras beside the samples ---------------------------------------------------------
def _arr(values) -> np.ndarray:
    """An array from a figure spec (plotly sends numeric arrays as base64 typed arrays)."""
    if isinstance(values, dict):
        import base64

        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray(values, dtype=float)


def _chart(at: AppTest, key: str) -> dict:
    """The spec of the chart whose element id names ``key``."""
    for chart in at.get("plotly_chart"):
        if chart.proto.id.endswith(key):
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no chart {key}")


def test_kde_axes_range_to_the_data(mol_env):
    from sculpt_core.app.mol_figures import PAD

    at = _page(m_bases=["sa", "qed"])
    spec = _kde(at)
    pts = [t for t in spec["data"] if t["type"] == "scatter"][0]
    for axis, key in (("xaxis", "x"), ("yaxis", "y")):
        lo, hi = spec["layout"][axis]["range"]
        values = _arr(pts[key])
        assert lo <= values.min() and values.max() <= hi
        assert hi - lo < 1.0  # not the fixed [0, 1] of before: these rewards span less
        contours = [t for t in spec["data"] if t["type"] == "contour"]
        assert contours and all(_arr(c[key]).min() >= lo - 1e-9 and _arr(c[key]).max() <= hi + 1e-9
                            for c in contours)
    assert spec["layout"]["xaxis"]["tickformat"] == ".2f"
    assert PAD < 0.2


def test_data_range_and_kde_threshold_notes():
    from sculpt_core.app import mol_figures as MF

    assert MF.data_range(np.array([0.6, 0.8])) == pytest.approx((0.6 - 0.016, 0.8 + 0.016))
    lo, hi = MF.data_range(np.array([0.5, 0.5, np.nan]))
    assert lo < 0.5 < hi and hi - lo >= MF.MIN_SPAN
    assert MF.data_range(np.array([np.nan])) == (0.0, 1.0)
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(0.7, 0.9, 40), rng.uniform(0.6, 0.8, 40)])
    fig = MF.reward_kde_figure({"c": pts}, "SA", "QED", composed="c", thresholds=(0.6, 0.25), title="t")
    notes = [a.text for a in fig.layout.annotations]
    assert any("SA threshold 0.6 ←" in n and "QED threshold 0.25 ↓" in n for n in notes)  # both outside the data
    assert fig.layout.title.text == "t"


def test_diversity_and_uniqueness_beside_the_samples(mol_env):
    at = _page()
    spec = _chart(at, "fig_diversity")
    unique, diverse = spec["data"]
    assert list(unique["y"]) == ["p1 ⊗ p2 (α=0.5)", "p1 = seh", "p2 = sa"] == list(diverse["y"])
    assert all(0 <= x <= 100 for x in _arr(unique["x"])) and all(0 <= x <= 1 for x in _arr(diverse["x"]))
    value = _metrics(at)["diversity"]
    assert float(value) == pytest.approx(_arr(diverse["x"])[0], abs=0.006)


def test_cached_diversity_reuses_the_domain_metrics():
    from sculpt_core.domains.molecules.metrics import diversity, uniqueness

    smiles = ("CCO", "CCN", "c1ccccc1", "CCO")
    uniq, div = M.cached_diversity(smiles)
    assert uniq == pytest.approx(uniqueness(list(smiles))) and div == pytest.approx(diversity(list(smiles)))
    assert M.cached_diversity(("CCO",))[1] is None


def test_molecule_csv_carries_the_parameters_as_columns_and_in_the_file_name(mol_env, downloads):
    at = _page({"op": "contrast", "alpha": "0.3", "bases": "sa,qed"})
    call = [c for c in downloads if c["label"] == "Samples (CSV)"][-1]
    for part in ("sculpt_mol", "sa+qed", "contrast", "y1-1", "a0.3", "b32", "reaching", "n32", "seed0"):
        assert part in call["file_name"], (part, call["file_name"])
    import csv as _csv
    import io as _io

    rows = list(_csv.DictReader(_io.StringIO(call["data"])))
    assert len(rows) >= 1
    head = rows[0]
    assert head["method"] == "reaching" and head["alpha"] == "0.3" and head["beta"] == "32"
    assert head["labels"] == "1 1" and head["bases"] == "sa+qed" and head["smiles"]
    assert {"seh_reward", "sa_reward", "qed"} <= set(head)
    config = json.loads(at.get("plotly_chart")[0].proto.config)["toImageButtonOptions"]
    assert config["filename"].startswith(call["file_name"][:-4]) and config["format"] == "png"
    assert "α = 0.3" in _kde(at)["layout"]["title"]["text"]
    for chart in at.get("plotly_chart"):  # every figure's camera button saves a PNG named after the view
        name = json.loads(chart.proto.config)["toImageButtonOptions"]["filename"]
        assert name.startswith(call["file_name"][:-4]), name
    from sculpt_core.domains.molecules.seh_proxy import seh_available

    table1 = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("fig_table1")]
    assert len(table1) == (1 if seh_available() else 0)  # drawn with the sEH weights, titled with the view
    assert all("α = 0.3" in t["layout"]["title"]["text"] for t in table1)
    meta = {"method": "m", "alpha": "0.5"}
    s = MolSamples(["CCO"], np.array([[np.nan, 0.7, 0.1]]), 1.0, 0.0, 0)
    assert s.csv(meta).splitlines() == ["method,alpha,smiles,seh_reward,sa_reward,qed", "m,0.5,CCO,,0.7,0.1"]


def test_missing_seh_weights_say_what_works_and_how_to_fix_it(mol_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SCULPT_SEH_WEIGHTS", str(tmp_path / "absent.pkl.gz"))
    at = _page()  # no bases in the URL or the session: the defaults avoid sEH
    assert at.multiselect(key="m_bases").value == ["sa", "qed"]
    message = next(w.value for w in at.warning if "sEH reward is off" in w.value)
    for part in ("Still works", "SA and QED", "SCULPT_SEH_WEIGHTS=", "download_seh_weights"):
        assert part in message
    assert any("absent.pkl.gz" in c.value for c in at.get("code"))  # the exact reason, in the details
    assert any("not available without the sEH reward" in md.value for md in at.markdown)  # the placeholder
    assert not any(c.proto.id.endswith("fig_table1") for c in at.get("plotly_chart"))
    assert at.selectbox(key="m_x").options == [M.REWARD_LABELS["sa"], M.REWARD_LABELS["qed"]]
    at = _page(m_bases=["seh", "sa"])  # still allowed: the sEH model samples, scored on SA and QED
    assert not at.exception and _metrics(at)["high seh (≥ 0.5)"] == "n/a"
    assert default_mol_bases(["qed", "sa", "seh"], seh_ok=False) == ["sa", "qed"]
    assert default_mol_bases(["seh", "x"], seh_ok=False) == ["seh", "x"]  # nothing else to choose


def test_rewards_are_scored_once_per_molecule(monkeypatch):
    """The page's reward cache: a molecule scored before is read back (neighbouring views share most of theirs),
    new ones are scored in one call, and every row equals a fresh scoring of that molecule."""
    from sculpt_core.domains.molecules import rewards as R

    calls: list[list[str]] = []
    real = R.score_smiles

    def counting(smiles, **kwargs):
        calls.append(list(smiles))
        return real(smiles, **kwargs)

    monkeypatch.setattr(M, "_REWARDS", M.LRU(100))
    monkeypatch.setattr(R, "score_smiles", counting)
    first, _ = M.score_rewards(["CCO", "c1ccccc1O", "CC(=O)N"])
    again, _ = M.score_rewards(["CC(=O)N", "CCO", "CCCl"])
    assert calls == [["CCO", "c1ccccc1O", "CC(=O)N"], ["CCCl"]]
    np.testing.assert_array_equal(again[:2], first[[2, 0]])
    fresh = np.array([[r["seh_reward"], r["sa_reward"], r["qed"]] for r in real(["CC(=O)N", "CCO", "CCCl"])])
    # the sEH proxy's float32 sums depend on the batch a molecule is scored in (measured: 1e-8)
    np.testing.assert_allclose(again, fresh, rtol=0, atol=1e-6, equal_nan=True)


def test_gallery_cells_are_drawn_once_and_laid_out_in_rows():
    from PIL import Image
    import io

    V.molecule_tile.cache_clear()
    smiles = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCl"]
    png = V.molecule_gallery_png(smiles, list("abcde"), per_row=4, size=(100, 80))
    assert Image.open(io.BytesIO(png)).size == (400, 160)  # 4 per row, 2 rows
    assert V.molecule_tile.cache_info().misses == 5
    again = V.molecule_gallery_png(smiles[1:] + ["CCBr"], list("bcdef"), per_row=4, size=(100, 80))
    assert V.molecule_tile.cache_info().misses == 6  # only the new molecule is drawn
    img = Image.open(io.BytesIO(again)).convert("RGB")
    cell = img.crop((0, 0, 100, 80))  # the first cell is c1ccccc1 with legend b, as drawn before
    tile = Image.open(io.BytesIO(V.molecule_tile("c1ccccc1", "b", 100, 80))).convert("RGB")
    assert list(cell.getdata()) == list(tile.getdata())


def test_kde_figure_payload_thresholds_and_one_template():
    """The KDE figure in one go: float32 contour grids, thresholds as dashed lines inside the axes (named at the
    edge when outside), the light white template (the layout part of plotly_white)."""
    rng = np.random.default_rng(0)
    sets = {"base": rng.uniform(0.2, 0.8, (64, 2)), "comp": rng.uniform(0.3, 0.9, (16, 2))}
    fig = V.reward_kde_figure(sets, "sEH", "SA", composed="comp", thresholds=(0.5, 0.6), title="t")
    contours = [t for t in fig.data if t.type == "contour"]
    assert len(contours) == 2 and all(np.asarray(t.z).dtype == np.float32 for t in contours)
    assert np.asarray(contours[0].z).shape == (V.KDE_GRID, V.KDE_GRID)
    lines = [(s.x0, s.y0, s.xref, s.yref) for s in fig.layout.shapes]
    assert lines == [(0.5, 0, "x", "paper"), (0, 0.6, "paper", "y")]
    assert fig.layout.template.layout.plot_bgcolor == "white" and not fig.layout.template.data.contour
    outside = V.reward_kde_figure(sets, "sEH", "SA", composed="comp", thresholds=(0.05, 0.99))
    assert not outside.layout.shapes and "threshold 0.05 ←" in outside.layout.annotations[0].text


@pytest.mark.parametrize("query, widget, key, value, url", [
    ({"op": "labels", "labels": "1,2"}, "text_input", "m_labels", "1,1", ("labels", "1,1")),
    ({"method": "reaching", "u": "trajectory"}, "radio", "m_u", "flow", ("u", "flow")),
    ({}, "select_slider", "m_n", 64, ("n", "64")),
    ({}, "number_input", "m_seed", 5, ("seed", "5")),
])
def test_every_molecule_control_resamples_and_writes_the_link(mol_env, query, widget, key, value, url):
    """Each sampling control changes the molecules drawn and the link (AppTest for every control)."""
    at = _page({"bases": "sa,qed", "n": "32", **query})
    before = _kde(at)["data"]
    getattr(at, widget)(key=key).set_value(value).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.query_params[url[0]] == url[1]
    assert _kde(at)["data"] != before  # other molecules, so other contours and points


def test_the_y_axis_control_moves_the_plot(mol_env):
    at = _page({"bases": "sa,qed", "n": "32"})
    assert at.selectbox(key="m_y").value == "qed"
    at.selectbox(key="m_y").set_value("seh").run()
    assert not at.exception and at.selectbox(key="m_y").value == "seh"
    assert "sEH" in _kde(at)["layout"]["yaxis"]["title"]["text"] and at.query_params["y"] == "seh"
