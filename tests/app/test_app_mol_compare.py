"""The Molecule Sculpting page while it computes and beside its samples (issue 17): the previous view kept behind a
stale note and a progress bar with counts and time left, the sample store shared with the prefetch thread,
methods side by side, the paper's Table 1 row of the view, and the scoring radio's labels."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("rdkit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sculpt_core.app import mol_views as MV  # noqa: E402
from sculpt_core.app import molecules as M  # noqa: E402
from sculpt_core.app.mol_compare import FIGURE_KEYS, figure_label, paper_figures, paper_row  # noqa: E402
from sculpt_core.app.mol_store import SampleStore, molecule_progress  # noqa: E402
from sculpt_core.core import algebra as A  # noqa: E402

from helpers import molecule_page  # noqa: E402

TIMEOUT = 90


def _page(query: dict | None = None, **state) -> AppTest:
    return molecule_page(query, TIMEOUT, **state)


def _record_progress(monkeypatch) -> list[MV.ViewProgress]:
    made: list[MV.ViewProgress] = []
    start = MV.ViewProgress.start

    def recorded(self) -> None:
        made.append(self)
        start(self)

    monkeypatch.setattr(MV.ViewProgress, "start", recorded)
    return made


# ----- never a generic spinner: the previous view, a stale note, counts and time left ---------------------------
def test_a_new_view_keeps_the_old_one_behind_a_stale_note_and_counts_molecules(mol_env, monkeypatch):
    made = _record_progress(monkeypatch)
    at = _page(m_seed=11)  # a seed no other test samples, so the first view is computed here
    assert len(made) == 1 and made[0].note.startswith("Computing the first view")
    assert made[0].total == 3 * 32  # the composition and its two bases
    made.clear()
    at.sidebar.slider(key="m_alpha").set_value(0.47).run()
    assert not at.exception
    assert len(made) == 1, "an uncached α move shows the stale note and the bar"
    note = made[0].note
    assert note.startswith("Stale: showing α=0.5, computing α=0.47.") and "β=" not in note, note
    reports = made[0].reports
    assert made[0].total == 32  # the bases at this β are cached: only the composition is sampled
    assert reports[0] == (0, 32) and reports[-1] == (32, 32)
    done = [d for d, _ in reports]
    assert done == sorted(done) and len(set(done)) > 3  # step by step, not one jump at the end
    assert not at.get("progress") and not any("Stale:" in c.value for c in at.caption)  # cleared once drawn
    assert "(α=0.47)" in at.markdown[0].value or any("α=0.47" in md.value for md in at.markdown)
    made.clear()
    at.sidebar.slider(key="m_alpha").set_value(0.5).run()  # back: from the store, no bar at all
    assert not at.exception and made == []


def test_view_progress_shows_counts_elapsed_and_time_left():
    def script():
        import streamlit as st

        from sculpt_core.app import mol_views as MV

        st.plotly_chart({"data": [{"type": "scatter", "y": [1, 2]}]}, key="fig_previous")
        pending = MV.ViewProgress(st.empty(), "Stale: showing α=0.5, computing α=0.51.", [64, 64], estimate_s=3.0)
        pending.redraw_s = 0.0  # draw every report
        pending.start()
        pending.part(0)(64, 64)
        pending.part(1)(16, 64)
        if st.session_state.get("clear"):
            pending.clear()

    at = AppTest.from_function(script, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [c.value for c in at.caption] == ["Stale: showing α=0.5, computing α=0.51."]
    bar = at.get("progress")[0].proto
    assert bar.value == 62 and "80 / 128" in bar.text and "s left" in bar.text, bar
    assert len(at.get("plotly_chart")) == 1  # the previous figure is still there
    at.session_state["clear"] = True
    at.run()
    assert not at.caption and not at.get("progress")
    done = MV.ViewProgress(None, "", [4, 4]).text(8)  # sampled: the bar says what still runs
    assert done.startswith("Sampled 8 / 8 molecules in ") and "scoring them" in done


def test_stale_note_names_only_what_changed():
    old = {"bases": "seh,sa", "alpha": "0.5", "beta": "32", "method": "reaching", "u": "trajectory"}
    assert MV.stale_note(old, {**old, "beta": "33"}).startswith("Stale: showing β=32, computing β=33.")
    new = {k: v for k, v in old.items() if k != "u"} | {"method": "ensemble"}
    assert MV.stale_note(old, new).startswith("Stale: showing method=reaching, u=trajectory, computing "
                                              "method=ensemble.")
    assert "showing no u, computing u=flow" in MV.stale_note(new, {**new, "u": "flow"})
    assert MV.stale_note(None, old).startswith("Computing the first view (bases=seh,sa, α=0.5")


def test_progress_does_not_change_what_is_sampled(mol_env):
    """The step reports come from a wrapper around the policy: the same molecules as the unreported call."""
    model = M.load_mol("sa")
    plain = M.draw_samples([model], 32.0, None, "base", 40, seed=3, batch_size=16)
    reports: list[tuple[int, int]] = []
    followed = M.draw_samples([model], 32.0, None, "base", 40, seed=3, batch_size=16,
                              progress=lambda d, t: reports.append((d, t)))
    assert followed.smiles == plain.smiles and (followed.rewards == plain.rewards).all()
    done = [d for d, _ in reports]
    assert reports[-1] == (40, 40) and done == sorted(done) and len(done) > 6
    assert {t for _, t in reports} == {40}


def test_molecule_progress_is_monotone_and_bounded():
    seen: list[tuple[float, int]] = []
    on_step, on_batch = molecule_progress(10, lambda d, t: seen.append((d, t)), max_steps=4)
    on_step(0, 0, 8), on_step(1, 0, 8), on_step(2, 3, 8), on_step(3, 8, 8)  # a batch of 8, each running 1/4
    on_batch(6, 10)  # two were invalid: the count holds, it does not go back
    on_step(0, 0, 4), on_step(2, 0, 4), on_step(3, 2, 4)
    on_batch(10, 10)
    assert seen == [(0, 10), (2, 10), (5.5, 10), (8, 10), (9.5, 10), (10, 10)]


def test_sample_store_shares_a_run_in_flight_and_reruns_a_failed_one():
    store, calls, seen = SampleStore(4), [], []
    gate = threading.Event()

    def slow(report):
        calls.append("slow")
        report(1, 4)
        gate.wait(10)
        report(4, 4)
        return "value"

    worker = threading.Thread(target=lambda: store.get_or_compute("k", slow))
    worker.start()
    for _ in range(200):
        if calls:
            break
        time.sleep(0.01)
    threading.Timer(0.3, gate.set).start()
    got = store.get_or_compute("k", lambda report: calls.append("again") or "other",
                               progress=lambda d, t: seen.append((d, t)), poll_s=0.01)
    worker.join(10)
    assert got == "value" and calls == ["slow"] and seen[0] == (1, 4) and seen[-1] == (4, 4)
    assert store.get_or_compute("k", lambda r: "never") == "value" and "k" in store

    def failing(report):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.get_or_compute("bad", failing)
    assert "bad" not in store and store.get_or_compute("bad", lambda r: 7) == 7


def test_sample_key_holds_what_changes_a_set():
    key = M.sample_key(("f",), 32.0, ("hm",), "reaching", "trajectory", 64, 0)
    assert key != M.sample_key(("f",), 32.0, ("hm",), "reaching", "flow", 64, 0)
    assert key != M.sample_key(("f",), 32.0, ("hm",), "reaching", "trajectory", 64, 0, seh_ok=False)
    clf = M.sample_key(("f",), 32.0, ("hm",), "classifier", "trajectory", 64, 0, "fast", clf_token=(1.0, "a"))
    assert clf != M.sample_key(("f",), 32.0, ("hm",), "classifier", "trajectory", 64, 0, "topk", clf_token=(1.0, "a"))
    assert clf != M.sample_key(("f",), 32.0, ("hm",), "classifier", "trajectory", 64, 0, "fast", clf_token=(2.0, "a"))
    assert M.sample_key(("f",), 32.0, ("hm",), "ensemble", "trajectory", 64, 0) == \
        M.sample_key(("f",), 32.0, ("hm",), "ensemble", "flow", 64, 0)  # u does not change an ensemble


# ----- methods side by side -----------------------------------------------------------------------------------
def _columns(at: AppTest) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    """(title, [(card, value)], infos) of each column of the comparison."""
    out = []
    for col in at.columns:
        md = [m.value for m in col.markdown]
        if md and md[0].strip("*") in M.MOL_METHODS.values():
            out.append((md[0].strip("*"), [(m.label, m.value) for m in col.metric], [i.value for i in col.info]))
    return out


def test_compare_shows_every_method_with_aligned_cards(mol_env):
    from sculpt_core.domains.molecules.zoo import find_mol_classifier

    if find_mol_classifier(["seh", "sa"]) is None:
        pytest.skip("no (seh, sa) classifier shipped")
    at = _page({"method": "compare", "bases": "seh,sa", "alpha": "0.5", "n": "32"})
    assert not at.error
    cols = _columns(at)
    assert [c[0] for c in cols] == [M.MOL_METHODS[m] for m in M.COMPARE_METHODS]
    labels = [figure_label(k) for k in FIGURE_KEYS]
    for title, cards, infos in cols:
        assert [c for c, _ in cards] == labels and not infos, title  # the same cards in the same order
        assert all(v.endswith("%") or v.replace(".", "").isdigit() for _, v in cards), cards
    assert cols[0][1] != cols[2][1]  # reaching and ensemble differ
    assert at.query_params["method"] == "compare" and {"u", "scoring"} <= set(at.query_params)
    names = {t.get("name") for t in __import__("json").loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert {"p1 ⊗ p2 (α=0.5) · reaching", "p1 ⊗ p2 (α=0.5) · classifier", "p1 ⊗ p2 (α=0.5) · ensemble"} <= names
    table = next(md.value for md in at.markdown if md.value.startswith("| |"))
    assert table.count("| ours, ") == 3


def test_compare_notes_a_method_that_does_not_apply(mol_env, downloads):
    at = _page({"method": "compare", "bases": "seh,sa,qed", "op": "chained_hm", "n": "32"})
    assert not at.error
    cols = _columns(at)
    by_title = {t: (cards, infos) for t, cards, infos in cols}
    cards, infos = by_title[M.MOL_METHODS["classifier"]]
    assert not cards and len(infos) == 1 and "does not apply to the chained harmonic mean" in infos[0]
    assert len(by_title[M.MOL_METHODS["reaching"]][0]) == len(FIGURE_KEYS)
    assert len(by_title[M.MOL_METHODS["ensemble"]][0]) == len(FIGURE_KEYS)
    csv = [c for c in downloads if c["label"] == "Samples (CSV)"][-1]
    lines = csv["data"].splitlines()
    assert lines[0].startswith("bases,") and sum(line.startswith("bases,") for line in lines) == 1
    assert {line.split(",")[6] for line in lines[1:]} == {"reaching", "ensemble"}  # method column, per row
    assert "compare" in csv["file_name"]


# ----- the paper's Table 1 row beside ours ------------------------------------------------------------------------
def test_paper_row_matches_the_view():
    three = ["seh", "sa", "qed"]
    assert paper_row(three, A.conditioning((1, 2, 3), 3), 32.0).key == "d"
    assert paper_row(["sa", "seh", "qed"], A.conditioning((2, 1), 3), 32.0).key == "a"  # read as rewards
    assert paper_row(three, A.conditioning((3, 3, 3), 3), 32.0).key == "g"
    at16 = paper_row(three, A.conditioning((1, 2, 3), 3), 16.0)
    assert at16.key is None and "β = 32" in at16.text
    assert paper_row(three, A.conditioning((1, 1), 3), 32.0).key is None  # (1, 1) is no row
    assert paper_row(three, A.chained_harmonic_mean(3), 32.0).key is None
    two = paper_row(["seh", "sa"], A.harmonic_mean(), 32.0)
    assert two.key is None and two.text.startswith("not a row of the paper's Table 1")
    assert paper_figures("d") == pytest.approx({"seh": 0.80, "sa": 0.72, "qed": 0.86, "all_high": 0.49})


def test_the_papers_row_is_shown_beside_ours(mol_env):
    from sculpt_core.domains.molecules.seh_proxy import seh_available

    at = _page({"bases": "seh,sa,qed", "op": "labels", "labels": "1,2,3", "beta": "32", "method": "reaching"})
    texts = [md.value for md in at.markdown]
    assert any("row (d) y={SEH,SA,QED} of the paper's Table 1" in t for t in texts), texts
    table = next(t for t in texts if t.startswith("| |"))
    assert "| paper, row d | 80% | 72% | 86% | 49% |" in table and "| ours, reaching" in table
    if seh_available():
        import json

        spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("fig_table1"))
        assert "paper row d" in [t["name"] for t in spec["data"]]
    at = _page({"bases": "seh,sa", "op": "hm"})
    assert any("not a row of the paper's Table 1" in md.value for md in at.markdown)
    assert not any("| paper, row" in md.value for md in at.markdown)


# ----- the scoring radio's labels line up ---------------------------------------------------------------------
def test_scoring_and_u_radios_have_short_labels_with_captions(mol_env):
    from sculpt_core.domains.molecules.zoo import find_mol_classifier

    if find_mol_classifier(["seh", "sa"]) is None:
        pytest.skip("no (seh, sa) classifier shipped")
    at = _page(m_method="classifier")
    radio = at.sidebar.radio(key="m_scoring")
    assert radio.options == ["fast", "top-64 exact"] and not radio.proto.horizontal
    assert list(radio.proto.captions) == list(M.MOL_SCORING_CAPTIONS) and "64 likeliest" in radio.proto.captions[1]
    assert all(len(o) <= 14 for o in radio.options)  # one line each in the sidebar: the options line up
    at.sidebar.radio(key="m_method").set_value("reaching").run()
    u = at.sidebar.radio(key="m_u")
    assert u.options == ["trajectory product", "learned state flow"] and len(u.proto.captions) == 2
