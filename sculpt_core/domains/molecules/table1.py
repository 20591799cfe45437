"""The paper's Table 1 experiment on molecules: the three base models and the compositions (a)–(g) of the
(sEH, SA, QED) models, sampled at one β and binned by the Table 1 thresholds.

Rows (keys of :data:`~sculpt_core.domains.molecules.metrics.PAPER_TABLE1`):

- ``p_seh``, ``p_sa``, ``p_qed``: the base models alone;
- ``a``–``c``: two observed labels, y = {sEH, SA}, {sEH, QED}, {SA, QED} (the harmonic means);
- ``d``: y = {sEH, SA, QED} (the 3-way harmonic mean);
- ``e``–``g``: the same label three times, y = (i, i, i) (a sharpened base model);
- ``hm`` (not in the paper's table, not sampled by default): the chained harmonic mean ∝ 1 / Σ_i 1/p_i of the
  three models (eq. 8), the "harmonic mean" of the Routing-by-Reaching paper; reaching only (it is not a label
  posterior, so classifier guidance cannot express it).

The base models must be given in the order (sEH, SA, QED): label i is the i-th model. Every figure here is
computed from samples; nothing is read from the paper except the comparison columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from sculpt_core.core import algebra as A
from sculpt_core.domains.molecules.compose import DEFAULT_U_SOURCE, MolBases, composed_policy
from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.sampling import sample_molecules
from sculpt_core.domains.molecules.metrics import PAPER_TABLE1, PAPER_TABLE1_LABELS, TABLE1_NAMES, TABLE1_THRESHOLDS, diversity, reward_summary, table1_bins, uniqueness


@dataclass(frozen=True)
class Table1Row:
    """One row: a base model (``base`` = its 0-based index), an observed label tuple ``labels`` (1-based) or the
    chained harmonic mean of all the models (``chained_hm``)."""

    key: str
    base: int | None = None
    labels: tuple[int, ...] | None = None
    chained_hm: bool = False

    def composition(self, n_models: int) -> A.Composition | None:
        if self.chained_hm:
            return A.chained_harmonic_mean(n_models)
        return None if self.labels is None else A.conditioning(self.labels, n_models)

    @property
    def label(self) -> str:
        return PAPER_TABLE1_LABELS.get(self.key, "SEH⊗SA⊗QED (chained harmonic mean)" if self.chained_hm else self.key)


TABLE1_ROWS: dict[str, Table1Row] = {
    "p_seh": Table1Row("p_seh", base=0),
    "p_sa": Table1Row("p_sa", base=1),
    "p_qed": Table1Row("p_qed", base=2),
    "a": Table1Row("a", labels=(1, 2)),
    "b": Table1Row("b", labels=(1, 3)),
    "c": Table1Row("c", labels=(2, 3)),
    "d": Table1Row("d", labels=(1, 2, 3)),
    "e": Table1Row("e", labels=(1, 1, 1)),
    "f": Table1Row("f", labels=(2, 2, 2)),
    "g": Table1Row("g", labels=(3, 3, 3)),
    "hm": Table1Row("hm", chained_hm=True),
}


def row_policy(bases: MolBases, row: Table1Row, method: str, classifier: Any = None, u_source: str = DEFAULT_U_SOURCE,
               scoring: str = "fast", top_k: int = 64):
    """The sampler of one Table 1 row: the base model itself, or the composition by ``method``."""
    if bases.m != len(TABLE1_NAMES):
        raise SculptError(f"Table 1 needs the three base models (sEH, SA, QED) in that order, got {bases.m}")
    if row.base is not None:
        return bases.models[row.base].policy(bases.beta)
    return composed_policy(bases, row.composition(bases.m), method, classifier=classifier, u_source=u_source,
                           scoring=scoring, top_k=top_k)


def summarize_sample_set(smiles: Sequence[str], rewards: np.ndarray, top_k: int = 10,
                         diversity_max: int = 1000) -> dict[str, Any]:
    """Table 1 bins, per-reward statistics with the top-``k`` mean, uniqueness and diversity (on at most
    ``diversity_max`` molecules, the first ones, since it is O(N²)) of one sample set; ``rewards`` is
    ``[N, 3]`` in the order (sEH, SA, QED)."""
    bins = table1_bins(rewards)
    return {
        "n": len(smiles),
        "table1_percent": list(bins["percent"]),
        "fraction_all_high": round(float(bins["fraction_all_high"]), 4),
        "high_frac": {name: round(float((rewards[:, j] >= t).mean()), 4)
                      for j, (name, t) in enumerate(zip(TABLE1_NAMES, TABLE1_THRESHOLDS))},
        "rewards": {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}
                    for name, stats in reward_summary(rewards, TABLE1_NAMES, top_k).items()},
        "uniqueness": round(float(uniqueness(list(smiles))), 4),
        "diversity": round(float(diversity(list(smiles[:diversity_max]))), 4),
    }


def run_table1(
    bases: MolBases,
    n: int,
    method: str = "classifier",
    classifier: Any = None,
    rows: Sequence[str] = tuple(TABLE1_ROWS),
    u_source: str = DEFAULT_U_SOURCE,
    scoring: str = "fast",
    top_k: int = 64,
    seed: int = 0,
    batch_size: int = 128,
    score: Callable[[list[str]], np.ndarray] | None = None,
    progress: Callable[[str, dict], None] | None = None,
) -> dict[str, Any]:
    """Sample ``n`` valid molecules per row and summarise them next to the paper's row.

    ``score(smiles) -> [N, 3]`` rewards (sEH, SA, QED); default: the sEH proxy, SA and QED
    (:func:`~sculpt_core.domains.molecules.rewards.score_smiles`; needs the proxy weights). Returns
    ``{"rows": {key: {...}}, "samples": {key: [smiles]}}``; each row has the label, ours, the paper's
    percentages, the sampling rate and the seconds spent."""
    unknown = [r for r in rows if r not in TABLE1_ROWS]
    if unknown:
        raise SculptError(f"unknown Table 1 rows {unknown}; known: {', '.join(TABLE1_ROWS)}")
    score = score or _score_three
    out: dict[str, Any] = {"rows": {}, "samples": {}}
    for i, key in enumerate(rows):
        row = TABLE1_ROWS[key]
        policy = row_policy(bases, row, method, classifier, u_source, scoring, top_k)
        got = sample_molecules(policy, n, seed=seed + i, batch_size=batch_size, env=bases.env)
        rewards = score(got.smiles)
        summary = summarize_sample_set(got.smiles, rewards)
        paper = PAPER_TABLE1.get(key)
        summary |= {"label": row.label, "method": "base" if row.base is not None else method,
                    "scoring": scoring if row.base is None and method == "classifier" else None,
                    "paper_percent": list(paper) if paper else None,
                    "paper_all_high": paper[-1] / 100.0 if paper else None,
                    "mol_per_s": round(got.molecules_per_s, 1), "sample_seconds": round(got.seconds, 1),
                    "invalid_dropped": got.n_invalid}
        out["rows"][key] = summary
        out["samples"][key] = got.smiles
        if progress is not None:
            progress(key, summary)
    return out


def _score_three(smiles: list[str]) -> np.ndarray:
    from sculpt_core.domains.molecules.rewards import score_smiles

    recs = score_smiles(smiles, seh=True)
    return np.array([[r["seh_reward"], r["sa_reward"], r["qed"]] for r in recs], dtype=np.float64)


__all__ = ["TABLE1_ROWS", "Table1Row", "row_policy", "run_table1", "summarize_sample_set"]
