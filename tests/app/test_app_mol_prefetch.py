"""The Molecule Sculpting page's background prefetch: the neighbouring α and β views land in the cache the page
reads, the worker is bounded, and a changed view drops the old view's pending jobs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("rdkit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sculpt_core.app import molecules as M  # noqa: E402
from sculpt_core.app.mol_prefetch import Prefetcher, neighbour_values, prefetcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_neighbour_values_stay_in_range_nearest_first():
    assert neighbour_values(0.5, 0.01, 0.0, 1.0, ahead=2) == [0.51, 0.49, 0.52, 0.48]
    assert neighbour_values(1.0, 0.01, 0.0, 1.0) == [0.99]
    assert neighbour_values(32.0, 1.0, 0.0, 96.0) == [33.0, 31.0]


def test_a_new_view_drops_the_old_views_pending_jobs():
    worker = Prefetcher(max_pending=3)
    gate, ran = threading.Event(), []

    def blocked() -> None:
        gate.wait(10)
        ran.append("first")

    worker.schedule("view 1", [blocked, lambda: ran.append("stale 1"), lambda: ran.append("stale 2")])
    worker.schedule("view 1", [lambda: ran.append("never")])  # the same view: nothing new
    for _ in range(200):  # the first job has started
        if worker.pending() == 2:
            break
        threading.Event().wait(0.01)
    worker.schedule("view 2", [lambda k=k: ran.append(k) for k in ("a", "b", "c", "d", "e")])
    assert worker.pending() == 3  # bounded
    gate.set()
    assert worker.wait_idle(10)
    assert ran == ["first", "a", "b", "c"]  # the stale jobs never ran, the new view kept its first three
    worker.schedule("view 3", [lambda: ran.append("x")])
    worker.cancel()
    assert worker.wait_idle(10) and worker.pending() == 0


def test_the_next_alpha_step_is_a_cache_hit_after_prefetch(monkeypatch):
    from sculpt_core.domains.molecules.zoo import mol_model_names

    if not {"seh", "sa", "qed"} <= set(mol_model_names()):
        pytest.skip("the shipped molecule models are missing from assets/")
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    monkeypatch.setenv("SCULPT_PREFETCH", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["m_n"] = 32
    at.session_state["m_seed"] = 7  # a seed no other test uses, so nothing is cached before
    at.switch_page("pages/molecule_sculpting.py").run()
    assert not at.exception
    assert prefetcher().wait_idle(240)
    calls = []
    real = M.draw_samples

    def counted(*a, **k):
        if threading.current_thread().name != "sculpt-mol-prefetch":  # the page's own sampling, not the next prefetch
            calls.append((a[1], str(a[2])))
        return real(*a, **k)

    monkeypatch.setattr(M, "draw_samples", counted)
    at.sidebar.slider(key="m_alpha").set_value(0.51).run()  # one arrow-key step
    assert not at.exception and calls == []
    at.sidebar.slider(key="m_alpha").set_value(0.7).run()  # a jump: not prefetched, sampled now
    assert not at.exception and calls
    prefetcher().cancel()
    assert prefetcher().wait_idle(240)
