"""AppTest coverage for the controls no other app test drives (issue 17): each one is set to a value other than its
default, the page reruns, and something the user sees (the URL, a caption, a figure, a result) follows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _open(page: str, query: dict | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if query:
        at.query_params.update(query)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(f"pages/{page}.py").run()
    _ok(at)
    return at


def _spec(at: AppTest, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if getattr(c, "key", None) == key).proto.spec)


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----- grid page: the training form ----------------------------------------------------------------------------
def test_grid_training_temperature_changes_the_preview(app_env):
    at = _open("grid_sculpting")
    before = _spec(at, "fig_train_preview")
    assert "T = 1" in json.dumps(before)
    at.number_input(key="tb_T").set_value(2.0).run()
    _ok(at)
    after = _spec(at, "fig_train_preview")
    assert "T = 2" in json.dumps(after) and after["data"] != before["data"]


def test_grid_training_steps_change_the_estimate(app_env, monkeypatch):
    monkeypatch.delenv("SCULPT_FAST_TRAINING", raising=False)  # it caps every training at a few steps; none runs here
    at = _open("grid_sculpting")

    def estimate() -> str:
        return next(c.value for c in at.caption if c.value.startswith("Estimated training time"))

    before = estimate()
    at.number_input(key="tb_steps").set_value(1200).run()
    _ok(at)
    assert estimate() != before and "1200 steps" in estimate()


def test_grid_classifier_steps_are_used_for_training(tiny_zoo_contents, app_env, monkeypatch):
    from sculpt_core.app import grid as G

    seen: list[int] = []
    original = G.classifier_train_config

    def spy(m, steps, *a, **k):
        seen.append(int(steps))
        return original(m, steps, *a, **k)

    monkeypatch.setattr(G, "classifier_train_config", spy)
    at = _open("grid_sculpting", {"bases": "circle1,circle2", "method": "classifier"})
    at.number_input(key="clf_steps").set_value(20)
    at.button(key="train_clf").click().run()
    _ok(at)
    assert not _errors(at) and seen and seen[-1] == 20


# ----- diffusion page ------------------------------------------------------------------------------------------
D_SMALL = {"n": "200", "steps": "20"}


def test_diffusion_prior_goes_to_the_url_and_changes_the_samples(app_env, one_thread):
    at = _open("diffusion_sculpting", D_SMALL)
    assert "prior" not in at.query_params
    before = _spec(at, "fig_samples")
    at.sidebar.radio(key="d_prior").set_value("exact").run()
    _ok(at)
    assert at.query_params["prior"] == "exact" and not at.error
    assert _spec(at, "fig_samples")["data"] != before["data"]


def test_diffusion_add_the_table_mixture(app_env, one_thread):
    at = _open("diffusion_sculpting", D_SMALL)
    assert at.multiselect(key="d_bases").value == ["spec:ring", "spec:band"]
    at.text_input(key="d_spec_name").set_value("tab")
    at.button(key="d_add_table").click().run()
    _ok(at)
    assert not _errors(at)
    assert "user:tab" in at.multiselect(key="d_bases").value
    assert "tab" in at.query_params["bases"]


def test_diffusion_add_the_table_mixture_refuses_a_bad_name(app_env, one_thread):
    at = _open("diffusion_sculpting", D_SMALL)
    at.text_input(key="d_spec_name").set_value("bad name!")
    at.button(key="d_add_table").click().run()
    _ok(at)
    assert any("Cannot add this spec" in e for e in _errors(at))
    assert at.multiselect(key="d_bases").value == ["spec:ring", "spec:band"]


def test_diffusion_training_steps_and_seed_reach_the_trained_model(app_env, one_thread, monkeypatch):
    from sculpt_core.app import diffusion as D

    calls: list[tuple[int, int]] = []
    original = D.train_score_model

    def spy(spec, steps, seed, name, progress):
        calls.append((int(steps), int(seed)))
        return original(spec, steps, seed, name, progress)

    monkeypatch.setattr(D, "train_score_model", spy)
    at = _open("diffusion_sculpting", D_SMALL)
    at.number_input(key="d_train_steps").set_value(30)
    at.number_input(key="d_train_seed").set_value(3)
    at.text_input(key="d_train_name").input("quick")
    at.form_submit_button[0].click().run()
    _ok(at)
    assert not _errors(at) and calls == [(30, 3)]
    assert any("Trained quick" in s.value for s in at.success)


def test_diffusion_classifier_steps_are_used_for_training(app_env, one_thread, monkeypatch):
    from sculpt_core.app import diffusion as D

    if "classifier" not in D.methods():
        pytest.skip("the diffusion domain offers no classifier method yet")
    seen: list[int] = []
    original = D.train_classifier_here

    def spy(bases, comp, steps, progress):
        seen.append(int(steps))
        return original(bases, comp, steps, progress)

    monkeypatch.setattr(D, "train_classifier_here", spy)
    at = _open("diffusion_sculpting", {**D_SMALL, "method": "classifier"})
    at.number_input(key="d_clf_steps").set_value(40)
    at.button(key="d_train_clf").click().run()
    _ok(at)
    assert not _errors(at) and seen == [40]
    assert "binned L1" in {m.label for m in at.metric}


# ----- diffusion images page -----------------------------------------------------------------------------------
@pytest.fixture
def images_env(tiny_image_zoo, monkeypatch):
    if tiny_image_zoo is not None:
        monkeypatch.setenv("SCULPT_ASSETS", str(tiny_image_zoo))
    return tiny_image_zoo


def test_images_grid_size_and_steps_go_to_the_url(images_env, one_thread):
    at = _open("diffusion_images", {"n": "4", "steps": "3"})
    assert at.query_params["n"] == "4" and at.query_params["steps"] == "3"
    at.sidebar.number_input(key="di_n").set_value(2).run()
    _ok(at)
    assert at.query_params["n"] == "2"
    at.sidebar.number_input(key="di_steps").set_value(2).run()
    _ok(at)
    assert at.query_params["steps"] == "2" and not at.error


# ----- distribution map page -----------------------------------------------------------------------------------
def test_map_perplexity_changes_the_tsne_map(app_env):
    from sculpt_core.domains.molecules.maps import fig4_path

    if not fig4_path().is_file():
        pytest.skip("assets/maps/mol_fig4.json is not built")
    at = _open("distribution_map")  # t-SNE is the default embedding
    assert not at.sidebar.slider(key="dm_perp").disabled and "perplexity" not in at.query_params
    before = _spec(at, "dm_map")["data"]
    at.sidebar.slider(key="dm_perp").set_value(3.0).run()
    _ok(at)
    assert at.query_params["perplexity"] == "3" and not at.error
    assert _spec(at, "dm_map")["data"] != before
    at.sidebar.radio(key="dm_embed").set_value("mds").run()
    _ok(at)
    assert at.sidebar.slider(key="dm_perp").disabled  # MDS has no perplexity


def test_map_solver_method_and_sweep_labels_reach_the_result(app_env):
    at = _open("distribution_map", dm_source="build")
    at.text_input(key="dm_labels").set_value("1,2")
    at.selectbox(key="dm_method").set_value("ensemble")
    at.text_input(key="dm_sweep_labels").set_value("1,1")
    at.text_input(key="dm_alphas").set_value("0.3,0.7")
    at.radio(key="dm_solver").set_value("sinkhorn")
    at.button[0].click().run()
    _ok(at)
    assert not _errors(at), _errors(at)
    result = at.session_state["dm_result"]
    assert result.info["solver"] == "sinkhorn"
    sweeps = [s for s in result.specs if s.get("alpha") is not None]
    assert len(sweeps) == 2 and all(list(s["labels"]) == [1, 1] for s in sweeps)
    assert [s["method"] for s in result.specs] == ["base", "base", "ensemble", "ensemble", "ensemble"]


# ----- molecule page -------------------------------------------------------------------------------------------
def test_molecule_weights_go_to_the_url_and_change_the_kde(mol_env):
    from helpers import molecule_page

    at = molecule_page(None, 90)
    at.sidebar.selectbox(key="m_op").set_value("linear").run()
    _ok(at)
    assert at.query_params["weights"] == "1,1"
    before = json.dumps(_spec(at, "fig_kde")["data"], sort_keys=True)
    at.sidebar.text_input(key="m_weights").input("1,3").run()
    _ok(at)
    assert at.query_params["weights"] == "1,3" and not at.error
    assert json.dumps(_spec(at, "fig_kde")["data"], sort_keys=True) != before


def _operator_script() -> None:
    import streamlit as st

    from sculpt_core.app.widgets import operator_controls

    op, ok, alpha = operator_controls(st.sidebar, "t", 2)
    st.write(f"labels={st.session_state.get('t_labels')!r}")


def test_labels_survive_a_run_that_did_not_draw_their_box():
    """Streamlit drops a widget's state after a run that did not draw it (an operator without labels, e.g. in a
    fragment rerun of the grid page that no full run re-seeds): the box comes back with the labels last typed."""
    at = AppTest.from_function(_operator_script, default_timeout=TIMEOUT)
    at.session_state["t_op"] = "labels"
    at.run()
    _ok(at)
    at.sidebar.text_input(key="t_labels").set_value("1,1").run()
    at.sidebar.selectbox(key="t_op").set_value("hm").run()
    _ok(at)
    at.sidebar.selectbox(key="t_op").set_value("labels").run()
    _ok(at)
    assert at.sidebar.text_input(key="t_labels").value == "1,1"
    assert any("labels='1,1'" in m.value for m in at.markdown)
