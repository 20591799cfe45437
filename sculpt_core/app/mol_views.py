"""How the Molecule Sculpting page samples and shows a view in Streamlit.

- :func:`sample_view`: every sample set a view needs (its composition by one or several methods, its base
  models), from the process-wide store when it is there; otherwise the previous view stays on screen (Streamlit
  keeps an element until the rerun writes its position again) behind a note naming what it shows and what is
  computed ("Stale: showing α=0.5, computing α=0.51") and a progress bar with the molecules done / total and the
  time left, updated at every sampling step (:class:`ViewProgress`).
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
                shown: Mapping[str, str] | None, computing: Mapping[str, str]) -> list[M.MolSamples | None]:
    """Every set of ``specs`` (None for one that failed, with its error shown), behind :class:`ViewProgress` when
    any has to be sampled."""
    from sculpt_core.core.operators import composition_key

    missing = [i for i, s in enumerate(specs) if s.key(beta, n, seed, seh_ok) not in M.SAMPLES]
    progress = None
    if missing:
        rates = [M.RATES.get(M.rate_kind(specs[i].method, specs[i].scoring)) for i in missing]
        estimate = sum(n / r for r in rates) if all(rates) else None
        progress = ViewProgress(slot, stale_note(shown, computing), [n] * len(missing), estimate)
        progress.start()
    out: list[M.MolSamples | None] = []
    for i, spec in enumerate(specs):
        label = M.MOL_METHODS.get(spec.method, spec.name)
        try:
            out.append(M.cached_samples(
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
    return out


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


__all__ = ["KEY_NAMES", "SetSpec", "ViewProgress", "sample_view", "show_method_columns", "show_paper_row",
           "stale_note", "view_text"]
