"""Page runs first (``sculpt_core.app.page_gate``): background prefetch work waits while a page script runs and
for a short render grace after it, except while the page itself waits for that background work."""

from __future__ import annotations

import threading
import time

from sculpt_core.app.page_gate import PageGate
from sculpt_core.app.prefetch import Prefetcher


def _paused_for(gate: PageGate, **kwargs) -> float:
    """Seconds a background thread's pause lasts (run in its own thread, as the prefetch worker)."""
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.append(gate.pause(**kwargs)))
    worker.start()
    worker.join(10)
    return out[0]


def test_background_work_waits_for_a_page_run_and_its_render_grace():
    gate = PageGate()
    assert _paused_for(gate, grace_s=0.0) < 0.05  # no page run: no wait

    def page(seconds: float) -> None:
        with gate.page_run():
            time.sleep(seconds)

    runner = threading.Thread(target=page, args=(0.4,))
    runner.start()
    time.sleep(0.05)
    assert gate.busy()
    waited = _paused_for(gate, grace_s=0.2)
    runner.join()
    assert 0.45 <= waited < 1.5  # the rest of the run (~0.35 s), then the 0.2 s grace
    assert not gate.busy()
    time.sleep(0.25)
    assert _paused_for(gate, grace_s=0.2) < 0.05  # the grace is over


def test_a_page_waiting_for_background_work_opens_the_gate():
    """A page run that needs what the prefetch thread computes must not hold that thread (no deadlock)."""
    gate = PageGate()
    done = threading.Event()
    result: dict = {}

    def background() -> None:
        result["waited"] = gate.pause(grace_s=0.0)
        done.set()

    with gate.page_run():
        worker = threading.Thread(target=background)
        with gate.waiting():
            assert not gate.busy()
            worker.start()
            assert done.wait(5), "the background thread stayed paused while the page waited for it"
        assert gate.busy()
    worker.join()
    assert result["waited"] < 1.0


def test_waiting_outside_a_page_run_changes_nothing():
    """A prefetch job waiting for another thread does not count as a waiting page: the gate stays shut for a
    page run meanwhile."""
    gate = PageGate()
    with gate.waiting():  # not in a page run (this thread)
        runner_in = threading.Event()
        release = threading.Event()

        def page() -> None:
            with gate.page_run():
                runner_in.set()
                release.wait(5)

        runner = threading.Thread(target=page)
        runner.start()
        runner_in.wait(5)
        assert gate.busy()
        release.set()
        runner.join()


def test_give_up_ends_a_pause_and_max_s_bounds_it():
    gate = PageGate()
    with gate.page_run():
        t0 = time.perf_counter()
        assert _paused_for(gate, give_up=lambda: time.perf_counter() - t0 > 0.1) < 0.5
        assert 0.15 <= _paused_for(gate, max_s=0.2) < 0.6


def test_the_prefetch_worker_pauses_at_its_progress_callback_only(monkeypatch):
    """``Prefetcher.check_open`` is a job's per-step callback: in the worker thread it waits for page runs; called
    from any other thread (a page following a run) it never waits."""
    from sculpt_core.app import prefetch as P

    gate = PageGate()
    monkeypatch.setattr(P, "page_gate", lambda: gate)
    pf = Prefetcher(name="test-gate-prefetch")
    steps: list[float] = []

    def job() -> None:
        for _ in range(3):
            pf.check_open()
            steps.append(time.perf_counter())

    with gate.page_run():
        t0 = time.perf_counter()
        pf.check_open()  # this thread is not the worker: returns at once
        assert time.perf_counter() - t0 < 0.05
        pf.schedule("view", [job])
        time.sleep(0.3)
        assert steps == []  # the worker is paused at its first step
        ended = time.perf_counter()
    assert pf.wait_idle(10)
    assert len(steps) == 3 and steps[0] >= ended
    pf.shutdown()


def test_app_threads_put_torch_and_blas_on_one_thread():
    """In a fresh process (the limits are process-wide and never restored): after ``use_one_torch_thread`` torch
    and every loaded BLAS pool (numpy/scipy's OpenBLAS) run one thread, also in a thread started afterwards."""
    import subprocess
    import sys

    code = ("import threading, torch; from threadpoolctl import threadpool_info;"
            "from sculpt_core.app.torch_threads import use_one_torch_thread; use_one_torch_thread();"
            "out = {};"
            "t = threading.Thread(target=lambda: out.update(torch=torch.get_num_threads())); t.start(); t.join();"
            "blas = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'];"
            "print(out['torch'], len(blas) > 0 and set(blas) == {1})")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert got.stdout.split() == ["1", "True"], got.stderr[-2000:]


def test_no_render_grace_while_a_page_waits_for_background_work():
    """A run that ended a moment ago must not hold back the work a new page run is waiting for."""
    gate = PageGate()
    with gate.page_run():
        pass  # a run just ended: the render grace would start now
    with gate.page_run(), gate.waiting():
        assert _paused_for(gate, grace_s=5.0) < 0.5


def test_a_page_waiting_on_a_stored_run_lets_the_paused_prefetch_job_finish(monkeypatch):
    """The sample store's wait for a run in flight opens the gate: a page run asking for the very set the prefetch
    thread is computing gets it as soon as the job is done, not after the job's pauses (10 s each)."""
    from sculpt_core.app import mol_store, page_gate, prefetch as P

    gate = PageGate()
    monkeypatch.setattr(page_gate, "_GATE", gate)
    monkeypatch.setattr(P, "page_gate", lambda: gate)
    store = mol_store.SampleStore(16)
    pf = Prefetcher(name="test-store-gate")
    started = threading.Event()

    def compute(report):
        started.set()
        for step in range(5):
            time.sleep(0.02)
            pf.check_open()  # the job's per-step callback: pauses while a page run is not waiting
        return "the set"

    pf.schedule("view", [lambda: store.get_or_compute("key", compute)])
    assert started.wait(5)
    t0 = time.perf_counter()
    with gate.page_run():
        got = store.get_or_compute("key", lambda report: "computed twice")
    assert got == "the set" and time.perf_counter() - t0 < 3.0
    pf.shutdown()
