"""Has a molecule base model's training reached a TB-loss plateau? Prints ONE JSON line.

The on-policy batch loss printed during training moves by ±100% from step to step (64 fresh trajectories,
fresh β), so it cannot show whether a run still improves. This script scores every checkpoint of a run
(``--checkpoints``: e.g. the snapshots a ``--save-every`` run leaves) on ONE fixed evaluation set: ``--n-eval``
trajectories from the first and from the last checkpoint each, drawn as training draws them (β ~ U[0, 96],
ε = 0.1, seeded), with their rewards. Per checkpoint: its total training steps, the mean and median squared
TB residual on that set, and the mean per β band (low, middle, high third of the range).

The plateau test compares the last checkpoint with the latest one at least ``--window`` steps before it: the
paired relative change of the mean loss (same trajectories under both) with a 95% bootstrap interval over
trajectories. ``plateau`` is true when the loss fell by less than ``--tolerance`` (default 5%) over the
window with 95% confidence (the interval's most favourable end, −low, is below the tolerance), i.e. more of
the same training is not buying a measurable improvement. ``lr_mass_spent`` is the share of the whole
learning-rate schedule's area (lr·2^(−step/half_life) integrated to infinity) that the last checkpoint has
used: 1 − 2^(−steps/half_life). ``projected_change_to_schedule_end`` extrapolates the window's change to the
rest of the schedule, assuming the loss moves in proportion to the learning-rate area spent (the window's
change × remaining area / the window's area): how much finishing the schedule could still give.

``seconds`` is this script's wall time and ``baseline_s`` a fixed small-tensor torch loop, so runs on a loaded
machine can be compared.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from sculpt_core.core.metrics import plateau_verdict  # noqa: E402
from sculpt_core.domains.molecules.model import MolBaseModel  # noqa: E402
from sculpt_core.domains.molecules.train import (MolTrainConfig, evaluate_tb_loss, make_tb_eval_set,  # noqa: E402
                                                 reward_fn)
from sculpt_core.errors import SculptError  # noqa: E402


def baseline_seconds() -> float:
    """Wall seconds of a fixed small-tensor torch loop that uses none of this project's code."""
    g = torch.Generator().manual_seed(0)
    h, lin = torch.randn(1024, 64, generator=g), torch.nn.Linear(64, 64)
    t0 = time.perf_counter()
    with torch.no_grad():
        x = h
        for _ in range(200):
            x = torch.relu(lin(x))
    return time.perf_counter() - t0


def band_means(losses: torch.Tensor, betas: torch.Tensor, beta_range: tuple[float, float]) -> list[float]:
    """Mean loss over the trajectories whose β lies in each third of the β range."""
    low, high = beta_range
    edges = [low + (high - low) * k / 3 for k in range(4)]
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        mask = (betas >= a) & (betas <= b) if b == high else (betas >= a) & (betas < b)
        out.append(round(float(losses[mask].mean()), 4) if bool(mask.any()) else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reward", required=True, choices=["seh", "sa", "qed"])
    ap.add_argument("--checkpoints", nargs="+", required=True, help="checkpoints of ONE run, any order")
    ap.add_argument("--n-eval", type=int, default=256, help="evaluation trajectories from each end checkpoint")
    ap.add_argument("--window", type=int, default=1000, help="steps between the two compared checkpoints")
    ap.add_argument("--tolerance", type=float, default=0.05, help="relative loss drop still called a plateau")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        if args.n_eval < 2:
            raise SculptError("--n-eval must be ≥ 2")
        t0 = time.perf_counter()
        models = [MolBaseModel.load(Path(p)) for p in args.checkpoints]
        order = sorted(range(len(models)), key=lambda i: int(models[i].meta.get("steps", 0)))
        models = [models[i] for i in order]
        paths = [args.checkpoints[i] for i in order]
        steps = [int(m.meta.get("steps", 0)) for m in models]
        if len(set(steps)) != len(steps):
            raise SculptError(f"two checkpoints have the same step count ({steps}); pass each once")
        cfg = MolTrainConfig()
        chunks = make_tb_eval_set([models[0], models[-1]], reward_fn(args.reward), args.n_eval, cfg, args.seed)
        betas = torch.cat([c.betas for c in chunks]).double()
        losses = [evaluate_tb_loss(m, chunks) for m in models]
        verdict = plateau_verdict(steps, losses, args.window, args.tolerance)
    except SculptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [{"path": p, "steps": s, "tb_loss_mean": round(float(v.mean()), 4),
             "tb_loss_median": round(float(v.median()), 4), "by_beta_third": band_means(v, betas, cfg.beta_range)}
            for p, s, v in zip(paths, steps, losses)]
    last = steps[-1]
    mass = [1.0 - 2.0 ** (-s / cfg.lr_half_life) for s in steps]
    if verdict.get("plateau") is not None:
        window_mass = mass[-1] - mass[steps.index(verdict["from_steps"])]
        verdict["projected_change_to_schedule_end"] = round(
            verdict["relative_change"] * (1.0 - mass[-1]) / window_mass, 4)
    print(json.dumps({
        "bench": "mol_base_plateau", "reward": args.reward, "n_eval_trajectories": int(betas.numel()),
        "seed": args.seed, "checkpoints": rows, "plateau_test": verdict,
        "lr_half_life": cfg.lr_half_life,
        "lr_mass_spent": round(mass[-1], 4), "last_steps": last,
        "seconds": round(time.perf_counter() - t0, 1), "baseline_s": round(baseline_seconds(), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
