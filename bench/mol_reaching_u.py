"""How good are the reaching probabilities of molecule reaching? Prints ONE JSON line.

Samples ``--n`` molecules from a composition of the shipped (sEH, SA, QED) bases (default y = 1,2,3 by reaching
with the p_F/p_B product, so the molecules lie where that composition puts its mass), then estimates every base
model's log p_i(x) three ways and reports the errors of the first two against the third:

- ``flow``: the learned state flow, log F_i(x) − log F_i(s0) + log p_iF(⊤|x) (what ``--u flow`` mixes with);
- ``trajectory``: the p_F/p_B product along the path that built x, + log p_iF(⊤|x) (``--u trajectory``);
- reference: backward importance sampling with ``--k`` paths per molecule drawn by the uniform backward policy
  (:func:`sculpt_core.domains.molecules.marginals.log_marginals`, class level, unbiased in p_i(x)).

Per model: mean absolute error and mean error of log p_i(x), and the mean absolute error of log p_i(x)/p_1(x)
(reaching mixes by such ratios, so a per-model constant error matters and a shared one does not). Also the flow
head's log F_i(s0) next to the TB head's log Z_i.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


from sculpt_core.core.cli import composition_from_args
from sculpt_core.domains.molecules.compose import composed_policy, prepare_mol_bases
from sculpt_core.domains.molecules.marginals import log_marginals
from sculpt_core.domains.molecules.sampling import sample_trajectories
from sculpt_core.domains.molecules.zoo import load_mol_model


def trajectory_log_u(bases, traj) -> torch.Tensor:
    """Σ over the moves of each valid trajectory of log p_iF − log p_B: ``[m, N]``."""
    env, model = bases.env, bases.models[0]
    out = []
    for b in range(len(traj)):
        if not bool(traj.valid[b]):
            continue
        states = traj.states[b]
        acts = traj.actions[b, : int(traj.lengths[b])]
        moves = len(acts) - 1  # the last action is Stop
        log_pf = bases.log_pf(states[:moves])[:, torch.arange(moves), acts[:moves]]  # [m, moves]
        log_pb = model.log_pb(states[:moves], acts[:moves], states[1:moves + 1]).double().cpu()
        out.append((log_pf - log_pb).sum(1))
    return torch.stack(out, 1) if out else torch.zeros(bases.m, 0, dtype=torch.float64)


def errors(estimate: torch.Tensor, reference: torch.Tensor) -> dict:
    err = estimate - reference
    ratio = (estimate - estimate[:1]) - (reference - reference[:1])
    r = lambda t: [round(float(v), 3) for v in t]  # noqa: E731
    return {"mae_log_p": r(err.abs().mean(1)), "mean_error_log_p": r(err.mean(1)),
            "mae_log_ratio_to_first": r(ratio.abs().mean(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="seh,sa,qed")
    parser.add_argument("--beta", type=float, default=32.0)
    parser.add_argument("--y", default="1,2,3", help="labels of the composition the molecules are drawn from")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--k", type=int, default=32, help="backward paths per molecule for the reference")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [load_mol_model(name) for name in args.bases.split(",")]
    bases = prepare_mol_bases(models, args.beta)
    composition = composition_from_args(len(models), args.y, None, None)
    t0 = time.perf_counter()
    policy = composed_policy(bases, composition, "reaching", u_source="trajectory")
    traj = sample_trajectories(bases.env, policy, args.n, torch.Generator().manual_seed(args.seed))
    xs = [x for x, ok in zip(traj.terminal, traj.valid.tolist()) if ok]
    log_pf_x, log_u_flow = bases.log_pf_and_u(xs)
    log_stop = log_pf_x[:, :, bases.env.stop_action]
    reference = log_marginals(bases, xs, args.k, torch.Generator().manual_seed(args.seed + 1))
    record = {"bases": [m.name for m in models], "beta": args.beta, "composition": composition.describe(),
              "n": len(xs), "k": args.k, "threads": args.threads, "load_avg_start": round(os.getloadavg()[0], 2),
              "log_z_tb": [round(float(v), 3) for v in bases.log_z],
              "log_flow_s0": [round(float(v), 3) for v in bases.log_f0],
              "flow": errors(log_u_flow + log_stop, reference),
              "trajectory": errors(trajectory_log_u(bases, traj) + log_stop, reference),
              "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
