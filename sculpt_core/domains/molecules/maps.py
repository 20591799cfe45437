"""Molecule distribution maps: earth mover's distances between sample sets and the paper's Fig. 4.

* Ground cost between two molecules: ``1/(Tanimoto + 1e-8) − 1`` clipped to [0, 100] on Morgan bit fingerprints
  (radius 3, 2048 bits), uniform weights, exact ``ot.emd2`` (:mod:`~sculpt_core.domains.molecules.metrics`,
  :func:`sculpt_core.core.maps.emd`); Sinkhorn as an option.
* Sample sets: a CSV with a ``smiles`` column or a ``.smi`` file (``mol emd --in a.csv,b.csv``), or sampled from
  the shipped models (:func:`sample_distribution`): a base model, or a label composition y = (i, j, …) (with α
  for two bases) by classifier guidance, reaching or the ensemble.
* The paper's Fig. 4 (:data:`FIG4_DISTRIBUTIONS`, 13 distributions: the 3 bases, y = (i, j), y = (1, 2, 3),
  y = (i, i) and y = (i, i, i)) at β = 32 by classifier guidance with the shipped 3-label classifier:
  :func:`build_fig4` samples them, computes the 13×13 matrix and stores it (no SMILES) in
  ``assets/maps/mol_fig4.json`` with a manifest entry (``python -m sculpt_core zoo build-mol-map``).

Measured on a 2-core machine shared with two other jobs (``bench/maps.py``; one process): two 1000-molecule sets
1.4 s from SMILES (0.9 s CPU). Two 5000-molecule sets (the paper's size): 6.5 s fingerprints, 6.7 s the
5000×5000 Tanimoto cost (200 MB of float64), 29 s the network simplex, +840 MB peak memory (load average 4–5).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sculpt_core.core.maps import MapItem, Progress, emd_command, pairwise_matrix, transport
from sculpt_core.errors import SculptError

FIG4_FILE = "maps/mol_fig4.json"
MANIFEST_SECTION = "maps"
FIG4_KEY = "mol_fig4"

# The paper's full 13×13 EMD matrix (Table G.5; rows/columns in FIG4_DISTRIBUTIONS order), as cached by the
# authors' analysis script (compositional-sculpting, gflownet/experiment_analysis/fragment/
# composition3_indep_beta32/pairwise_emd.pkl), rounded to 3 decimals. ~5000 molecules per set, POT's default
# numItermax (1e5).
PAPER_FIG4_EMD: tuple[tuple[float, ...], ...] = (
    (0.000, 4.416, 5.774, 3.394, 4.197, 4.883, 4.095, 2.453, 4.426, 5.731, 2.459, 4.444, 5.725),
    (4.416, 0.000, 5.880, 3.261, 5.147, 4.595, 4.199, 4.391, 2.546, 5.901, 4.389, 2.551, 5.886),
    (5.774, 5.880, 0.000, 5.403, 4.025, 3.848, 4.200, 5.798, 5.876, 3.209, 5.797, 5.898, 3.205),
    (3.394, 3.261, 5.403, 0.000, 4.251, 4.193, 3.678, 3.398, 3.285, 5.395, 3.392, 3.300, 5.387),
    (4.197, 5.147, 4.025, 4.251, 0.000, 3.796, 3.667, 4.212, 5.163, 3.992, 4.217, 5.192, 4.000),
    (4.883, 4.595, 3.848, 4.193, 3.796, 0.000, 3.647, 4.909, 4.587, 3.876, 4.907, 4.595, 3.872),
    (4.095, 4.199, 4.200, 3.678, 3.667, 3.647, 0.000, 4.117, 4.223, 4.204, 4.123, 4.234, 4.202),
    (2.453, 4.391, 5.798, 3.398, 4.212, 4.909, 4.117, 0.000, 4.413, 5.733, 1.068, 4.431, 5.723),
    (4.426, 2.546, 5.876, 3.285, 5.163, 4.587, 4.223, 4.413, 0.000, 5.878, 4.402, 1.541, 5.870),
    (5.731, 5.901, 3.209, 5.395, 3.992, 3.876, 4.204, 5.733, 5.878, 0.000, 5.754, 5.916, 1.019),
    (2.459, 4.389, 5.797, 3.392, 4.217, 4.907, 4.123, 1.068, 4.402, 5.754, 0.000, 4.434, 5.734),
    (4.444, 2.551, 5.898, 3.300, 5.192, 4.595, 4.234, 4.431, 1.541, 5.916, 4.434, 0.000, 5.901),
    (5.725, 5.886, 3.205, 5.387, 4.000, 3.872, 4.202, 5.723, 5.870, 1.019, 5.734, 5.901, 0.000),
)


def _fig4() -> tuple[MapItem, ...]:
    names = ("SEH", "SA", "QED")
    out = [MapItem(n, f"p_{n}", base=i) for i, n in enumerate(names)]
    for key, labels in (("SEH,SA", (1, 2)), ("SEH,QED", (1, 3)), ("SA,QED", (2, 3)), ("SEH,SA,QED", (1, 2, 3))):
        row = "abcd"[len(out) - 3]
        out.append(MapItem(key, f"({row}) y={{{key}}}", labels=labels))
    for power, mark in ((2, "²"), (3, "³")):
        for i, n in enumerate(names):
            row = f"({'efg'[i]}) " if power == 3 else ""
            out.append(MapItem(f"{n}{mark}", f"{row}y={{{','.join([n] * power)}}}", labels=(i + 1,) * power))
    return tuple(out)


#: The paper's 13 Fig. 4 distributions, in the order of its matrix (Table G.5).
FIG4_DISTRIBUTIONS: tuple[MapItem, ...] = _fig4()
FIG4_BASES = ("seh", "sa", "qed")


def paper_fig4_matrix() -> np.ndarray:
    """The paper's 13×13 EMD matrix as float64."""
    return np.array(PAPER_FIG4_EMD, dtype=np.float64)


