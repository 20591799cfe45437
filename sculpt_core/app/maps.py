"""The thin layer between the Distribution Map page and the library.

Two sources of a map:

* the shipped reproduction of the paper's Fig. 4 (``assets/maps/mol_fig4.json``: our 13×13 EMD matrix of the
  shipped sEH, SA, QED models and their compositions, the paper's matrix beside it, stored t-SNE/MDS coordinates),
  which opens without computing anything;
* a map built on the page (:func:`compute_map`): a domain, its bases and a list of compositions
  (:func:`sculpt_core.core.maps.plan_items`: label tuples, an α sweep, a method). Every sample set (or exact grid
  distribution) is kept in a process-wide store keyed by what determines it (domain, bases, item, method, size,
  seed, β), so adding one composition to a map samples only that one; progress reports counts and time left.

Embeddings (:func:`embedding`) are cached by the matrix and their settings (``st.cache_data``).
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from sculpt_core.core.io import csv_text
from sculpt_core.core.maps import TSNE_DEFAULTS, Embedding, MapItem, embed, sinkhorn_check
from sculpt_core.errors import SculptError

DOMAINS: dict[str, str] = {"grid": "Grid (exact distributions)", "molecules": "Molecules (sample sets)",
                           "diffusion": "Diffusion 2-D (sample sets)"}
DOMAIN_METHODS: dict[str, tuple[str, ...]] = {"grid": ("oracle", "reaching", "ensemble", "classifier"),
                                              "molecules": ("reaching", "classifier", "ensemble"),
                                              "diffusion": ("exact", "oracle", "score-sum", "superdiff")}
EMBEDDINGS = {"tsne": "t-SNE (paper: perplexity 4, exaggeration 100, exact)", "mds": "MDS (metric, SMACOF)"}
SIZE_CHOICES = {"molecules": (50, 100, 200, 500, 1000), "diffusion": (200, 500, 1000, 2000)}
DEFAULT_SEED = 0
STORE_MAX = 256
#: Reported by ``progress(stage, done, total, seconds_left)``; stage is "sampling" or "distances".
MapProgress = Callable[[str, int, int, "float | None"], None]


@dataclass
class MapResult:
    """A distance matrix between named distributions, with how it was made."""

    title: str
    domain: str
    labels: list[str]
    matrix: np.ndarray
    specs: list[dict]
    info: dict = field(default_factory=dict)
    stored: dict = field(default_factory=dict)  # precomputed embeddings {"tsne"|"mds": {..., "coords"}}

    def matrix_csv(self) -> str:
        """The matrix with a header row and a label column."""
        return csv_text(["", *self.labels], ([lab, *(f"{v:.6g}" for v in row)] for lab, row in
                                            zip(self.labels, self.matrix)), lineterminator="\n")

    def coords_csv(self, emb: Embedding) -> str:
        return csv_text(["label", "x", "y"], ([lab, f"{x:.6g}", f"{y:.6g}"] for lab, (x, y) in
                                              zip(self.labels, emb.coords)), lineterminator="\n")


# ----- the shipped Fig. 4 -------------------------------------------------------------------------------------
def fig4_result(record: dict, source: str = "ours") -> MapResult:
    """Our (``source="ours"``) or the paper's (``"paper"``) Fig. 4 matrix from the shipped record."""
    key = "matrix" if source == "ours" else "paper_matrix"
    s = record.get("settings", {})
    n = s.get("n_per_set")
    title = (f"Ours: shipped models, {n} molecules per set, {s.get('method')} ({s.get('scoring')} scoring)"
             if source == "ours" else "Paper (Table G.5): ~5000 molecules per set")
    return MapResult(title, "molecules", list(record["labels"]), np.asarray(record[key], dtype=np.float64),
                     list(record.get("distributions", [])), {"settings": s, "timings": record.get("timings", {})},
                     record.get("embeddings", {}).get(source, {}))


def paper_pairs(record: dict) -> list[dict]:
    """Every pair of the 13 distributions: ours, the paper's and the difference (largest paper distance first)."""
    ours = np.asarray(record["matrix"], dtype=np.float64)
    paper = np.asarray(record["paper_matrix"], dtype=np.float64)
    labels = record["labels"]
    rows = [{"pair": f"{labels[i]} ↔ {labels[j]}", "ours": round(float(ours[i, j]), 3),
             "paper": round(float(paper[i, j]), 3), "ours − paper": round(float(ours[i, j] - paper[i, j]), 3)}
            for i in range(len(labels)) for j in range(i + 1, len(labels))]
    return sorted(rows, key=lambda r: -r["paper"])


def rank_agreement(record: dict) -> float:
    """Spearman correlation between our and the paper's 78 pairwise distances (1 = same order; ranks by sorting,
    ties broken by position)."""
    ours = np.asarray(record["matrix"], dtype=np.float64)
    paper = np.asarray(record["paper_matrix"], dtype=np.float64)
    iu = np.triu_indices(len(ours), 1)
    ranks = [np.argsort(np.argsort(m[iu], kind="stable"), kind="stable").astype(np.float64) for m in (ours, paper)]
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])


