"""How the Molecule Sculpting page samples and shows a view in Streamlit.

- :func:`sample_view`: every sample set a view needs (its composition by one or several methods, its base
  models), from the process-wide store when it is there; otherwise the previous view stays on screen (Streamlit
  keeps an element until the rerun writes its position again) behind a note naming what it shows and what is
  computed ("Stale: showing α=0.5, computing α=0.51") and a progress bar with the molecules done / total and the
  time left, updated at every sampling step (:class:`ViewProgress`).
  At the default view size and above a set not sampled yet comes first as its first batch (16 molecules, the
  start of the same seeded run): the view is drawn from it at once under a note ("first 16 of 64 molecules;
  growing…", :func:`show_growing`), the prefetch thread grows the run to the full set (:func:`grow_jobs`) and
  the page reruns with it; every figure names the molecules it is computed on (:func:`counts_caption`).
- :func:`show_method_columns`: one column per method with the same cards in the same order (so they line up);
  a method that does not apply is a neutral note in its column.
- :func:`show_paper_row`: our Table-1-style figures beside the paper's row of the view, or the sentence saying the
  view is not one of its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import streamlit as st

from sculpt_core.app import molecules as M
from sculpt_core.app.mol_compare import FIGURE_KEYS, PaperMatch, figure_label, format_figure, paper_figures
from sculpt_core.app.mol_compare import table1_markdown
from sculpt_core.app.mol_store import eta_text, now
from sculpt_core.errors import SculptError

#: Names of the view's URL keys in the stale note.
KEY_NAMES = {"alpha": "α", "beta": "β"}
#: The bar is redrawn at most this often (and always at the end of a set).
REDRAW_S = 0.05


def view_text(query: Mapping[str, str], keys: Sequence[str] | None = None) -> str:
    """``α=0.5, β=32`` for ``keys`` of a view's URL query (all of them by default)."""
    keys = list(query) if keys is None else keys
    return ", ".join(f"{KEY_NAMES.get(k, k)}={query[k]}" for k in keys if k in query)


def stale_note(shown: Mapping[str, str] | None, computing: Mapping[str, str]) -> str:
    """The note above a stale view: what the figures show and what is being computed (the keys that differ)."""
    if not shown:
        return f"Computing the first view ({view_text(computing)})."
    changed = [k for k in dict.fromkeys([*shown, *computing]) if shown.get(k) != computing.get(k)]
    if not changed:
        return f"Computing {view_text(computing)} (the figures below may be out of date)."
    was = ", ".join(f"{KEY_NAMES.get(k, k)}={shown[k]}" if k in shown else f"no {KEY_NAMES.get(k, k)}"
                    for k in changed)
    return (f"Stale: showing {was}, computing {view_text(computing, changed)}. The figures below are the "
            "previous view, kept on screen until the new one is sampled.")


class ViewProgress:
    """The stale note and one progress bar over every sample set a view computes (``parts``: molecules per set),
    drawn in ``slot``; ``part(i)`` is set ``i``'s ``progress(done, n)``. ``estimate_s``: the time the sets should
    take at the rates measured before, shown until the first molecules are done."""

    redraw_s = REDRAW_S

    def __init__(self, slot: Any, note: str, parts: Sequence[int], estimate_s: float | None = None) -> None:
        self.slot, self.note = slot, note
        self.parts = [int(p) for p in parts]
        self.done = [0.0] * len(self.parts)
        self.total = sum(self.parts)
        self.estimate_s = estimate_s
        self.t0 = now()
        self.drawn = 0.0
        self.bar = None
        self.reports: list[tuple[int, int]] = []

    def text(self, done: float) -> str:
        elapsed = now() - self.t0
        if done >= self.total:
            return (f"Sampled {self.total:,} / {self.total:,} molecules in {elapsed:.1f} s · scoring them (sEH proxy, "
                    "SA, QED) and measuring their diversity")
        return (f"Sampling molecules: {done:,.0f} / {self.total:,} · {elapsed:.1f} s elapsed, "
                + eta_text(done, self.total, elapsed, self.estimate_s))

    def start(self) -> None:
        with self.slot.container():
            st.caption(self.note)
            self.bar = st.progress(0.0, text=self.text(0))
        self.reports.append((0, self.total))
        self.drawn = now()

    def part(self, i: int):
        def progress(done: float, total: int) -> None:
            self.done[i] = min(float(done), self.parts[i])
            self.update(final=done >= total)
        return progress

    def update(self, final: bool = False) -> None:
        done = sum(self.done)
        self.reports.append((done, self.total))
        if self.bar is not None and (final or now() - self.drawn >= self.redraw_s):
            self.bar.progress(min(done / max(self.total, 1), 1.0), text=self.text(done))
            self.drawn = now()

    def clear(self) -> None:
        self.slot.empty()
        self.bar = None


