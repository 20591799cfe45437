"""Distribution maps, measured (``python bench/maps.py``): prints ONE JSON line.

* ``mol_emd``: exact EMD between two 1000-molecule sets (shipped sEH and SA models at β = 32, seeded) from SMILES:
  fingerprints, the Tanimoto cost and ``ot.emd2`` (target ≤ 5 s). Baseline: the paper's analysis recipe (scipy
  sparse fingerprint products for Tanimoto, ``ot.emd2([], [], C)`` with POT's default iteration cap) on the same
  sets; and Sinkhorn (reg 0.03) with its relative error against the exact value.
* ``grid_map``: a 20-distribution map of the shipped circle1/circle2 models (2 bases, 8 label compositions, an α
  sweep of the harmonic mean at α = 0.05 … 0.95; exact oracle distributions), its 190 exact EMDs and the t-SNE
  embedding with the paper's settings, end to end (target ≤ 5 s); the EMDs again in one process. Baselines: the
  full 1024 × 1024 transport problem per pair (``ot.emd2`` on the whole tables), timed on 10 pairs and scaled
  to 190; scikit-learn's own exact t-SNE on the same matrix (the map uses the vectorised copy in
  ``core/tsne.py``), with the largest coordinate difference between the two maps.
* ``page``: the Distribution Map page opening on the shipped Fig. 4 map (``AppTest``, first and warm open;
  target ≤ 2 s). Baseline: the Home page opened by the same harness.

Wall and CPU seconds are both reported with the load average: on a shared machine wall time includes waiting.
``idle_machine_estimate_s`` of the grid map = CPU seconds of the main process + the EMD workers' CPU seconds
divided by the number of workers (what the wall time would be with the cores to ourselves).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, round(time.perf_counter() - t0, 3), round(time.process_time() - c0, 3)


def paper_recipe_emd(smiles_a: list[str], smiles_b: list[str]) -> float:
    """The paper's analysis recipe: sparse fingerprint matrices, Tanimoto by a sparse product, ``ot.emd2`` with
    uniform weights given as ``[]`` and POT's default ``numItermax``."""
    import warnings

    import numpy as np
    import ot
    import scipy.sparse as sp
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=3, fpSize=2048)

    def fps(smiles: list[str]):
        rows, cols = [], []
        for i, s in enumerate(smiles):
            on = list(gen.GetFingerprint(Chem.MolFromSmiles(s)).GetOnBits())
            rows += [i] * len(on)
            cols += on
        return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(smiles), 2048))

    fa, fb = fps(smiles_a), fps(smiles_b)
    inter = (fa @ fb.T).toarray()
    union = np.asarray(fa.sum(1)) + np.asarray(fb.sum(1)).T - inter
    union[union == 0] = 1
    cost = np.clip(1.0 / (inter / union + 1e-8) - 1.0, 0.0, 100.0).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(ot.emd2([], [], cost))


def bench_mol(n: int) -> dict:
    import torch

    from sculpt_core.domains.molecules.maps import emd_matrix
    from sculpt_core.domains.molecules.sampling import sample_molecules
    from sculpt_core.domains.molecules.zoo import load_mol_model

    sets = []
    for name, seed in (("seh", 11), ("sa", 12)):
        model = load_mol_model(name)
        sets.append(sample_molecules(model.policy(32.0), n, seed=seed, batch_size=128, env=model.env).smiles)
    torch.set_num_threads(1)
    emd_matrix(sets[:1] + [sets[0][:20]], workers=1)  # warm imports
    d, wall, cpu = _timed(lambda: emd_matrix(sets, workers=1))
    exact = float(d[0, 1])
    base, b_wall, b_cpu = _timed(lambda: paper_recipe_emd(*sets))
    sk, s_wall, _ = _timed(lambda: float(emd_matrix(sets, solver="sinkhorn", reg=0.03, workers=1)[0, 1]))
    return {"n": n, "emd": round(exact, 4), "seconds": wall, "cpu_seconds": cpu, "target_s": 5.0,
            "baseline_paper_recipe": {"emd": round(base, 4), "seconds": b_wall, "cpu_seconds": b_cpu},
            "sinkhorn_reg_0.03": {"emd": round(sk, 4), "relative_error": round((sk - exact) / exact, 4),
                                  "seconds": s_wall}}


