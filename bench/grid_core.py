"""Benchmark of the grid core. Prints ONE JSON line.

- exact DP on 32×32 (vectorised over anti-diagonals) vs a per-cell Python loop baseline (the reference
  code's queue-style DP), same policy, same result;
- roll-out throughput (trajectories/s) by table look-up vs evaluating the network at every step;
- for each zoo reward: wall time and steps to reach exact L1 ≤ 0.03 with the default trainer.

Usage: python bench/grid_core.py [--skip-training] [--target-l1 0.03]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch


from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.domains.grid.exact import log_terminal, normalize_log_policy
from sculpt_core.domains.grid.sampling import TablePolicy, sample_trajectories
from sculpt_core.domains.grid.rewards import grid_log_reward
from sculpt_core.domains.grid.train import GridTrainConfig, train_grid_model
from sculpt_core.domains.grid.zoo import GRID_ZOO_SPECS


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_cell_dp(env: GridEnv, log_pf: torch.Tensor) -> torch.Tensor:
    """Baseline: one Python iteration per cell in topological order (what a straightforward port does)."""
    lp = log_pf.tolist()
    h = env.height
    log_u = [[-math.inf] * h for _ in range(h)]
    log_u[0][0] = 0.0
    for level in range(1, 2 * h - 1):
        for z0 in range(max(0, level - h + 1), min(level, h - 1) + 1):
            z1 = level - z0
            terms = []
            if z0 > 0:
                terms.append(log_u[z0 - 1][z1] + lp[(z0 - 1) * h + z1][0])
            if z1 > 0:
                terms.append(log_u[z0][z1 - 1] + lp[z0 * h + z1 - 1][1])
            mx = max(terms)
            log_u[z0][z1] = mx + math.log(sum(math.exp(t - mx) for t in terms)) if mx > -math.inf else -math.inf
    return torch.tensor([[log_u[a][b] + lp[a * h + b][2] for b in range(h)] for a in range(h)], dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--target-l1", type=float, default=0.03)
    args = parser.parse_args()
    torch.manual_seed(0)
    env = GridEnv(32, 2)
    log_pf = normalize_log_policy(env, torch.randn(env.n_states, 3))
    log_terminal(env, log_pf)  # warm-up (builds level tables)
    dp_s = timed(lambda: log_terminal(env, log_pf), 50)
    base_s = timed(lambda: per_cell_dp(env, log_pf), 5)
    agree = float((log_terminal(env, log_pf).reshape(32, 32) - per_cell_dp(env, log_pf)).abs().max())

    n = 20000
    gen = torch.Generator().manual_seed(0)
    table_s = timed(lambda: sample_trajectories(env, TablePolicy(env, log_pf), n, gen), 3)
    from sculpt_core.domains.grid.policy import GridPolicyConfig, GridPolicyNet

    net = GridPolicyNet(GridPolicyConfig())

    class NetPolicy:
        def start(self, k):
            return None

        def log_probs(self, states, carry):
            with torch.no_grad():
                return normalize_log_policy(env, net.raw(states)[:, :3], states)

        def advance(self, carry, s, a, s2):
            return None

    net_s = timed(lambda: sample_trajectories(env, NetPolicy(), n, gen), 1)
    record = {
        "bench": "grid_core",
        "torch_threads": torch.get_num_threads(),
        "exact_dp_32x32_ms": round(dp_s * 1e3, 3),
        "per_cell_loop_dp_ms": round(base_s * 1e3, 2),
        "dp_speedup_vs_per_cell": round(base_s / dp_s, 1),
        "dp_max_abs_diff_vs_baseline": agree,
        "rollout_traj_per_s_table": round(n / table_s),
        "rollout_traj_per_s_network_each_step": round(n / net_s),
        "rollout_speedup": round(net_s / table_s, 1),
    }
    if not args.skip_training:
        training = {}
        for name, (reward, temperature, beta_conditioned) in GRID_ZOO_SPECS.items():
            if beta_conditioned:
                continue
            cfg = GridTrainConfig(steps=4000, eval_every=50, target_l1=args.target_l1)
            t0 = time.perf_counter()
            _, info = train_grid_model(grid_log_reward(env, reward), temperature, cfg, reward)
            training[name] = {"seconds_to_target": round(time.perf_counter() - t0, 1), "steps": info["steps"],
                              "l1": round(info["l1"], 4), "reached": info["l1"] <= args.target_l1}
        record["train_to_l1"] = training
        record["target_l1"] = args.target_l1
    print(json.dumps(record))


if __name__ == "__main__":
    main()