@dataclass
class SetSpec:
    """One sample set of a view: the models (one base, or the chosen bases), its composition (None: a base set),
    the method and what else :func:`sculpt_core.app.molecules.cached_samples` needs."""

    name: str
    fingerprints: tuple[str, ...]
    models: list
    composition: Any
    method: str
    u_source: str = "trajectory"
    scoring: str = "fast"
    classifier: Any = None
    clf_token: Any = None
    extra: dict = field(default_factory=dict)

    def key(self, beta: float, n: int, seed: int, seh_ok: bool) -> tuple:
        from sculpt_core.core.operators import composition_key

        comp_key = composition_key(self.composition) if self.composition is not None else None
        return M.sample_key(self.fingerprints, beta, comp_key, self.method, self.u_source, n, seed, self.scoring,
                            seh_ok, self.clf_token)


def sample_view(specs: Sequence[SetSpec], beta: float, n: int, seed: int, seh_ok: bool, slot: Any,
                shown: Mapping[str, str] | None, computing: Mapping[str, str],
                complete: Sequence[tuple] = ()) -> tuple[list[M.MolSamples | None], list[tuple]]:
    """(every set of ``specs``, None for one that failed with its error shown; the keys of the sets given as their
    first batch only), behind :class:`ViewProgress` when any has to be sampled. At ``n`` ≥
    :data:`~sculpt_core.app.molecules.STAGE_FROM` a set not stored yet is given as its first
    :data:`~sculpt_core.app.molecules.PAGE_FIRST` molecules (the start of the same run, grown later by
    :func:`grow_jobs` or the next run), unless its key is in ``complete`` (its first batch was shown already):
    then it is sampled to the end here."""
    from sculpt_core.core.operators import composition_key

    keys = [s.key(beta, n, seed, seh_ok) for s in specs]
    missing = [i for i, k in enumerate(keys) if k not in M.SAMPLES]
    staged = {i for i in missing if n >= M.STAGE_FROM and keys[i] not in set(complete)}
    progress = None
    if missing:
        rates = [M.RATES.get(M.rate_kind(specs[i].method, specs[i].scoring)) for i in missing]
        parts = [M.PAGE_FIRST if i in staged else n for i in missing]
        estimate = sum(p / r for p, r in zip(parts, rates)) if all(rates) else None
        if staged:
            note = (stale_note(shown, computing) + f" Drawing the first {M.PAGE_FIRST} of {n} molecules of each "
                    "new set first.")
        elif all(keys[i] in set(complete) for i in missing):  # the first batches are on screen
            note = f"Showing the first {M.PAGE_FIRST} of {n} molecules; sampling the rest of the view."
        else:
            note = stale_note(shown, computing)
        progress = ViewProgress(slot, note, parts, estimate)
        progress.start()
    out: list[M.MolSamples | None] = []
    for i, spec in enumerate(specs):
        label = M.MOL_METHODS.get(spec.method, spec.name)
        sample = M.first_samples if i in staged else M.cached_samples
        try:
            out.append(sample(
                spec.fingerprints, beta,
                composition_key(spec.composition) if spec.composition is not None else None, spec.method,
                spec.u_source, n, seed, spec.models, spec.composition, spec.classifier, scoring=spec.scoring,
                seh_ok=seh_ok, clf_token=spec.clf_token,
                progress=progress.part(missing.index(i)) if progress is not None and i in missing else None))
        except SculptError as exc:
            st.error(f"{label}: {exc}")
            out.append(None)
        except Exception as exc:  # never a traceback in the page
            st.error(f"{label}: sampling failed unexpectedly ({type(exc).__name__}: {exc}).")
            out.append(None)
    for got in out:  # the page reads them next: measured while the bar still says so
        if got is not None:
            M.cached_diversity(tuple(got.smiles))
    if progress is not None:
        progress.clear()
    growing = [keys[i] for i in sorted(staged) if out[i] is not None and len(out[i].smiles) < n]
    return out, growing


def size_note(got: M.MolSamples | None, n: int) -> str:
    """`` · first 16 of 64`` after the name of a set given as its first batch (nothing for a full set)."""
    return "" if got is None or len(got.smiles) >= n else f" · first {len(got.smiles)} of {n}"


def counts_caption(sets: Sequence[tuple[str, M.MolSamples | None]], n: int) -> str:
    """What every figure below is computed on: ``n`` molecules per set, or which sets are their first batch."""
    partial = [(name, got) for name, got in sets if got is not None and len(got.smiles) < n]
    if not partial:
        return f"Every figure below is computed on {n} molecules per sample set."
    return ("Every figure below is computed on the molecules sampled so far: "
            + ", ".join(f"{name}: first {len(got.smiles)} of {n} (growing…)" if len(got.smiles) < n
                        else f"{name}: {n}" for name, got in sets if got is not None) + ".")