@st.cache_data(show_spinner=False, max_entries=4)
def _fig4(path: str, mtime: float) -> dict | None:
    from sculpt_core.domains.molecules.maps import load_fig4

    return load_fig4()


def shipped_fig4() -> tuple[dict | None, str | None]:
    """(the shipped Fig. 4 record or None, why it is missing or unreadable)."""
    from sculpt_core.domains.molecules.maps import fig4_path

    path = fig4_path()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None, (f"the precomputed map {path} is not shipped; build it with "
                      "`python -m sculpt_core zoo build-mol-map`")
    try:
        return _fig4(str(path), mtime), None
    except SculptError as exc:
        return None, str(exc)


# ----- embeddings --------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=64)
def _embedding(matrix_bytes: bytes, k: int, method: str, seed: int, perplexity: float) -> Embedding:
    d = np.frombuffer(matrix_bytes, dtype=np.float64).reshape(k, k)
    return embed(d, method, seed, perplexity=perplexity) if method == "tsne" else embed(d, method, seed)


def embedding(result: MapResult, method: str, seed: int, perplexity: float = TSNE_DEFAULTS["perplexity"]) -> Embedding:
    """The oriented 2-D embedding of ``result``'s matrix: the stored one when the settings are the stored ones
    (the shipped map), else computed and cached."""
    stored = result.stored.get(method)
    if stored and int(stored.get("seed", -1)) == int(seed) and (
            method != "tsne" or float(stored.get("perplexity") or 0) == min(float(perplexity), len(result.labels) - 1)):
        params = {k: v for k, v in stored.items() if k not in ("coords", "method", "seed", "notes", "seconds")}
        return Embedding(np.asarray(stored["coords"], dtype=np.float64), method, int(seed), params,
                         list(stored.get("notes", [])) + ["precomputed with the shipped map"], 0.0)
    m = np.ascontiguousarray(result.matrix, dtype=np.float64)
    return _embedding(m.tobytes(), len(m), method, int(seed), float(perplexity))


# ----- building a map ----------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _store() -> OrderedDict:
    return OrderedDict()


def _remember(key: tuple, make: Callable[[], Any]) -> tuple[Any, bool]:
    """(value for ``key`` from the process-wide store or ``make()``, whether it was already there)."""
    store = _store()
    if key in store:
        store.move_to_end(key)
        return store[key], True
    value = make()
    store[key] = value
    while len(store) > STORE_MAX:
        store.popitem(last=False)
    return value, False


def item_seed(seed: int, item: MapItem) -> int:
    """A per-distribution seed that depends on the item, not its position (adding items keeps the others)."""
    return int(seed) + zlib.crc32(item.key.encode()) % 100_000


def _stamp(domain: str, names: Sequence[str]) -> tuple:
    from sculpt_core.app.caches import assets_key, manifest_stamp

    return (domain, tuple(names), assets_key(), manifest_stamp())


def _grid_sets(names: Sequence[str], items: Sequence[MapItem], report: MapProgress) -> tuple[list, int]:
    from sculpt_core.app.caches import zoo_classifier
    from sculpt_core.domains.grid.maps import map_distributions

    clf = None
    if any(it.method == "classifier" and it.base is None for it in items):
        found = zoo_classifier(list(names))
        if found is None:
            raise SculptError(f"no shipped grid classifier for {' + '.join(names)}: use the oracle or reaching")
        clf = found[0]
    keys = [_stamp("grid", names) + (it.key, it.method) for it in items]
    store = _store()
    missing = [it for it, k in zip(items, keys) if k not in store]
    fresh = dict(zip([it.key for it in missing], map_distributions(
        names, missing, classifier=clf, progress=lambda d, t, left: report("sampling", d, t, left)))) if missing else {}
    out = [_remember(k, lambda: fresh[it.key])[0] for it, k in zip(items, keys)]
    hits = len(items) - len(missing)
    return out, hits


def _mol_sets(names: Sequence[str], items: Sequence[MapItem], n: int, seed: int, beta: float,
              report: MapProgress) -> tuple[list, int]:
    from sculpt_core.app import molecules as M
    from sculpt_core.domains.molecules.compose import prepare_mol_bases
    from sculpt_core.domains.molecules.maps import sample_distribution

    models = [M.load_mol(nm) for nm in names]
    bases = prepare_mol_bases(models, beta)
    clf = None
    if any(it.method == "classifier" and it.base is None for it in items):
        clf, note = M.cached_classifier(list(names), beta)
        if clf is None:
            raise SculptError(f"classifier guidance is not available: {note}")
    keys = [_stamp("molecules", names) + (it.key, it.method, n, item_seed(seed, it), beta) for it in items]
    missing = sum(k not in _store() for k in keys)
    total, done, t0 = missing * n, 0, time.perf_counter()
    out, hits = [], 0

    def tick(count: int, _n: int) -> None:
        got = done + count
        rate = got / max(time.perf_counter() - t0, 1e-9)
        report("sampling", got, total, (total - got) / rate if got else None)

    for item, key in zip(items, keys):
        value, hit = _remember(key, lambda: sample_distribution(bases, item, n, item_seed(seed, item), clf,
                                                                progress=tick).smiles)
        out.append(value)
        hits += hit
        done += 0 if hit else n
    return out, hits


