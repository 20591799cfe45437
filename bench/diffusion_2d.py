"""Benchmark of the exact 2-D diffusion core at full size. Prints ONE JSON line.

For each case: n = 20000 particles, 500 Euler–Maruyama steps of the VE SDE (σ = 25), binned L1 on [−3.5, 3.5]²
with 40×40 bins against the exact per-bin target, its noise floor (mean L1 of n exact draws, 5 repeats), the
fraction outside, EMD on 2000-point subsets with its floor, and the wall time. Cases: the oracle (exact
composed score) on the harmonic mean, the contrast at α = 0.3, y = (1, 2, 3) over three bases and a mixture of
invented specs (the ones the tests use), score-sum on the harmonic mean (the shortcut, expected off), SuperDiff
OR on the mixture and AND scored against the harmonic mean, and the oracle and score-sum on ring ⊗ band.
The JSON has ``ok``: every oracle case within 1.25 × floor + 0.02.

Usage: python bench/diffusion_2d.py [--n 20000] [--steps 500] [--threads 0] [--cases name,...]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sculpt_core.core import algebra as A
from sculpt_core.domains.diffusion.metrics import evaluate
from sculpt_core.domains.diffusion.sampling import sample_method
from sculpt_core.domains.diffusion.spec import load_spec, spec_from_dict

TILT = {"weights": [0.6, 0.4], "means": [[-1.0, 0.5], [1.2, -0.3]],
        "covs": [[[0.5, 0.2], [0.2, 0.3]], [[0.25, -0.1], [-0.1, 0.6]]]}
TRIO = {"weights": [1, 1, 1], "means": [[0.0, 1.5], [0.5, -1.0], [-1.5, -1.0]], "stds": [0.45, 0.6, 0.4]}
PAIR = {"weights": [2, 1], "means": [[1.0, 1.0], [-1.0, -0.5]], "stds": [0.7, 0.5]}


def cases() -> dict:
    inv = [spec_from_dict(TILT, "tilt"), spec_from_dict(TRIO, "trio"), spec_from_dict(PAIR, "pair")]
    rb = [load_spec("ring"), load_spec("band")]
    return {
        "oracle_hm": (inv[:2], A.harmonic_mean(), "oracle"),
        "oracle_contrast_0.3": (inv[:2], A.contrast(alpha=0.3), "oracle"),
        "oracle_y123": (inv, A.conditioning((1, 2, 3), 3), "oracle"),
        "oracle_mixture": (inv, A.mixture([1.0, 2.0, 1.0]), "oracle"),
        "score_sum_hm": (inv[:2], A.harmonic_mean(), "score-sum"),
        "superdiff_or_mixture": (inv, A.mixture([1.0, 2.0, 1.0]), "superdiff"),
        "superdiff_and_vs_hm": (inv[:2], A.harmonic_mean(), "superdiff"),
        "oracle_ring_hm_band": (rb, A.harmonic_mean(), "oracle"),
        "score_sum_ring_hm_band": (rb, A.harmonic_mean(), "score-sum"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cases", default=None, help="comma-separated subset")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table = cases()
    names = args.cases.split(",") if args.cases else list(table)
    out: dict = {"n": args.n, "steps": args.steps, "sampler": "em", "extent": 3.5, "bins": 40, "cases": {}}
    ok = True
    for name in names:
        specs, comp, method = table[name]
        t0 = time.perf_counter()
        x, exact = sample_method(specs, comp, method, args.n, args.steps, "em", seed=0)
        seconds = time.perf_counter() - t0
        fig = evaluate(x, exact, 3.5, 40)
        fig = {k: v for k, v in fig.items() if k not in ("n", "extent", "bins")}
        fig["ratio_to_floor"] = round(fig["l1"] / fig["l1_floor"], 3)
        fig["seconds"] = round(seconds, 1)
        if method == "oracle":
            ok = ok and fig["l1"] <= 1.25 * fig["l1_floor"] + 0.02
        out["cases"][name] = {"bases": [s.name for s in specs], "composition": comp.describe(), "method": method, **fig}
    out["ok"] = ok
    print(json.dumps(out))


if __name__ == "__main__":
    main()
