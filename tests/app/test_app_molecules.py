"""The Molecule Sculpting page (AppTest, on the shipped molecule models in ``assets/``) and its pure helpers.

The shipped checkpoints carry their fragment library, so the page runs without ``../shared/data``; without the
sEH proxy weights it says so and shows SA and QED only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sculpt_core.app.molecules import MolSamples, beta_window, default_mol_bases  # noqa: E402
from sculpt_core.errors import SculptError  # noqa: E402
from sculpt_core.domains.molecules import viz as V  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 90


@pytest.fixture
def mol_env(monkeypatch):
    """The shipped assets (the molecule models live there), not a test zoo."""
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    from sculpt_core.domains.molecules.zoo import mol_model_names

    if not {"seh", "sa", "qed"} <= set(mol_model_names()):
        pytest.skip("the shipped molecule models are missing from assets/")


def _page(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["m_n"] = 32
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page("pages/molecule_sculpting.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


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
        assert metrics["high seh (≥ 0.5)"].endswith("%") and len(at.get("plotly_chart")) == 2
    else:
        assert any("sEH is not shown" in w.value for w in at.warning)


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
    assert any("sEH is not shown" in w.value for w in at.warning)
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