def _diffusion_sets(names: Sequence[str], items: Sequence[MapItem], n: int, seed: int,
                    report: MapProgress) -> tuple[list, int]:
    from sculpt_core.domains.diffusion.maps import map_samples

    out, hits, t0, fresh = [], 0, time.perf_counter(), 0
    for i, item in enumerate(items):
        value, hit = _remember(_stamp("diffusion", names) + (item.key, item.method, n, item_seed(seed, item)),
                               lambda: map_samples(names, [item], n, item_seed(seed, item))[0])
        out.append(value)
        hits += hit
        fresh += not hit
        spent = time.perf_counter() - t0
        report("sampling", i + 1, len(items), spent / max(fresh, 1) * (len(items) - i - 1) if fresh else None)
    return out, hits


def compute_map(domain: str, names: Sequence[str], items: Sequence[MapItem], n: int = 200, seed: int = DEFAULT_SEED,
                solver: str = "exact", reg: float = 0.01, beta: float = 32.0,
                progress: MapProgress | None = None) -> MapResult:
    """Sample (or compute exactly) every item's distribution over the bases ``names`` of ``domain`` and their
    pairwise EMD matrix. With ``solver="sinkhorn"`` the exact EMD of the first pair is computed too and the
    relative error is reported in ``info["sinkhorn_check"]``."""
    if domain not in DOMAINS:
        raise SculptError(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}")
    report = progress or (lambda *a: None)
    t0 = time.perf_counter()
    if domain == "grid":
        from sculpt_core.domains.grid.maps import emd_matrix

        sets, hits = _grid_sets(names, items, report)
        size = None
    elif domain == "molecules":
        from sculpt_core.domains.molecules.maps import emd_matrix  # type: ignore[no-redef]

        sets, hits = _mol_sets(names, items, n, seed, beta, report)
        size = n
    else:
        from sculpt_core.domains.diffusion.maps import emd_matrix  # type: ignore[no-redef]

        sets, hits = _diffusion_sets(names, items, n, seed, report)
        size = n
    sample_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    matrix = emd_matrix(sets, solver=solver, reg=reg, progress=lambda d, t, left: report("distances", d, t, left))
    info: dict[str, Any] = {"domain": domain, "bases": list(names), "n_per_set": size, "seed": seed, "solver": solver,
                            "reg": reg if solver == "sinkhorn" else None, "cached_sets": hits,
                            "sample_seconds": round(sample_seconds, 2),
                            "distance_seconds": round(time.perf_counter() - t1, 2)}
    if solver == "sinkhorn" and len(sets) >= 2:
        exact = float(emd_matrix(sets[:2], solver="exact")[0, 1])
        info["sinkhorn_check"] = sinkhorn_check(matrix[0, 1], exact, f"{items[0].label} ↔ {items[1].label}")
    what = "exact distributions" if domain == "grid" else f"{size} samples per set"
    title = f"{DOMAINS[domain].split(' (')[0]}: {' + '.join(names)}, {what}"
    return MapResult(title, domain, [it.label for it in items], matrix, [it.spec() for it in items], info)


def domain_bases(domain: str) -> tuple[list[str], str | None]:
    """(bases a map of ``domain`` can use, an error message or None)."""
    from sculpt_core.app.caches import zoo_names

    if domain == "grid":
        return zoo_names("grid")
    if domain == "molecules":
        return zoo_names("mol")
    from sculpt_core.domains.diffusion.spec import BUILTIN_SPECS

    return list(BUILTIN_SPECS), None


def default_bases(domain: str, available: Sequence[str]) -> list[str]:
    """Two circles / sEH and SA / ring and band (an α sweep needs two bases) when available, else the first two."""
    preferred = {"grid": ("circle1", "circle2"), "molecules": ("seh", "sa"),
                 "diffusion": ("ring", "band")}[domain]
    chosen = [b for b in preferred if b in available]
    return chosen if len(chosen) >= 2 else list(available[:2])


def parse_label_sets(text: str) -> list[tuple[int, ...]]:
    """``"1,2; 1,1; 1,2,3"`` → [(1, 2), (1, 1), (1, 2, 3)] (``;`` or new lines between tuples)."""
    from sculpt_core.core.operators import parse_labels

    parts = [p for p in (text or "").replace("\n", ";").split(";") if p.strip()]
    return [parse_labels(p) for p in parts]


def progress_text(stage: str, done: int, total: int, left: float | None, unit: str) -> str:
    """``"sampling: 1200 / 2400 molecules · about 40 s left"``."""
    what = unit if stage == "sampling" else "pairs"
    eta = "" if left is None else f" · about {left:.0f} s left"
    return f"{stage}: {done} / {total} {what}{eta}"


__all__ = ["DOMAINS", "DOMAIN_METHODS", "EMBEDDINGS", "MapResult", "SIZE_CHOICES", "compute_map", "default_bases",
           "domain_bases", "embedding", "fig4_result", "item_seed", "paper_pairs", "parse_label_sets",
           "progress_text", "rank_agreement", "shipped_fig4"]
