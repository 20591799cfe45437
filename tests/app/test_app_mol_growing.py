"""The Molecule Sculpting page draws a small first batch and grows it (issue 17): a view of 64 molecules is drawn
from the first 16 of its seeded run at once, under a note, then from the full set, which is the set an
uninterrupted run gives; every figure says how many molecules it is computed on."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rdkit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sculpt_core.app import molecules as M  # noqa: E402
from sculpt_core.app.prefetch import prefetcher  # noqa: E402
from sculpt_core.app.mol_store import GrowingRun, RunStopped, SampleStore  # noqa: E402
from sculpt_core.core.operators import build_composition  # noqa: E402

from helpers import molecule_page  # noqa: E402

TIMEOUT = 90


# ----- the run: staged or not, the same molecules ----------------------------------------------------------------
def test_a_grown_run_is_the_uninterrupted_run_and_its_first_batch_a_prefix(mol_env):
    from sculpt_core.domains.molecules.sampling import sample_molecules

    models = [M.load_mol("seh"), M.load_mol("sa")]
    comp = build_composition("hm", 2, 0.5, "1,2", "")
    staged = M.new_run(models, 32.0, comp, "reaching", 40, 5, first=16)
    staged.grow_to(16)
    first = M.run_samples(staged, 16)
    staged.grow_to(40)
    whole = M.new_run(models, 32.0, comp, "reaching", 40, 5, first=16)
    whole.grow_to(40)
    grown, at_once = M.run_samples(staged), M.run_samples(whole)
    assert len(first.smiles) == 16 and grown.smiles[:16] == first.smiles
    assert grown.smiles == at_once.smiles and np.array_equal(grown.rewards, at_once.rewards, equal_nan=True)
    assert np.array_equal(grown.rewards[:16], first.rewards, equal_nan=True)
    assert first.seconds < grown.seconds  # the first batch's own time, not the whole run's
    # without a first batch the run is the CLI's (sample_molecules at one batch size), staged or not
    plain = M.new_run([models[1]], 32.0, None, "base", 24, 2, batch_size=8)
    plain.grow_to(8)
    plain.grow_to(24)
    ref = sample_molecules(models[1].policy(32.0), 24, seed=2, batch_size=8, env=models[1].env)
    assert plain.smiles == ref.smiles


def test_a_run_stopped_within_a_batch_rewinds_and_draws_the_same_molecules(mol_env):
    """A stale background job stops at the next sampling step (not the end of its batch): the batch is dropped,
    the generator rewound, and the run continued later holds exactly the molecules of an uninterrupted run."""
    models = [M.load_mol("seh"), M.load_mol("sa")]
    comp = build_composition("hm", 2, 0.5, "1,2", "")
    whole = M.new_run(models, 32.0, comp, "reaching", 24, 3, "trajectory", batch_size=8, first=8)
    whole.grow_to(24)
    staged = M.new_run(models, 32.0, comp, "reaching", 24, 3, "trajectory", batch_size=8, first=8)
    staged.grow_to(8)
    asked = []

    def stop() -> bool:  # false before the batch, then true at its third step
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(RunStopped):
        staged.grow_to(24, stop=stop)
    assert len(asked) == 4 and len(staged) == 8 and not staged.broken and staged.done == 8.0  # inside a batch
    staged.grow_to(24)
    assert staged.smiles == whole.smiles


def _fake_run(n: int, fail_at: int | None = None, gate: threading.Event | None = None) -> GrowingRun:
    drawn = []

    def draw(size, on_step):
        drawn.append(size)
        for step in range(3):
            if on_step:
                on_step(step, 0, size)
            if gate is not None:
                gate.wait(5)
        if fail_at is not None and len(drawn) == fail_at:
            raise RuntimeError("stopped")
        return [(None, f"C{len(drawn)}_{i}") for i in range(size)]

    run = GrowingRun(n, 8, draw, lambda smiles: np.zeros((len(smiles), 3)), max_steps=3, first=4)
    run.drawn = drawn
    return run


def test_growing_run_batches_progress_waiters_and_breakage():
    run, seen = _fake_run(20), []
    run.grow_to(4, lambda d, t: seen.append((d, t)))
    assert run.drawn == [4] and len(run) == 4 and seen[-1] == (4, 4)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    run.grow_to(20, lambda d, t: seen.append((d, t)))
    assert run.drawn == [4, 8, 8] and len(run) == 20 and seen[-1] == (20, 20)

    gate = threading.Event()
    shared, waited = _fake_run(20, gate=gate), []
    worker = threading.Thread(target=shared.grow_to, args=(20,))
    worker.start()
    threading.Timer(0.2, gate.set).start()
    shared.grow_to(4, lambda d, t: waited.append((d, t)), poll_s=0.01)  # waits for the other thread's batch
    worker.join(10)
    assert shared.drawn == [4, 8, 8] and waited[-1] == (4, 4)

    stopped = _fake_run(20)
    stopped.grow_to(4)
    with pytest.raises(RunStopped):
        stopped.grow_to(20, stop=lambda: True)  # asked before each batch: nothing drawn, the run intact
    assert not stopped.broken and stopped.drawn == [4]
    stopped.grow_to(20)
    assert stopped.drawn == [4, 8, 8] and stopped.smiles[:4] == ["C1_0", "C1_1", "C1_2", "C1_3"]

    broken = _fake_run(20, fail_at=2)
    broken.grow_to(4)
    with pytest.raises(RuntimeError):
        broken.grow_to(20)
    assert broken.broken and len(broken) == 4
    store = SampleStore(16)
    store._runs["k"] = broken
    fresh = store.run("k", lambda: _fake_run(20))
    assert fresh is not broken and store.held("k") == 0  # a broken run is started again, not continued
    store.put("k", "value")
    assert store.held("k") is None and store.held("other") == 0


# ----- the page: first batch at once, then the full view -----------------------------------------------------
def _csv_smiles(downloads) -> list[str]:
    return [row["smiles"] for row in csv.DictReader(io.StringIO(downloads[-1]["data"]))]


def _names(at: AppTest) -> set:
    return {t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}


def test_a_64_molecule_view_is_drawn_from_its_first_16_then_grown(mol_env, downloads):
    at = molecule_page(None, TIMEOUT, m_n=64, m_seed=21)  # a seed no other test samples
    notes = [i.value for i in at.info]
    assert any(v.startswith("Showing the first 16 of 64 molecules") and "growing" in v for v in notes), notes
    counts = [c.value for c in at.caption if c.value.startswith("Every figure below")]
    assert counts and "composition: first 16 of 64 (growing…)" in counts[0], counts
    assert "p1 ⊗ p2 (α=0.5) · first 16 of 64" in _names(at)
    assert len(_csv_smiles(downloads)) == 16
    at.run()  # the rerun the note's fragment triggers: without prefetch it samples the rest here
    assert not at.exception
    assert not [i.value for i in at.info if "growing" in i.value]
    assert [c.value for c in at.caption if c.value.startswith("Every figure below")] == [
        "Every figure below is computed on 64 molecules per sample set."]
    assert "p1 ⊗ p2 (α=0.5)" in _names(at)
    full = _csv_smiles(downloads)
    models = [M.load_mol("seh"), M.load_mol("sa")]
    ref = M.new_run(models, 32.0, build_composition("hm", 2, 0.5, "1,2", ""), "reaching", 64, 21,
                    first=M.PAGE_FIRST)
    ref.grow_to(64)
    assert full == ref.smiles  # the grown view is the set drawn without staging


def test_below_the_staging_size_and_cached_sets_show_at_once(mol_env):
    at = molecule_page(None, TIMEOUT, m_seed=22)  # 32 molecules: sampled whole
    assert not [i.value for i in at.info if "growing" in i.value]
    assert any(c.value == "Every figure below is computed on 32 molecules per sample set." for c in at.caption)


def test_prefetch_grows_the_first_batch_to_the_full_set(mol_env, monkeypatch):
    monkeypatch.setenv("SCULPT_PREFETCH", "1")
    at = molecule_page(None, 120, m_n=64, m_seed=23)
    assert any("growing" in i.value for i in at.info)
    growing = at.session_state["m_growing"]
    assert growing and all(M.SAMPLES.held(k) == 16 for k in growing)
    deadline = time.monotonic() + 30
    while not all(M.SAMPLES.held(k) is None for k in growing) and time.monotonic() < deadline:
        time.sleep(0.05)  # the growing jobs run first, before the neighbours
    assert all(M.SAMPLES.held(k) is None for k in growing)  # grown in the background
    prefetcher().cancel()  # the neighbours are not needed here
    assert prefetcher().wait_idle(60)
    made = []
    real = M.new_run
    monkeypatch.setattr(M, "new_run", lambda *a, **k: made.append(a) or real(*a, **k))
    monkeypatch.setenv("SCULPT_PREFETCH", "0")
    at.run()
    assert not at.exception and made == [] and not [i.value for i in at.info if "growing" in i.value]