# ----- sample sets and distances -----------------------------------------------------------------------------
def read_sample_set(path: str | Path) -> list[str]:
    """SMILES of a CSV (``smiles`` column) or ``.smi`` file; SculptError if unreadable or empty."""
    from sculpt_core.domains.molecules.rewards import read_smiles_file

    return read_smiles_file(path)


def fingerprint_set(smiles: Sequence[str], what: str = "sample set") -> list:
    """Morgan fingerprints (radius 3, 2048 bits) of the valid molecules; SculptError if none is valid."""
    from sculpt_core.domains.molecules.metrics import morgan_fingerprints

    fps = [fp for fp in morgan_fingerprints(list(smiles)) if fp is not None]
    if not fps:
        raise SculptError(f"{what}: no valid molecule among {len(smiles)} SMILES")
    return fps


def emd_matrix(sets: Sequence[Sequence[str]], solver: str = "exact", reg: float = 0.01,
               progress: Progress | None = None, names: Sequence[str] | None = None,
               workers: int | None = None) -> np.ndarray:
    """Symmetric ``(k, k)`` EMD matrix between molecule sample sets (fingerprints computed once per set;
    ``workers``: processes, see ``core.maps.pairwise_matrix``)."""
    from sculpt_core.domains.molecules.metrics import emd_cost_matrix

    labels = list(names) if names is not None else [f"set {i + 1}" for i in range(len(sets))]
    fps = [fingerprint_set(s, labels[i]) for i, s in enumerate(sets)]
    return pairwise_matrix(len(fps), lambda i, j: transport(emd_cost_matrix(fps[i], fps[j]), solver=solver, reg=reg),
                           progress, workers)


def sample_distribution(bases: Any, dist: MapItem, n: int, seed: int, classifier: Any = None,
                        scoring: str = "fast", u_source: str = "trajectory", batch_size: int = 128,
                        progress: Callable[[int, int], None] | None = None):
    """``n`` valid molecules of one distribution over prepared bases
    (:func:`~sculpt_core.domains.molecules.compose.prepare_mol_bases`): a :class:`MolSampleSet`."""
    from sculpt_core.domains.molecules.compose import composed_policy
    from sculpt_core.domains.molecules.sampling import sample_molecules

    if dist.base is not None:
        if not 0 <= dist.base < bases.m:
            raise SculptError(f"{dist.label}: base {dist.base + 1} is not among the {bases.m} models")
        policy = bases.models[dist.base].policy(bases.beta)
    else:
        policy = composed_policy(bases, dist.composition(bases.m), dist.method, classifier=classifier,
                                 u_source=u_source, scoring=scoring)
    return sample_molecules(policy, n, seed=seed, batch_size=batch_size, env=bases.env, progress=progress)


