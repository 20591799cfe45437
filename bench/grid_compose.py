"""Benchmark of the composition engine on the grid. Prints ONE JSON line.

- oracle guidance: max L1 to the target over every operator (2 and 3 bases);
- classifier guidance with the shipped classifiers: L1 per paper composition; training time as recorded in the
  manifest (wall time, whatever else ran) and measured here: seconds per step over ``--timing-steps`` steps of
  the same configuration, times the shipped number of steps;
- reaching mixing, linear scalarisation with 2..5 bases: L1 against Σ ω_i Z_i p_i (exact u, learned-flow u);
- harmonic mean circle1 ⊗ circle2: reaching vs classifier vs ensemble;
- time of one composition per method (exact distribution included), against one base-model DP as baseline.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import torch


from sculpt_core.core import algebra as A
from sculpt_core.domains.grid.compose import compose, prepare_bases
from sculpt_core.domains.grid.exact import log_terminal
from sculpt_core.domains.grid.zoo import load_grid_model
from sculpt_core.core.zoo import read_manifest
from sculpt_core.domains.grid.zoo import paper_evaluation_compositions
from sculpt_core.domains.grid.zoo import find_grid_classifier


def median_ms(fn, repeat=10) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 2)


def projected_training_seconds(key: str, steps: int, timing_steps: int) -> dict:
    """Time ``timing_steps`` steps of the shipped classifier's configuration; project to ``steps``."""
    from sculpt_core.domains.grid.train_classifier import ClassifierTrainConfig, train_grid_classifier
    from sculpt_core.domains.grid.zoo import GRID_CLASSIFIER_SPECS

    names, alpha_cond, n_labels = GRID_CLASSIFIER_SPECS[key]
    cfg = ClassifierTrainConfig(steps=timing_steps, alpha_cond=alpha_cond, n_labels=n_labels, eval_every=10 ** 9)
    t0 = time.perf_counter()
    train_grid_classifier([load_grid_model(n) for n in names], cfg)
    per_step = (time.perf_counter() - t0) / timing_steps
    return {"s_per_step": round(per_step, 4), "projected_seconds": round(per_step * steps, 1)}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing-steps", type=int, default=200, help="classifier steps timed per configuration")
    args = parser.parse_args()
    names = ["symmetric_shubert", "diag_sigmoid", "circle1", "circle2", "circle3"]
    models = {n: load_grid_model(n) for n in names}
    pair = prepare_bases([models["symmetric_shubert"], models["diag_sigmoid"]])
    circles = prepare_bases([models[n] for n in ("circle1", "circle2", "circle3")])
    c12 = prepare_bases([models["circle1"], models["circle2"]])
    record: dict = {"bench": "grid_compose", "torch_threads": torch.get_num_threads(),
                    "load_average_1m_at_start": round(os.getloadavg()[0], 2)}

    ops2 = paper_evaluation_compositions(2) + [A.chained_harmonic_mean(2), A.linear([1, 2]), A.mixture(n_models=2)]
    ops3 = paper_evaluation_compositions(3) + [A.chained_harmonic_mean(3), A.linear([1, 2, 3])]
    record["oracle_max_l1"] = max([compose(pair, c, "oracle").l1 for c in ops2] + [compose(circles, c, "oracle").l1 for c in ops3])

    manifest = read_manifest()["grid_classifiers"]
    classifier_figs = {}
    for key, bases, comps in (("symmetric_shubert+diag_sigmoid", pair, paper_evaluation_compositions(2)),
                              ("circle1+circle2+circle3", circles, paper_evaluation_compositions(3)),
                              ("circle1+circle2", c12, [A.harmonic_mean()])):
        found = find_grid_classifier(key.split("+"))
        if found is None:
            classifier_figs[key] = None
            continue
        net = found[0]
        l1s = {c.describe(): round(compose(bases, c, "classifier", net).l1, 4) for c in comps}
        classifier_figs[key] = {"l1": l1s, "max_l1": max(l1s.values()),
                                "manifest_train_seconds": manifest[key]["train_seconds"], "steps": manifest[key]["steps"],
                                **projected_training_seconds(key, manifest[key]["steps"], args.timing_steps)}
    record["classifier"] = classifier_figs

    linear = {}
    for k in range(2, 6):
        bases = prepare_bases([models[n] for n in names[:k]])
        w = [float(i + 1) for i in range(k)]
        linear[f"{k}_bases"] = {"exact_u": compose(bases, A.linear(w), "reaching").l1,
                                "flow_u": round(compose(bases, A.linear(w), "reaching", u_source="flow").l1, 5),
                                "ensemble": round(compose(bases, A.linear(w), "ensemble").l1, 4),
                                "flow_u_vs_true_rewards": round(compose(bases, A.linear(w), "reaching", u_source="flow").l1_true, 5)}
    record["reaching_linear_l1"] = linear

    hm = A.harmonic_mean()
    c12_cls = find_grid_classifier(["circle1", "circle2"])
    record["hm_circle1_circle2_l1"] = {
        "reaching_exact_u": round(compose(c12, hm, "reaching").l1, 4),
        "reaching_flow_u": round(compose(c12, hm, "reaching", u_source="flow").l1, 4),
        "reaching_trajectory_u_sampled_50k": round(compose(c12, hm, "reaching", u_source="trajectory", n_samples=50000).l1, 4),
        "classifier": None if c12_cls is None else round(compose(c12, hm, "classifier", c12_cls[0]).l1, 4),
        "ensemble": round(compose(c12, hm, "ensemble").l1, 4),
        "oracle": compose(c12, hm, "oracle").l1,
    }

    comp = A.harmonic_mean(0.5)
    cls_pair = find_grid_classifier(["symmetric_shubert", "diag_sigmoid"])
    times = {
        "baseline_one_base_dp": median_ms(lambda: log_terminal(pair.env, pair.log_pf[0])),
        "prepare_bases_2": median_ms(lambda: prepare_bases([models["symmetric_shubert"], models["diag_sigmoid"]])),
        "oracle": median_ms(lambda: compose(pair, comp, "oracle")),
        "reaching": median_ms(lambda: compose(pair, comp, "reaching")),
        "ensemble": median_ms(lambda: compose(pair, comp, "ensemble")),
    }
    if cls_pair is not None:
        times["classifier"] = median_ms(lambda: compose(pair, comp, "classifier", cls_pair[0]))
    record["compose_ms"] = times
    print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
