"""The two classifier objectives side by side, where every distribution is exact. Prints ONE JSON line.

- ``exact_fixed_points``: guided L1 to the target of the EXACT fixed point of each objective: ``chain`` (the
  label posterior of the mixture chain, what Theorem 5.3 needs), ``a1`` (Algorithm A.1, final object kept as a
  non-terminal state) and ``a1_d6`` (A.1 with the final object never a non-terminal state), on
  the shipped grid pairs / triple (their paper compositions), random unbalanced 9×9 grid bases, and the tiny
  fragment library (3 fragments, ≤ 3 nodes; random sharpened bases);
- ``trained``: each objective trained for the same number of steps (same network, data budget and seed) on the
  random 9×9 grid bases (exact expectations) and on the tiny fragment library (Monte Carlo; fast head; the chain
  objective with end-of-trajectory targets at two target-network averages and with the tree backup), with the
  exact guided L1 of every composition and the training seconds.

Baseline in the same run: ``a1`` beside ``chain`` everywhere (the machine's speed cancels out of the L1 figures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sculpt_core.core import algebra as A  # noqa: E402

KINDS = ("chain", "a1", "a1_d6")


def _summary(values: dict[str, float]) -> dict:
    return {"max": round(max(values.values()), 6), "mean": round(sum(values.values()) / len(values), 6),
            "by_composition": {k: round(v, 6) for k, v in values.items()}}


def _pair_ops() -> list:
    return [op(a) for op in (A.harmonic_mean, A.contrast, A.reverse_contrast) for a in (0.05, 0.5, 0.95)]


def _triple_ops() -> list:
    return [A.conditioning(y, 3) for y in ((1, 2), (1, 3), (2, 3), (1, 2, 3), (1, 1), (2, 2, 2))]


def grid_fixed_points() -> dict:
    from helpers import random_model
    from sculpt_core.domains.grid.compose import prepare_bases
    from sculpt_core.domains.grid.exact import ExactGridClassifier
    from sculpt_core.domains.grid.train_classifier import guided_l1
    from sculpt_core.domains.grid.zoo import load_grid_model

    sets = {"symmetric_shubert+diag_sigmoid": None, "circle1+circle2+circle3": None,
            "random9x9_pair": [random_model(9, seed=s, name=f"m{s}") for s in (11, 12)],
            "random9x9_triple": [random_model(9, seed=s, name=f"m{s}") for s in (11, 12, 13)]}
    out = {}
    for key, models in sets.items():
        models = models or [load_grid_model(n) for n in key.split("+")]
        bases = prepare_bases(models)
        m = bases.m
        ops = _pair_ops() if m == 2 else _triple_ops()
        out[key] = {kind: _summary({c.describe(): guided_l1(bases, ExactGridClassifier(bases.env, bases.log_pf, m,
                                                                                      m == 2, kind), c) for c in ops})
                    for kind in KINDS}
    return out


def grid_trained(steps: int) -> dict:
    from helpers import random_model
    from sculpt_core.domains.grid.compose import prepare_bases
    from sculpt_core.domains.grid.train_classifier import ClassifierTrainConfig, guided_l1, train_grid_classifier

    models = [random_model(9, seed=s, name=f"m{s}") for s in (11, 12)]
    bases = prepare_bases(models)
    out = {"steps": steps, "bases": "random9x9_pair"}
    for objective in ("chain", "a1"):
        cfg = ClassifierTrainConfig(steps=steps, alpha_cond=True, n_labels=2, hidden=64, warmup=max(1, steps // 7),
                                    eval_every=10 ** 9, objective=objective)
        net, info = train_grid_classifier(models, cfg)
        out[objective] = {**_summary({c.describe(): guided_l1(bases, net, c) for c in _pair_ops()}),
                          "train_seconds": round(info["seconds"], 1)}
    return out


def _tiny_setup(m: int):
    from sculpt_core.domains.molecules.compose import prepare_mol_bases
    from sculpt_core.domains.molecules.env import FragmentEnv
    from sculpt_core.domains.molecules.exact import SpaceDP
    from sculpt_core.domains.molecules.fragments import FragmentLibrary
    from sculpt_core.domains.molecules.model import MolBaseModel

    env = FragmentEnv(FragmentLibrary.load().subset([1, 15, 27]), max_frags=3)
    models = []
    for seed in range(m):
        torch.manual_seed(seed)
        mod = MolBaseModel.create(env, hidden=16, n_layers=2, name=f"r{seed}")
        with torch.no_grad():
            for head in (mod.net.stop_head, mod.net.add_head, mod.net.edge_head, mod.net.flow_head):
                head[-1].weight.mul_(5.0)
                head[-1].bias.mul_(5.0)
        mod.net.eval()
        models.append(mod)
    bases = prepare_mol_bases(models, 24.0)
    dp = SpaceDP.build(env)
    return models, bases, dp, bases.log_pf(dp.states)


def _tiny_ops(m: int) -> list:
    if m == 2:
        return [A.harmonic_mean(0.5), A.contrast(0.3), A.reverse_contrast(0.7), A.harmonic_mean(0.2)]
    return [A.conditioning(y, 3) for y in ((1, 2, 3), (1, 2), (2, 3), (2, 2, 2))]


def _tiny_l1(dp, bases, log_pf, clf, ops, scoring: str = "fast") -> dict[str, float]:
    from sculpt_core.domains.molecules.compose import GuidedPolicy
    from sculpt_core.domains.molecules.exact import space_log_target

    out = {}
    for c in ops:
        target = space_log_target(dp, log_pf, c, bases.log_z).exp()
        p = dp.log_terminal(dp.table(GuidedPolicy(bases, c, clf, scoring))).exp()
        out[c.describe()] = float((p - target).abs().sum())
    return out


def tiny_fixed_points() -> dict:
    from sculpt_core.domains.molecules.exact import ExactClassifier

    out = {}
    for m in (2, 3):
        models, bases, dp, log_pf = _tiny_setup(m)
        out[f"{m}_models"] = {kind: _summary(_tiny_l1(dp, bases, log_pf, ExactClassifier(dp, log_pf, n_labels=m,
                                                                                       alpha_cond=m == 2, kind=kind),
                                                      _tiny_ops(m), "exact")) for kind in KINDS}
    return out


def tiny_trained(steps: int, m: int) -> dict:
    from sculpt_core.domains.molecules.train_classifier import MolClassifierTrainConfig, train_mol_classifier

    models, bases, dp, log_pf = _tiny_setup(m)
    out = {"steps": steps, "models": m}
    # (name, objective, backup, target-network EMA): the tree backup bootstraps from the target, hence a faster EMA;
    # the Monte-Carlo chain at that EMA too, so the backup is what differs
    variants = (("chain", "chain", "mc", 0.99), ("chain_ema0.9", "chain", "mc", 0.9),
                ("chain_tree_ema0.9", "chain", "tree", 0.9), ("a1", "a1", "mc", 0.99))
    for name, objective, backup, ema in variants:
        cfg = MolClassifierTrainConfig(steps=steps, trajectories_per_model=16, lr=2e-3, ema=ema,
                                       warmup=max(1, steps // 5), alpha_cond=m == 2, n_labels=m, eval_every=10 ** 9,
                                       seed=100, device="cpu", objective=objective, backup=backup, tree_lambda=1.0)
        net, info = train_mol_classifier(models, 24.0, cfg)
        out[name] = {**_summary(_tiny_l1(dp, bases, log_pf, net, _tiny_ops(m))),
                     "train_seconds": round(info["seconds"], 1)}
        print(f"tiny {m} models {name}: {out[name]['mean']}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-steps", type=int, default=1500)
    parser.add_argument("--tiny-steps", type=int, default=1000)
    parser.add_argument("--tiny-models", default="2", help="comma-separated: 2 and/or 3 tiny bases to train for")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: grid_trained,tiny_trained")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    start = time.perf_counter()
    record: dict = {"bench": "classifier_objectives", "threads": args.threads,
                    "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    record["exact_fixed_points"] = {"grid": grid_fixed_points(), "tiny_molecules": tiny_fixed_points()}
    record["trained"] = {}
    if "grid_trained" not in skip:
        record["trained"]["grid"] = grid_trained(args.grid_steps)
    if "tiny_trained" not in skip:
        record["trained"]["tiny_molecules"] = [tiny_trained(args.tiny_steps, int(m)) for m in args.tiny_models.split(",")]
    record["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