def grow_jobs(specs: Sequence[SetSpec], beta: float, n: int, seed: int, seh_ok: bool,
              growing: Sequence[tuple]) -> list:
    """Prefetch jobs growing the sets of ``specs`` whose keys are in ``growing`` to the full ``n`` (their
    diversity measured too), to run before the neighbours' (:func:`~sculpt_core.app.molecules.neighbour_jobs`)."""
    from sculpt_core.app.prefetch import prefetcher
    from sculpt_core.core.operators import composition_key

    stop, stale = prefetcher().check_open, prefetcher().stale

    def job(spec: SetSpec):
        def run() -> None:
            got = M.cached_samples(
                spec.fingerprints, beta,
                composition_key(spec.composition) if spec.composition is not None else None, spec.method,
                spec.u_source, n, seed, spec.models, spec.composition, spec.classifier, scoring=spec.scoring,
                seh_ok=seh_ok, clf_token=spec.clf_token, progress=stop, stop=stale)
            M.cached_diversity(tuple(got.smiles))
        return run

    return [job(s) for s in specs if s.key(beta, n, seed, seh_ok) in set(growing)]


#: How often the page looks whether its growing sets are complete (then it reruns with them).
GROW_POLL_S = 0.1
#: After this long without them (no prefetch thread grew them), the page's next run samples the rest itself.
GROW_FALLBACK_S = 4.0


def show_growing(growing: Sequence[tuple], n: int, prefetch: bool) -> None:
    """The note over a view drawn from first batches ("first 16 of 64 molecules; growing…"), and a fragment
    that reruns the page once every growing set is complete: at once without prefetch (the next run samples the
    rest), else when the prefetch thread has grown them (or after :data:`GROW_FALLBACK_S`). The page calls
    :func:`arm_growing` at its end, so the fragment reruns only after this run is drawn."""
    ss = st.session_state
    ss["m_grow_armed"] = False
    ss["m_grow_t0"] = now()
    _grow_watch(tuple(growing), int(n), bool(prefetch))


def arm_growing() -> None:
    st.session_state["m_grow_armed"] = True


@st.fragment(run_every=GROW_POLL_S)
def _grow_watch(growing: tuple, n: int, prefetch: bool) -> None:
    ss = st.session_state
    held = [M.SAMPLES.held(k) for k in growing]
    ready = all(h is None for h in held)
    if ss.get("m_grow_armed") and (ready or not prefetch or now() - ss.get("m_grow_t0", now()) > GROW_FALLBACK_S):
        ss["m_grow_armed"] = False
        st.rerun(scope="app")
    least = min(n if h is None else h for h in held) if held else n
    st.info(f"Showing the first {M.PAGE_FIRST} of {n} molecules of the new sample sets; growing… "
            f"({least} / {n} sampled). The figures update when the sets are complete.", icon="⏳")


def show_method_columns(columns: Sequence[tuple[str, Mapping[str, float | None] | None, str | None]]) -> None:
    """One column per (title, figures, note): the same cards in the order of
    :data:`~sculpt_core.app.mol_compare.FIGURE_KEYS` under each title, or the note (st.info) where the method
    does not apply."""
    cols = st.columns(len(columns))
    for col, (title, figures, note) in zip(cols, columns):
        with col:
            st.markdown(f"**{title}**")
            if figures is None:
                st.info(note or "Not sampled.")
                continue
            for key in FIGURE_KEYS:
                st.metric(figure_label(key), format_figure(key, figures.get(key)), border=True)


def show_paper_row(match: PaperMatch, ours: Sequence[tuple[str, Mapping[str, float | None]]]) -> None:
    """Our high fractions and all-high fraction beside the paper's Table 1 row of this view (when it is one)."""
    st.markdown("**Beside the paper's Table 1:** this view is " + match.text + ".")
    rows = list(ours)
    if match.key is not None:
        rows.append((f"paper, row {match.key}", paper_figures(match.key)))
    st.markdown(table1_markdown(rows))
    if match.key is not None:
        st.caption("The paper's percentages are its Table 1 (Garipov et al., NeurIPS 2023: classifier guidance, "
                   "β = 32); ours are the samples of this view, so they move with n and the seed.")


__all__ = ["GROW_FALLBACK_S", "GROW_POLL_S", "KEY_NAMES", "SetSpec", "ViewProgress", "arm_growing",
           "counts_caption", "grow_jobs", "sample_view", "show_growing", "size_note", "show_method_columns",
           "show_paper_row", "stale_note", "view_text"]