# ----- the paper's Fig. 4 ----------------------------------------------------------------------------------
def build_fig4(n: int = 2000, seed: int = 0, beta: float = 32.0, scoring: str = "fast",
               work_dir: str | Path | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Sample the 13 Fig. 4 distributions from the shipped sEH, SA and QED models (``n`` valid molecules each,
    seed ``seed + index``; compositions by classifier guidance with the shipped 3-label classifier) and compute
    their exact EMD matrix. ``work_dir`` keeps each set's SMILES so an interrupted build resumes. Returns the
    JSON record :func:`save_fig4` stores (matrix, paper matrix, sizes, seeds, methods, timings; no SMILES)."""
    import os

    import torch

    from sculpt_core.domains.molecules.compose import prepare_mol_bases
    from sculpt_core.domains.molecules.zoo import load_classifier_for, load_mol_model

    say = log or (lambda msg: None)
    models = [load_mol_model(name) for name in FIG4_BASES]
    bases = prepare_mol_bases(models, beta)
    classifier, clf_bases, clf_meta = load_classifier_for(models, beta, None)
    work = Path(work_dir) if work_dir else None
    sets: list[list[str]] = []
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for i, dist in enumerate(FIG4_DISTRIBUTIONS):
        cached = work / f"{i:02d}_{n}_{seed + i}.smi" if work else None
        t0 = time.perf_counter()
        if cached is not None and cached.is_file():
            smiles = cached.read_text().split()
            sample_seconds, trajectories = None, None
        else:
            got = sample_distribution(bases, dist, n, seed + i, classifier, scoring)
            smiles, sample_seconds, trajectories = got.smiles, round(got.seconds, 1), got.n_trajectories
            if cached is not None:
                from sculpt_core.core.io import write_text

                write_text(cached, "\n".join(smiles) + "\n")
        sets.append(smiles)
        rows.append({**dist.spec(), "n": len(smiles), "seed": seed + i, "trajectories": trajectories,
                     "sample_seconds": sample_seconds, "scoring": scoring if dist.base is None else None})
        say(f"{dist.key}: {len(smiles)} molecules in {time.perf_counter() - t0:.0f} s")
    t_emd = time.perf_counter()
    matrix = emd_matrix(sets, progress=lambda d, t, left: say(f"EMD pair {d}/{t}, ~{left:.0f} s left")
                        if d % 13 == 0 or d == t else None)
    emd_seconds = time.perf_counter() - t_emd
    return {
        "title": "Paper Fig. 4: 13 distributions of the shipped sEH, SA, QED models at β = 32",
        "distributions": rows, "labels": [d.label for d in FIG4_DISTRIBUTIONS],
        "keys": [d.key for d in FIG4_DISTRIBUTIONS], "matrix": np.round(matrix, 6).tolist(),
        "paper_matrix": [list(r) for r in PAPER_FIG4_EMD],
        "paper_note": "Garipov et al. 2023, Table G.5 / Fig. 4: ~5000 molecules per set, ot.emd2 with POT's "
                      "default numItermax",
        "settings": {"n_per_set": n, "seed": seed, "beta": beta, "method": "classifier", "scoring": scoring,
                     "bases": [m.name for m in models], "base_fingerprints": [m.policy_fingerprint() for m in models],
                     "classifier": "+".join(clf_bases), "classifier_steps": clf_meta.get("steps"),
                     "ground_cost": "clip(1/(Tanimoto+1e-8) - 1, 0, 100), Morgan r=3 2048 bits",
                     "solver": "ot.emd2 (exact, numItermax = max(1e5, 50 n m))", "weights": "uniform"},
        "timings": {"sample_seconds": round(sum(r["sample_seconds"] or 0 for r in rows), 1),
                    "emd_seconds": round(emd_seconds, 1), "emd_pairs": len(sets) * (len(sets) - 1) // 2,
                    "total_seconds": round(time.perf_counter() - t_all, 1), "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count()},
    }


def fig4_embeddings(record: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """t-SNE (the paper's settings) and MDS coordinates of our and the paper's matrix at ``seed``, stored with the
    record so the page opens without computing them: ``{"ours"|"paper": {"tsne"|"mds": {params, coords}}}``."""
    from sculpt_core.core.maps import embed

    out: dict[str, Any] = {}
    for source, key in (("ours", "matrix"), ("paper", "paper_matrix")):
        out[source] = {}
        for method in ("tsne", "mds"):
            e = embed(np.asarray(record[key], dtype=np.float64), method, seed)
            out[source][method] = {**e.figures(), "coords": np.round(e.coords, 6).tolist()}
    return out


def fig4_path() -> Path:
    """Where the shipped Fig. 4 map lives (``assets/maps/mol_fig4.json``)."""
    from sculpt_core.core.zoo import assets_dir

    return assets_dir() / FIG4_FILE


def save_fig4(record: dict[str, Any]) -> Path:
    """Write the record atomically and list it in the manifest (section ``maps``)."""
    from sculpt_core.core.io import write_json
    from sculpt_core.core.zoo import update_manifest

    path = write_json(fig4_path(), record)
    s = record["settings"]
    update_manifest(MANIFEST_SECTION, FIG4_KEY, {
        "file": FIG4_FILE, "domain": "molecules", "k": len(record["labels"]), "n_per_set": s["n_per_set"],
        "seed": s["seed"], "beta": s["beta"], "method": s["method"], "scoring": s["scoring"],
        "seconds": record["timings"]["total_seconds"]})
    return path


def load_fig4() -> dict[str, Any] | None:
    """The shipped Fig. 4 record, or None when it has not been built; SculptError if it is corrupt."""
    from sculpt_core.core.io import read_json

    path = fig4_path()
    data = read_json(path, lambda: None)
    if data is None:
        return None
    try:
        matrix = np.asarray(data["matrix"], dtype=np.float64)
        ok = matrix.shape == (len(data["labels"]), len(data["labels"]))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise SculptError(f"{path} is not a distribution map (labels and a square matrix expected)")
    return data


# ----- commands --------------------------------------------------------------------------------------------
def cmd_mol_emd(args: argparse.Namespace) -> dict[str, Any]:
    """``mol emd --in a.csv,b.csv[,…] --out d.npy``: the exact (or Sinkhorn) EMD matrix of sample sets."""
    from sculpt_core.core.cli import parse_list

    paths = parse_list(args.infiles, str, "--in")
    return emd_command(paths, read_sample_set,
                       lambda sets, solver, reg: emd_matrix(sets, solver=solver, reg=reg, names=paths[:len(sets)]),
                       args.out, args.solver, args.reg, "--in", "a.csv,b.csv")


def cmd_zoo_build_mol_map(args: argparse.Namespace) -> dict[str, Any]:
    """``zoo build-mol-map``: rebuild ``assets/maps/mol_fig4.json`` (paper Fig. 4) from the shipped models."""
    import sys

    import torch

    if args.n < 10:
        raise SculptError(f"--n must be at least 10, got {args.n}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.embeddings_only:
        record = load_fig4()
        if record is None:
            raise SculptError(f"no map at {fig4_path()} to add embeddings to; build it first")
    else:
        record = build_fig4(args.n, args.seed, args.beta, args.scoring, args.work_dir,
                            log=lambda msg: print(msg, file=sys.stderr, flush=True))
    record["embeddings"] = fig4_embeddings(record)
    path = save_fig4(record)
    return {"out": str(path), "k": len(record["labels"]), **record["settings"], **record["timings"]}


__all__ = ["FIG4_DISTRIBUTIONS", "PAPER_FIG4_EMD", "build_fig4", "cmd_mol_emd", "emd_matrix",
           "fig4_embeddings", "fingerprint_set", "load_fig4", "paper_fig4_matrix", "read_sample_set",
           "sample_distribution", "save_fig4"]