def bench_grid() -> dict:
    import numpy as np
    import ot

    from sculpt_core.core.maps import embed, parse_alphas, plan_items
    from sculpt_core.domains.grid.maps import cell_cost, emd_matrix, map_distributions

    labels = [(1, 2), (1, 1), (2, 2), (1, 1, 1), (2, 2, 2), (1, 1, 2), (1, 2, 2), (1, 1, 1, 1)]
    items = plan_items(["circle1", "circle2"], labels, (1, 2), parse_alphas("0.05:0.95:0.1"), "oracle")
    map_distributions(["circle1", "circle2"], items[:2])  # load the models and warm the imports
    emd_matrix(map_distributions(["circle1", "circle2"], items[:3]), workers=1)

    def whole_map():
        dists = map_distributions(["circle1", "circle2"], items)
        d = emd_matrix(dists)
        return dists, d, embed(d, "tsne", 0)

    import resource

    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    (dists, d, emb), wall, cpu = _timed(whole_map)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    d1, w1, c1 = _timed(lambda: emd_matrix(dists, workers=1))
    cost = cell_cost((32, 32))
    pairs = [(i, j) for i in range(len(dists)) for j in range(i + 1, len(dists))][::19][:10]
    full, fw, _ = _timed(lambda: [ot.emd2(dists[i].ravel(), dists[j].ravel(), cost, numItermax=10**8) for i, j in pairs])
    err = max(abs(v - d[i, j]) for v, (i, j) in zip(full, pairs))
    sk_emb, sk_wall, sk_cpu = _timed(lambda: embed(d, "tsne", 0, engine="sklearn"))
    from sculpt_core.core.maps import default_workers

    workers = default_workers()
    return {"k": len(items), "pairs": len(items) * (len(items) - 1) // 2, "seconds": wall, "cpu_seconds_main": cpu,
            "workers": workers, "cpu_seconds_workers": round(workers_cpu, 3),
            "idle_machine_estimate_s": round(cpu + workers_cpu / max(workers, 1), 2), "target_s": 5.0, "tsne_seconds": round(emb.seconds, 3), "tsne_iterations": emb.params["iterations_run"],
            "baseline_sklearn_tsne": {"seconds": sk_wall, "cpu_seconds": sk_cpu,
                                      "iterations": sk_emb.params["iterations_run"],
                                      "max_abs_difference": float(f"{np.abs(sk_emb.coords - emb.coords).max():.2e}"),
                                      "same_kl": sk_emb.params["kl_divergence"] == emb.params["kl_divergence"]},
            "emd_one_process": {"seconds": w1, "cpu_seconds": c1, "same_matrix": bool(np.array_equal(d1, d))},
            "baseline_full_tables": {"seconds_per_pair": round(fw / len(pairs), 4),
                                     "seconds_for_190_pairs": round(fw / len(pairs) * 190, 1),
                                     "max_abs_difference": float(f"{err:.2e}")}}


def bench_page() -> dict:
    from streamlit.testing.v1 import AppTest

    def open_page(page: str) -> float:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        t0 = time.perf_counter()
        at.switch_page(page).run()
        if at.exception:
            raise SystemExit(f"{page}: {at.exception[0].value}")
        return round(time.perf_counter() - t0, 3)

    first = open_page("pages/distribution_map.py")
    warm = [open_page("pages/distribution_map.py") for _ in range(3)]
    home = [open_page("pages/home.py") for _ in range(3)]
    return {"first_open_s": first, "warm_open_s": sorted(warm)[1], "target_s": 2.0,
            "baseline_home_page_s": sorted(home)[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="molecules per set for the molecule EMD")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: mol, grid, page")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    out: dict = {"bench": "maps", "cpu_count": os.cpu_count(), "load_avg_start": round(os.getloadavg()[0], 2)}
    if "page" not in skip:  # first, before anything else is imported in this process
        out["page"] = bench_page()
        print(f"page: {out['page']}", file=sys.stderr, flush=True)
    if "grid" not in skip:
        out["grid_map"] = bench_grid()
        print(f"grid: {out['grid_map']}", file=sys.stderr, flush=True)
    if "mol" not in skip:
        out["mol_emd"] = bench_mol(args.n)
    out["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
