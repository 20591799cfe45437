"""Benchmark of the composition methods on the zoo's learned 2-D diffusion models. Prints ONE JSON line.

- ``table``: for ring ⊗ band (the shipped learned ring and band) and every operator (harmonic mean y = (1, 2),
  contrast y = (1, 1), reverse contrast y = (2, 2), contrast at α = 0.3, an equal mixture) and for
  y = (1, 2, 3) over ring, band, column: binned L1 (40×40 bins on [−3.5, 3.5]²) with its noise floor, the
  ratio, EMD with its floor and the seconds of each method side by side — ``oracle`` (exact composed score of
  the specs), ``classifier`` (learned scores + the zoo's guidance classifier, γ = 1), ``superdiff`` (learned
  scores, training-free; only the mixture and the AND of two models) and ``score-sum`` (learned scores);
  n = 20000, 500 Euler–Maruyama steps. ``ok_classifier``: classifier L1 ≤ 2 × floor + 0.05 on every
  ring ⊗ band operator.
- ``speed``: 20000 particles × 500 steps with one learned score MLP (the ``base`` method's reverse SDE alone),
  and, as the baseline of the same run, the same steps with the exact closed-form score of its spec; wall and
  CPU seconds (the process's CPU time over all its threads: what the run costs when other work shares the cores);
  float32 and bfloat16 hidden layers (``--precision bf16``), with the ring's own L1 / floor at each.
- ``classifier_training``: a fresh ring ⊗ band classifier (two labels, not α-conditioned) trained for
  ``--train-steps`` steps: its seconds, posterior error and the harmonic mean's L1 with it (to the target or not).

Usage: python bench/diffusion_guidance.py [--n 20000] [--steps 500] [--threads 2] [--train-steps 1000]
       [--skip table,speed,training]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from sculpt_core.core import algebra as A
from sculpt_core.domains.diffusion.compose import BaseField, ExactScoreModel
from sculpt_core.domains.diffusion.metrics import evaluate
from sculpt_core.domains.diffusion.model import data_scale
from sculpt_core.domains.diffusion.sampling import make_generator, reverse_sample, sample_method
from sculpt_core.domains.diffusion.sde import SDE
from sculpt_core.domains.diffusion.train_classifier import (
    DiffusionClassifierTrainConfig,
    posterior_error,
    train_diffusion_classifier,
)
from sculpt_core.domains.diffusion.zoo import find_diffusion_classifier, load_diffusion_classifier, resolve_base

OPERATORS = {
    "hm": A.harmonic_mean(),
    "contrast": A.contrast(),
    "reverse_contrast": A.reverse_contrast(),
    "contrast_alpha_0.3": A.contrast(alpha=0.3),
    "mixture": A.mixture([1.0, 1.0]),
}


def run(specs, models, comp, method, n, steps, classifier=None) -> dict:
    t0 = time.perf_counter()
    x, exact = sample_method(specs, comp, method, n, steps, "em", seed=0, models=None if method == "oracle" else models,
                             classifier=classifier)
    seconds = time.perf_counter() - t0
    fig = evaluate(x, exact, 3.5, 40)
    print(f"{comp.describe()} {method}: L1 {fig['l1']:.4f} (floor {fig['l1_floor']:.4f}) {seconds:.1f} s",
          file=sys.stderr, flush=True)
    return {"l1": fig["l1"], "l1_floor": fig["l1_floor"], "ratio": round(fig["l1"] / fig["l1_floor"], 3),
            "emd": fig["emd"], "emd_floor": fig["emd_floor"], "seconds": round(seconds, 2)}


def superdiff_applies(comp) -> bool:
    return comp.kind == "mixture" or (comp.kind == "labels" and comp.labels in ((1, 2), (2, 1)) and comp.alpha is None)


def table(n: int, steps: int) -> tuple[dict, bool]:
    out, ok = {}, True
    rb = [resolve_base(b) for b in ("ring", "band")]
    specs, models = [b.spec for b in rb], [b.model for b in rb]
    clf = load_diffusion_classifier(find_diffusion_classifier(["ring", "band"]))
    for name, comp in OPERATORS.items():
        row = {"composition": comp.describe()}
        for method in ("oracle", "classifier", "superdiff", "score-sum"):
            if method == "superdiff" and not superdiff_applies(comp):
                continue
            if method == "score-sum" and comp.kind == "mixture":
                continue
            row[method] = run(specs, models, comp, method, n, steps, clf if method == "classifier" else None)
        c = row["classifier"]
        ok = ok and c["l1"] <= 2 * c["l1_floor"] + 0.05
        out[f"ring_band_{name}"] = row
    rbc = [resolve_base(b) for b in ("ring", "band", "column")]
    clf3 = load_diffusion_classifier(find_diffusion_classifier(["ring", "band", "column"]))
    comp = A.conditioning((1, 2, 3), 3)
    row = {"composition": comp.describe()}
    for method in ("oracle", "classifier", "score-sum"):
        row[method] = run([b.spec for b in rbc], [b.model for b in rbc], comp, method, n, steps,
                          clf3 if method == "classifier" else None)
    out["ring_band_column_y123"] = row
    return out, ok


def speed(n: int, steps: int) -> dict:
    base = resolve_base("ring")
    gen = make_generator(0, "cpu")
    x1 = SDE.prior_sample(n, gen)
    res = {}
    for name, model in (("learned_mlp", base.model), ("learned_mlp_bf16", base.model.with_precision("bf16")),
                        ("baseline_exact_score", ExactScoreModel(base.spec))):
        t0, c0 = time.perf_counter(), time.process_time()
        reverse_sample(BaseField(model), x1, steps, "em", SDE, gen)
        res[f"{name}_seconds"] = round(time.perf_counter() - t0, 2)
        res[f"{name}_cpu_seconds"] = round(time.process_time() - c0, 2)  # all threads: robust to other load
    for precision in ("fp32", "bf16"):  # what the precision costs in accuracy: the base's own L1 / floor
        fig = run([base.spec], [base.model.with_precision(precision)], A.mixture([1.0]), "base", n, steps)
        res[f"ring_base_l1_over_floor_{precision}"] = fig["ratio"]
    res.update({"n": n, "steps": steps, "target_seconds": 5.0})
    return res


def training(train_steps: int, n: int, steps: int) -> dict:
    rb = [resolve_base(b) for b in ("ring", "band")]
    cfg = DiffusionClassifierTrainConfig(steps=train_steps, n_labels=2, seed=11)
    t0 = time.perf_counter()
    clf = train_diffusion_classifier([b.model for b in rb], cfg, base_names=["ring", "band"],
                                     sigma_data=max(data_scale(b.spec) for b in rb))
    seconds = time.perf_counter() - t0
    err = posterior_error(clf, [b.spec for b in rb])
    hm = run([b.spec for b in rb], [b.model for b in rb], A.harmonic_mean(), "classifier", n, steps, clf)
    return {"steps": train_steps, "seconds": round(seconds, 1), "pool_seconds": clf.meta["pool_seconds"],
            "posterior_tv_y1_mean": err["posterior_tv_y1_mean"], "posterior_tv_joint_mean": err["posterior_tv_joint_mean"],
            "hm": hm, "reached_target": hm["l1"] <= 2 * hm["l1_floor"] + 0.05}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: table, speed, training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    out: dict = {"n": args.n, "steps": args.steps, "threads": args.threads, "sampler": "em", "extent": 3.5, "bins": 40}
    if "speed" not in skip:
        out["speed"] = speed(20000, 500)
    if "table" not in skip:
        out["table"], out["ok_classifier"] = table(args.n, args.steps)
    if "training" not in skip:
        out["classifier_training"] = training(args.train_steps, args.n, args.steps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
