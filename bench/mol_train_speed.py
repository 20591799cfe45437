"""Seconds per molecule base-model training step, by phase. Prints ONE JSON line.

For each reward (``--rewards``, default seh, sa, qed) the shipped base model (``assets/zoo/mol/<name>.pt``)
takes ``--warmup`` + ``--steps`` training steps (:func:`sculpt_core.domains.molecules.train.train_step`,
batch ``--batch`` = 64, ε = 0.1, β ~ U[0, 96], seeded), one torch thread. Per reward: the median seconds per
step and the median of each phase (rollout, assemble = states → RDKit molecules, reward, forward_loss,
backward = backward + clipping + Adam), and the losses of the timed steps (a fixed seed gives the same
losses before and after a speed change that keeps the maths; compare them across runs).

The machine is shared and noisy, so the same run also times two fixed workloads that do not use this
project's code (``baseline``): a small-tensor torch loop (index_add / Linear / LayerNorm on [1024, 64], the
kind of op the policy runs) and a pure-Python loop; divide a step time by them to compare runs made under
different load. ``policy_forward_s`` (the plain no-grad forward pass of the sEH model on a fixed batch of
visited states) is given too, but it uses the project's code, so it moves when the policy gets faster.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from sculpt_core.domains.molecules.model import MolBaseModel  # noqa: E402
from sculpt_core.domains.molecules.sampling import sample_trajectories  # noqa: E402
from sculpt_core.domains.molecules.train import MolTrainConfig, make_optimizer, reward_fn, train_step  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "assets" / "zoo" / "mol"
PHASES = ("rollout", "assemble", "reward", "forward_loss", "backward")


def _median_time(fn, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def baseline(repeats: int = 15) -> dict:
    """Two fixed workloads independent of the project's code (see the module docstring)."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1024, 64, generator=g)
    idx = torch.randint(0, 1024, (2048,), generator=g)
    lin, norm = torch.nn.Linear(64, 64), torch.nn.LayerNorm(64)

    @torch.no_grad()
    def torch_loop() -> None:
        x = h
        for _ in range(50):
            m = lin(x[idx])
            x = norm(x + torch.zeros_like(x).index_add_(0, idx, m))

    def python_loop() -> None:
        acc = 0
        for i in range(200_000):
            acc += i * i % 7

    return {"torch_small_ops_s": round(_median_time(torch_loop, repeats), 5),
            "python_loop_s": round(_median_time(python_loop, repeats), 5)}


def policy_forward(model: MolBaseModel, repeats: int = 15) -> float:
    """Median seconds of one no-grad policy forward (+ masked log-softmax) over the visited states of 64
    seeded trajectories at β = 32."""
    traj = sample_trajectories(model.env, model.policy(32.0), 64, torch.Generator().manual_seed(0), 0.1,
                               with_smiles=False)
    states = traj.transitions()[0]
    with torch.no_grad():
        return _median_time(lambda: model.log_pf(states, 32.0), repeats)


def bench_reward(name: str, steps: int, warmup: int, batch: int, seed: int) -> dict:
    """Time ``warmup + steps`` training steps of the shipped ``name`` model on its own reward."""
    model = MolBaseModel.load(ZOO / f"{name}.pt")
    cfg = MolTrainConfig(batch_size=batch, seed=seed)
    fn = reward_fn(name)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.net.train()
    opt, sched = make_optimizer(model, cfg, int(model.meta.get("steps", 0)))
    totals: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    losses: list[float] = []
    for k in range(warmup + steps):
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        metrics = train_step(model, fn, cfg, opt, gen, timings)
        sched.step()
        elapsed = time.perf_counter() - t0
        if k >= warmup:
            totals.append(elapsed)
            losses.append(float(f"{metrics['loss']:.6g}"))
            for p in PHASES:
                phases[p].append(timings.get(p, 0.0))
    out = {"step_s": round(statistics.median(totals), 4),
           **{f"{p}_s": round(statistics.median(v), 4) for p, v in phases.items()},
           "losses": losses}
    out["rest_s"] = round(out["step_s"] - sum(out[f"{p}_s"] for p in PHASES), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rewards", default="seh,sa,qed")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per reward (median over them)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--label", default="", help="free text copied into the JSON (e.g. the commit)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result: dict = {"bench": "mol_train_speed", "label": args.label, "batch": args.batch, "steps": args.steps,
                    "warmup": args.warmup, "threads": torch.get_num_threads(), "baseline_before": baseline()}
    for name in args.rewards.split(","):
        result[name] = bench_reward(name.strip(), args.steps, args.warmup, args.batch, args.seed)
    result["policy_forward_s"] = round(policy_forward(MolBaseModel.load(ZOO / "seh.pt")), 5)
    result["baseline_after"] = baseline()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
