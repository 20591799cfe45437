"""Benchmark of composition on molecules. Prints ONE JSON line.

- throughput (valid molecules/s) of composed sampling at batch 64 and 128: base, reaching (learned-flow u and
  trajectory-product u), ensemble, classifier guidance with the fast action head, with the head plus exact
  re-scoring of the top 64 moves, and with exact successor scoring; targets on 2 CPU cores: reaching ≥ 50/s, classifier ≥ 20/s;
- accuracy cost of the fast head against exact successor scoring on states visited by the guided sampler:
  KL(exact ‖ fast) and L1 between the two guided action distributions (mean, median, p90);
- on the tiny exact library (3 fragments, ≤ 3 nodes): a classifier trained for ``--tiny-steps`` steps (without and
  with distillation of the action head), the exact guided terminal distributions of both scorings, their L1 to
  the target and to each other.

Bases: ``--bases`` (zoo names or .pt paths; default: the first two ``mol_models`` of the manifest). Classifier:
``--classifier`` (path or shipped name), else the shipped one for the bases, else an untrained one (speed only;
the accuracy figures are then skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch


from sculpt_core.core import algebra as A
from sculpt_core.domains.molecules.compose import GuidedPolicy, composed_policy, prepare_mol_bases
from sculpt_core.domains.molecules.sampling import sample_molecules, sample_trajectories
from timing import percentile


def _throughput(policy, n: int, batch: int, seed: int = 1) -> dict:
    sample_molecules(policy, min(8, n), seed=seed + 100, batch_size=min(8, n))  # warm-up
    got = sample_molecules(policy, n, seed=seed, batch_size=batch)
    print(f"{type(policy).__name__} batch {batch}: {got.molecules_per_s:.1f} mol/s", file=sys.stderr, flush=True)
    return {"mol_per_s": round(got.molecules_per_s, 1), "n": len(got.smiles), "seconds": round(got.seconds, 2),
            "invalid": got.n_invalid, "unique": len(set(got.smiles))}


def _eq13_gap(policy: GuidedPolicy, states: list) -> list[float]:
    """|log Σ_a p_mix(a|s) Q(y|s'_a) / Q(y|s)| per state: how far the classifier is from eq. 13 (0 if exact)."""
    log_w, log_v, children = policy.guidance(states)
    log_pf = policy.bases.log_pf(states)
    mix = torch.logsumexp(log_pf + log_w.T.unsqueeze(-1), 0)
    return (torch.logsumexp(mix + children, 1) - log_v).abs().tolist()


def fast_head_cost(bases, comp, clf, n_traj: int = 32, seed: int = 3) -> dict:
    """Guided action distributions of both scorings on the states of fast-guided trajectories."""
    fast, exact = GuidedPolicy(bases, comp, clf, "fast"), GuidedPolicy(bases, comp, clf, "exact")
    traj = sample_trajectories(bases.env, fast, n_traj, torch.Generator().manual_seed(seed), with_smiles=False)
    states = [s for path in traj.states for s in path[:-1]]
    kl, l1, t_fast, t_exact, gap_f, gap_e = [], [], 0.0, 0.0, [], []
    for lo in range(0, len(states), 64):
        part = states[lo:lo + 64]
        t0 = time.perf_counter()
        lf = fast.log_probs(part)
        t1 = time.perf_counter()
        le = exact.log_probs(part)
        t2 = time.perf_counter()
        t_fast, t_exact = t_fast + t1 - t0, t_exact + t2 - t1
        pe, pf = le.exp(), lf.exp()
        term = torch.where(pe > 0, pe * (le - lf), torch.zeros_like(pe))
        kl += term.sum(1).tolist()
        l1 += (pe - pf).abs().sum(1).tolist()
        gap_f += _eq13_gap(fast, part)
        gap_e += _eq13_gap(exact, part)
    return {"composition": comp.describe(), "states": len(states),
            "eq13_gap_mean": {"fast": round(statistics.mean(gap_f), 4), "exact": round(statistics.mean(gap_e), 4)},
            "kl_exact_fast": {"mean": round(statistics.mean(kl), 5), "median": round(percentile(kl, 0.5), 5),
                              "p90": round(percentile(kl, 0.9), 5)},
            "l1_actions": {"mean": round(statistics.mean(l1), 5), "median": round(percentile(l1, 0.5), 5),
                           "p90": round(percentile(l1, 0.9), 5)},
            "policy_ms_per_state": {"fast": round(1e3 * t_fast / len(states), 3),
                                    "exact": round(1e3 * t_exact / len(states), 3)},
            "speedup": round(t_exact / max(t_fast, 1e-9), 1)}


def tiny_exact(steps: int, distill_actions: int = 0) -> dict:
    """Exact guided terminal distributions (both scorings) of a classifier trained on the tiny library."""
    from sculpt_core.domains.molecules.exact import SpaceDP, space_log_target
    from sculpt_core.domains.molecules.fragments import FragmentLibrary
    from sculpt_core.domains.molecules.env import FragmentEnv
    from sculpt_core.domains.molecules.model import MolBaseModel
    from sculpt_core.domains.molecules.train_classifier import MolClassifierTrainConfig, train_mol_classifier

    env = FragmentEnv(FragmentLibrary.load().subset([1, 15, 27]), max_frags=3)
    dp = SpaceDP.build(env)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = MolBaseModel.create(env, hidden=16, n_layers=2, name=f"r{seed}")
        with torch.no_grad():
            for head in (m.net.stop_head, m.net.add_head, m.net.edge_head):
                head[-1].weight.mul_(5.0)
                head[-1].bias.mul_(5.0)
        m.net.eval()
        models.append(m)
    bases = prepare_mol_bases(models, 24.0)
    log_pf = bases.log_pf(dp.states)
    cfg = MolClassifierTrainConfig(steps=steps, trajectories_per_model=16, lr=2e-3, ema=0.99, warmup=max(1, steps // 5),
                                   alpha_cond=True, eval_every=10 ** 9, device="cpu", distill_actions=distill_actions)
    net, info = train_mol_classifier(models, 24.0, cfg)
    out = {"steps": steps, "distill_actions": distill_actions, "train_seconds": round(info["seconds"], 1)}
    for comp in (A.harmonic_mean(0.5), A.contrast(0.3), A.reverse_contrast(0.7)):
        target = space_log_target(dp, log_pf, comp, bases.log_z).exp()
        p = {s: dp.log_terminal(dp.table(GuidedPolicy(bases, comp, net, s))).exp() for s in ("fast", "exact")}
        out[comp.describe()] = {"l1_fast": round(float((p["fast"] - target).abs().sum()), 4),
                                "l1_exact": round(float((p["exact"] - target).abs().sum()), 4),
                                "l1_fast_vs_exact": round(float((p["fast"] - p["exact"]).abs().sum()), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default=None, help="comma-separated zoo names or .pt paths (two or three)")
    parser.add_argument("--classifier", default=None)
    parser.add_argument("--beta", type=float, default=32.0)
    parser.add_argument("--n", type=int, default=256, help="molecules per throughput figure")
    parser.add_argument("--n-exact", type=int, default=64, help="molecules for exact successor scoring")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny-steps", type=int, default=600)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: speed,accuracy,tiny")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    from sculpt_core.domains.molecules.zoo import load_mol_model, mol_model_names

    names = args.bases.split(",") if args.bases else mol_model_names()[:2]
    record: dict = {"threads": args.threads, "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
                    "beta": args.beta}
    if len(names) >= 2:
        models = [load_mol_model(n) for n in names]
        bases = prepare_mol_bases(models, args.beta)
        m = len(models)
        record["bases"] = [mod.name for mod in models]
        clf, trained = None, False
        try:
            from sculpt_core.domains.molecules.zoo import load_classifier_for

            clf, _, meta = load_classifier_for(models, args.beta, args.classifier)
            trained = True
            record["classifier"] = {k: meta.get(k) for k in ("steps", "seconds", "beta", "alpha_cond", "n_labels")}
        except Exception as exc:  # no classifier: time an untrained one
            from sculpt_core.domains.molecules.classifier import MolClassifier, MolClassifierConfig

            env = bases.env
            clf = MolClassifier(MolClassifierConfig(env.n_frags, env.max_frags, m, 2 if m == 2 else m, m == 2), env).eval()
            record["classifier"] = f"untrained (speed only): {exc}"
        hm = A.harmonic_mean(0.5) if m == 2 else A.conditioning(tuple(range(1, m + 1)), m)
        if "speed" not in skip:
            speed: dict = {}
            for batch in (64, 128):
                row = {"base": _throughput(models[0].policy(args.beta), args.n, batch),
                       "reaching_flow_linear": _throughput(composed_policy(bases, A.linear([1.0] * m), "reaching",
                                                                           u_source="flow"), args.n, batch),
                       "reaching_flow_hm": _throughput(composed_policy(bases, A.chained_harmonic_mean(m), "reaching",
                                                                       u_source="flow"), args.n, batch),
                       "reaching_trajectory_hm": _throughput(composed_policy(bases, A.chained_harmonic_mean(m), "reaching",
                                                                             u_source="trajectory"), args.n, batch),
                       "ensemble_hm": _throughput(composed_policy(bases, A.chained_harmonic_mean(m), "ensemble"), args.n, batch),
                       "classifier_fast": _throughput(GuidedPolicy(bases, hm, clf, "fast"), args.n, batch),
                       "classifier_topk64": _throughput(GuidedPolicy(bases, hm, clf, "topk", top_k=64), args.n, batch),
                       "classifier_exact": _throughput(GuidedPolicy(bases, hm, clf, "exact"), args.n_exact, batch)}
                speed[f"batch_{batch}"] = row
            record["speed"] = speed
        if "accuracy" not in skip and trained:
            comps = [hm, A.contrast(0.05), A.reverse_contrast(0.95)] if m == 2 else [hm, A.conditioning((1, 2), m)]
            record["fast_head_cost"] = [fast_head_cost(bases, c, clf) for c in comps]
    else:
        record["bases"] = "none: pass --bases (two or three .pt paths) or ship mol_models"
    if "tiny" not in skip:
        record["tiny_exact"] = [tiny_exact(args.tiny_steps), tiny_exact(args.tiny_steps, distill_actions=4)]
    record["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
