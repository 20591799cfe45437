"""The Molecule Sculpting page's background prefetch: the neighbouring α and β views land in the cache the page
reads, the worker is bounded, and a changed view drops the old view's pending jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rdkit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sculpt_core.app import molecules as M  # noqa: E402
from sculpt_core.app.prefetch import Prefetcher, neighbour_values, prefetcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mol_env_assets(monkeypatch):
    """The shipped molecule models (assets/), skipped where they are missing."""
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    from sculpt_core.domains.molecules.zoo import mol_model_names

    if not {"seh", "sa"} <= set(mol_model_names()):
        pytest.skip("the shipped molecule models are missing from assets/")


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


def test_a_running_job_learns_its_view_changed_and_a_view_is_extended_once():
    worker, seen, gate = Prefetcher(), [], threading.Event()

    def job():
        seen.append(worker.stale())
        gate.wait(10)
        seen.append(worker.stale())

    worker.schedule("a", [job])
    for _ in range(200):
        if seen:
            break
        time.sleep(0.01)
    worker.extend("a", [lambda: seen.append("n1")])
    worker.extend("a", [lambda: seen.append("n2")])  # once per view
    assert worker.pending() == 1
    worker.schedule("b", [])  # a new view: the running job is stale now, its pending neighbours dropped
    gate.set()
    assert worker.wait_idle(10) and seen == [False, True]
    worker.extend("c", [lambda: seen.append("c")])  # a view not scheduled yet: scheduled
    assert worker.wait_idle(10) and seen[-1] == "c"
    worker.shutdown()


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
    real = M.new_run

    def counted(*a, **k):
        if threading.current_thread().name != "sculpt-mol-prefetch":  # the page's own sampling, not the next prefetch
            calls.append((a[1], str(a[2])))
        return real(*a, **k)

    monkeypatch.setattr(M, "new_run", counted)
    at.sidebar.slider(key="m_alpha").set_value(0.51).run()  # one arrow-key step
    assert not at.exception and calls == []
    at.sidebar.slider(key="m_alpha").set_value(0.7).run()  # a jump: not prefetched, sampled now
    assert not at.exception and calls
    prefetcher().cancel()
    assert prefetcher().wait_idle(240)


def test_after_a_beta_move_the_first_batches_one_beta_step_away_come_first(mol_env_assets):
    """``lead="beta"``: the first jobs draw only the first batch of the composition and of every base set at β ± 1
    (what the staged view draws first), so the next β step is drawn from the store; the full sets come next."""
    from sculpt_core.core.operators import build_composition, composition_key
    from sculpt_core.domains.molecules.zoo import load_mol_model

    models = [load_mol_model("seh"), load_mol_model("sa")]
    fps = tuple(m.fingerprint() for m in models)
    seed, n = 11, M.STAGE_FROM  # a seed no other test uses
    args = (fps, models, 32.0, (0.0, 96.0), "hm", 0.5, "1,2", "", "reaching", "trajectory", n, seed)
    by_alpha, by_beta = M.neighbour_jobs(*args), M.neighbour_jobs(*args, lead="beta")
    assert len(by_beta) == 6 and len(by_alpha) == 5  # β ± 1 first batches, β ± 1 full, α ± 0.01 full
    small = (*args[:10], M.STAGE_FROM - 1, seed)  # a view drawn whole: no first batches
    assert len(M.neighbour_jobs(*small, lead="beta")) == 4
    guided = (*args[:8], "classifier", *args[9:])  # no β neighbours (its classifier is tied to one β): the α order
    assert len(M.neighbour_jobs(*guided, lead="beta")) == len(M.neighbour_jobs(*guided)) == 3
    comp_key = composition_key(build_composition("hm", 2, 0.5, "1,2", ""))
    keys = [M.sample_key(fps, 33.0, comp_key, "reaching", "trajectory", n, seed)]
    keys += [M.sample_key((fp,), 33.0, None, "base", "trajectory", n, seed) for fp in fps]
    prefetcher().schedule(("beta lead", 1), [by_beta[0]])  # β + 1, first batches only
    assert prefetcher().wait_idle(120)
    for key in keys:
        assert M.SAMPLES.get(key) is None and M.SAMPLES.held(key) == M.PAGE_FIRST, key
    prefetcher().schedule(("beta lead", 2), [by_beta[2]])  # β + 1 in full
    assert prefetcher().wait_idle(120)
    assert all(M.SAMPLES.get(key) is not None and len(M.SAMPLES.get(key).smiles) == n for key in keys)


def test_the_slider_moved_last_leads_the_prefetch(mol_env, monkeypatch):
    """Each slider's on_change names it (not a diff of the shown view, which a fast move or a clamped β fools)."""
    monkeypatch.setenv("SCULPT_PREFETCH", "0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["m_n"] = 32
    at.session_state["m_seed"] = 13  # a seed no other test uses
    at.switch_page("pages/molecule_sculpting.py").run()
    assert not at.exception and "m_lead" not in at.session_state
    at.sidebar.slider(key="m_beta").set_value(33.0).run()
    assert not at.exception and at.session_state["m_lead"] == "beta"
    at.sidebar.slider(key="m_alpha").set_value(0.51).run()
    assert not at.exception and at.session_state["m_lead"] == "alpha"


# ----- interpreter exit: the atexit hook stops and joins the worker --------------------------------------------
ABORT = "terminate called without an active exception"

TORCH_JOB = """
import time, torch
from sculpt_core.app.prefetch import prefetcher

def job():  # long torch work that polls the prefetcher, as a sampling job does once per step
    a = torch.randn(300, 300)
    for _ in range(100000):
        a = torch.tanh(a @ a)
        prefetcher().check_open()

prefetcher().schedule("view", [job, job])
time.sleep(0.5)
assert prefetcher().pending() == 1
print("exiting", flush=True)
"""

SAMPLING_JOB = """
import time
from sculpt_core.app import molecules as M
from sculpt_core.app.prefetch import prefetcher
from sculpt_core.domains.molecules.zoo import load_mol_model

models = [load_mol_model("seh"), load_mol_model("sa")]
fps = tuple(m.fingerprint() for m in models)
jobs = M.neighbour_jobs(fps, models, 32.0, (0.0, 96.0), "hm", 0.5, "1,2", "", "reaching", "trajectory", 1000, 5)
prefetcher().schedule("view", jobs)
time.sleep(1.0)
assert prefetcher().completed == 0  # in the middle of the first neighbour's sampling
t0 = time.perf_counter()
stopped = prefetcher().shutdown(10.0)  # what the exit hook does
print(f"exiting stopped={stopped} seconds={time.perf_counter() - t0:.3f}", flush=True)
"""


def _exit_run(code: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SCULPT_PREFETCH": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc, time.perf_counter() - t0


def test_exit_with_a_running_prefetch_job_is_clean():
    """Issue 17: a daemon thread still inside torch at interpreter exit aborted the process with "terminate called
    without an active exception"; the atexit hook drops the pending job, stops the running one and joins."""
    proc, _ = _exit_run(TORCH_JOB)
    assert "exiting" in proc.stdout, proc.stderr
    assert ABORT not in proc.stderr and proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_exit_in_the_middle_of_a_prefetched_sample_set_is_clean_and_quick(mol_env_assets):
    """A prefetched sample set polls the prefetcher at every sampling step, so shutting down stops it within a
    step (1000 molecules would take many seconds)."""
    proc, _ = _exit_run(SAMPLING_JOB)
    assert "exiting stopped=True" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    assert float(proc.stdout.split("seconds=")[1]) < 1.5
    assert ABORT not in proc.stderr and proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_shutdown_drops_pending_jobs_and_refuses_new_ones():
    worker = Prefetcher()
    gate, ran = threading.Event(), []

    def blocked() -> None:
        while not gate.wait(0.01):
            worker.check_open()

    worker.schedule("v", [blocked, lambda: ran.append("pending")])
    for _ in range(200):
        if worker.pending() == 1:
            break
        threading.Event().wait(0.01)
    assert worker.shutdown(timeout=5)  # the running job noticed and the thread ended
    assert worker.pending() == 0 and ran == [] and worker.closed
    worker.schedule("w", [lambda: ran.append("late")])
    assert worker.pending() == 0 and ran == []


def test_the_next_view_in_the_direction_of_the_last_move_comes_first(mol_env_assets):
    """``direction`` puts the step the lead slider last went before the step back; ``first_next`` is the first
    batch of that one next view only (the page runs it before growing the view on screen)."""
    from sculpt_core.core.operators import build_composition, composition_key
    from sculpt_core.domains.molecules.zoo import load_mol_model

    models = [load_mol_model("seh"), load_mol_model("sa")]
    fps = tuple(m.fingerprint() for m in models)
    seed, n = 17, M.STAGE_FROM  # a seed no other test uses
    args = (fps, models, 32.0, (0.0, 96.0), "hm", 0.5, "1,2", "", "reaching", "trajectory", n, seed)
    assert len(M.neighbour_jobs(*args, first_next=True)) == 1
    assert len(M.neighbour_jobs(*args, lead="beta", first_next=True)) == 1  # the composition and its base sets
    assert M.neighbour_jobs(*args[:10], M.STAGE_FROM - 1, seed, first_next=True) == []  # drawn whole: no batch
    key = lambda a: M.sample_key(fps, 32.0, composition_key(build_composition("hm", 2, a, "1,2", "")), "reaching",
                                 "trajectory", n, seed)
    prefetcher().schedule(("direction", -1), M.neighbour_jobs(*args, direction=-1, first_next=True))
    assert prefetcher().wait_idle(120)
    assert M.SAMPLES.held(key(0.49)) == M.PAGE_FIRST and M.SAMPLES.held(key(0.51)) == 0  # α − 0.01 only
    back = M.neighbour_jobs(*args, direction=-1)
    prefetcher().schedule(("direction", -1, "full"), back[:1])
    assert prefetcher().wait_idle(120)
    assert M.SAMPLES.get(key(0.49)) is not None and M.SAMPLES.held(key(0.51)) == 0  # the way it went, in full
