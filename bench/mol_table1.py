"""The paper's Table 1 on molecules, measured: prints ONE JSON line.

Samples ``--n`` valid molecules for each of the three base models (sEH, SA, QED at ``--beta``) and for the
compositions (a)–(g) by each method of ``--methods`` (classifier guidance with the shipped 3-label classifier or
``--classifier``; reaching with u_i from the p_F/p_B product along each trajectory, or with ``--u flow`` from the
learned state flows), scores them with the sEH proxy, SA and QED, and reports per row: our Table 1 percentages next
to the paper's, the fraction high in all three rewards, per-reward high fractions and top-10 means, uniqueness,
diversity (mean pairwise Tanimoto distance on the first 1000) and molecules/s. ``--emd`` adds the earth mover's
distances of the paper's selected pairs that these rows cover. ``--rows`` may add ``hm``, the chained harmonic mean
of the three (reaching only). ``--out-dir`` writes each row's samples as CSV (smiles,seh_reward,sa_reward,qed).
``--pair-alphas`` adds the (sEH, SA) pair under its α-conditioned classifier: harmonic mean and both contrasts at
each α (paper Fig. 3), with the fraction of samples high in sEH, in SA and in both.

Needs the sEH proxy weights (``../shared/data/seh_proxy`` or ``SCULPT_SEH_WEIGHTS``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch


from sculpt_core.domains.molecules.compose import prepare_mol_bases
from sculpt_core.domains.molecules.table1 import TABLE1_ROWS, run_table1
from sculpt_core.domains.molecules.metrics import PAPER_EMD, pairwise_emd

# Paper EMD set names → our (method-independent or per-method) rows.
EMD_SETS = {"SEH": "p_seh", "SA": "p_sa", "QED": "p_qed", "SEH,SA": "a", "SEH,SA,QED": "d",
            "SEH³": "e", "SA³": "f", "QED³": "g"}


def pair_rows(models: list, args: argparse.Namespace, alphas: list[float]) -> dict:
    """HM and both contrasts of the first two bases at each α, guided by their shipped α-classifier."""
    import numpy as np

    from sculpt_core.core import algebra as A
    from sculpt_core.domains.molecules.compose import GuidedPolicy
    from sculpt_core.domains.molecules.sampling import sample_molecules
    from sculpt_core.domains.molecules.metrics import TABLE1_NAMES, TABLE1_THRESHOLDS, uniqueness
    from sculpt_core.domains.molecules.zoo import load_classifier_for
    from sculpt_core.domains.molecules.rewards import score_smiles

    bases = prepare_mol_bases(models, args.beta)
    clf, _, meta = load_classifier_for(models, args.beta, args.pair_classifier)
    out: dict = {"bases": [m.name for m in models],
                 "classifier": {k: meta.get(k) for k in ("steps", "seconds", "beta", "alpha_cond", "torch_threads")},
                 "rows": []}
    rewards = [m.meta.get("reward") for m in models]  # p1, p2's own rewards (Table 1 thresholds)
    if any(r not in TABLE1_NAMES for r in rewards):
        raise SystemExit(f"--pair-alphas needs base models trained on {TABLE1_NAMES}, got {rewards}")
    column = {"seh": "seh_reward", "sa": "sa_reward", "qed": "qed"}
    threshold = dict(zip(TABLE1_NAMES, TABLE1_THRESHOLDS))
    ops = {"hm": A.harmonic_mean, "contrast": A.contrast, "reverse_contrast": A.reverse_contrast}
    for alpha in alphas:
        for op, make in ops.items():
            comp = make(alpha)
            got = sample_molecules(GuidedPolicy(bases, comp, clf, args.scoring, top_k=args.top_k), args.n, seed=args.seed,
                                   batch_size=args.batch_size, env=bases.env)
            recs = score_smiles(got.smiles, seh=True)
            r = np.array([[x[column[name]] for name in rewards] for x in recs])
            high = r >= np.array([threshold[name] for name in rewards])
            row = {"composition": comp.describe(), "op": op, "alpha": alpha}
            row |= {f"high_{name}": round(float(high[:, j].mean()), 4) for j, name in enumerate(rewards)}
            row |= {"high_both": round(float(high.all(1).mean()), 4)}
            row |= {f"mean_{name}": round(float(r[:, j].mean()), 4) for j, name in enumerate(rewards)}
            row |= {"uniqueness": round(float(uniqueness(got.smiles)), 4), "mol_per_s": round(got.molecules_per_s, 1)}
            print(row, file=sys.stderr, flush=True)
            out["rows"].append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="seh,sa,qed", help="three zoo names or .pt paths, in the order sEH,SA,QED")
    parser.add_argument("--beta", type=float, default=32.0)
    parser.add_argument("--n", type=int, default=1000, help="valid molecules per row")
    parser.add_argument("--methods", default="classifier,reaching")
    parser.add_argument("--classifier", default=None, help="classifier path or shipped name (default: the shipped one)")
    parser.add_argument("--scoring", choices=["fast", "exact", "topk"], default="fast")
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--u", choices=["trajectory", "flow"], default="trajectory",
                        help="reaching probabilities of the reaching method: learned state flow or p_F/p_B product")
    parser.add_argument("--skip-base", action="store_true", help="do not sample the three base rows")
    parser.add_argument("--rows", default=",".join(k for k in TABLE1_ROWS if TABLE1_ROWS[k].labels is not None),
                        help="composed rows (the base rows are always sampled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--emd", action="store_true", help="EMDs of the paper's selected pairs (first method)")
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--pair-alphas", default="", help="e.g. 0.05,0.5,0.95: the (sEH, SA) α-classifier rows")
    parser.add_argument("--pair-classifier", default=None, help="the pair's classifier (default: the shipped one)")
    parser.add_argument("--skip-table", action="store_true", help="only the --pair-alphas rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sculpt_core.domains.molecules.zoo import load_classifier_for
    from sculpt_core.domains.molecules.zoo import load_mol_model

    models = [load_mol_model(n) for n in args.bases.split(",")]
    bases = prepare_mol_bases(models, args.beta)
    record: dict = {"threads": args.threads, "cpu_count": os.cpu_count(), "load_avg_start": round(os.getloadavg()[0], 2),
                    "beta": args.beta, "n": args.n, "bases": [m.name for m in models],
                    "base_steps": [m.meta.get("steps") for m in models]}
    t0 = time.perf_counter()

    def log(key: str, row: dict) -> None:
        print(f"{key}: {row['table1_percent']} paper {row['paper_percent']} all-high {row['fraction_all_high']} "
              f"{row['mol_per_s']} mol/s", file=sys.stderr, flush=True)

    common = dict(seed=args.seed, batch_size=args.batch_size, progress=log)
    if args.pair_alphas:
        record["pair"] = pair_rows(models[:2], args, [float(a) for a in args.pair_alphas.split(",")])
    if args.skip_table:
        print(json.dumps(record, ensure_ascii=False))
        return
    record["scoring"] = args.scoring if args.scoring != "topk" else f"topk (k = {args.top_k})"
    record["u"] = args.u
    samples: dict = {}
    if not args.skip_base:
        base = run_table1(bases, args.n, rows=("p_seh", "p_sa", "p_qed"), **common)
        record["base"] = base["rows"]
        samples["base"] = base["samples"]
    methods = [m for m in args.methods.split(",") if m]
    composed_rows = tuple(r for r in args.rows.split(",") if r)
    record["methods"] = {}
    for method in methods:
        clf = None
        if method == "classifier":
            clf, _, meta = load_classifier_for(models, args.beta, args.classifier)
            record["classifier"] = {k: meta.get(k) for k in ("steps", "seconds", "beta", "n_labels", "torch_threads",
                                                             "trajectories_sampled")}
        got = run_table1(bases, args.n, method, clf, rows=composed_rows, u_source=args.u, scoring=args.scoring,
                         top_k=args.top_k, **common)
        record["methods"][method] = got["rows"]
        samples[method] = got["samples"]
    if args.emd and methods:
        sets = {}
        for name, key in EMD_SETS.items():
            source = samples.get("base", {}) if TABLE1_ROWS[key].base is not None else samples[methods[0]]
            if key in source:
                sets[name] = source[key]
        names, matrix = pairwise_emd(sets)
        idx = {n: i for i, n in enumerate(names)}
        record["emd"] = {"method": methods[0], "pairs": [
            {"pair": f"{a} | {b}", "ours": round(float(matrix[idx[a], idx[b]]), 3), "paper": v}
            for (a, b), v in PAPER_EMD.items() if a in idx and b in idx]}
    if args.out_dir:
        from sculpt_core.domains.molecules.cli import write_samples_csv
        from sculpt_core.domains.molecules.rewards import score_smiles

        out = Path(args.out_dir)
        for method, rows in samples.items():
            for key, smi in rows.items():
                write_samples_csv(out / f"{method}_{key}.csv", score_smiles(smi, seh=True))
    record["seconds"] = round(time.perf_counter() - t0, 1)
    record["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
