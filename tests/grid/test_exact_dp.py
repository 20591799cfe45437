import math

import torch

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.domains.grid.exact import backward_expectation, log_reaching, log_terminal, normalize_log_policy
from sculpt_core.core.metrics import l1_distance
from sculpt_core.domains.grid.sampling import TablePolicy, sample_trajectories, terminal_histogram

from helpers import random_model


def test_always_stop_puts_all_mass_on_origin():
    env = GridEnv(5, 2)
    logits = torch.full((env.n_states, 3), -50.0)
    logits[:, 2] = 0.0
    p = log_terminal(env, normalize_log_policy(env, logits)).exp()
    assert abs(p[0].item() - 1.0) < 1e-12 and abs(p.sum().item() - 1.0) < 1e-12


def test_uniform_policy_on_2x2_grid_by_hand():
    # valid actions: (0,0): 3, (0,1): move d0 + stop, (1,0): move d1 + stop, (1,1): stop only
    env = GridEnv(2, 2)
    p = log_terminal(env, normalize_log_policy(env, torch.zeros(4, 3))).exp().reshape(2, 2)
    expected = torch.tensor([[1 / 3, 1 / 6], [1 / 6, 1 / 3]], dtype=torch.float64)
    assert torch.allclose(p, expected, atol=1e-15)


def test_deterministic_policy_reaches_a_single_cell():
    env = GridEnv(6, 2)
    states = env.all_states()
    logits = torch.full((env.n_states, 3), -1e9)
    # go along dim 0 until z0 = 4, then along dim 1 until z1 = 2, then stop
    go0 = states[:, 0] < 4
    go1 = ~go0 & (states[:, 1] < 2)
    logits[go0, 0] = 0
    logits[go1, 1] = 0
    logits[~go0 & ~go1, 2] = 0
    p = log_terminal(env, normalize_log_policy(env, logits)).exp().reshape(6, 6)
    assert p[4, 2].item() == 1.0 and p.sum().item() == 1.0


def test_dp_sums_to_one_and_matches_sampling():
    model = random_model(height=8, seed=3, scale=1.0)
    env = model.env
    log_pf = model.tables().log_pf
    p = log_terminal(env, log_pf).exp()
    assert abs(p.sum().item() - 1.0) < 1e-9
    n = 200_000
    traj = sample_trajectories(env, TablePolicy(env, log_pf), n, torch.Generator().manual_seed(0))
    hist = terminal_histogram(env, traj)
    l1 = l1_distance(hist, p.reshape(env.shape))
    # expected L1 of an n-sample histogram ≈ Σ sqrt(2 p(1-p)/(π n)); allow 1.5x that noise floor
    floor = float((2 * p * (1 - p) / (math.pi * n)).sqrt().sum())
    assert l1 < 1.5 * floor, (l1, floor)


def test_reaching_probability_is_the_visit_frequency():
    model = random_model(height=6, seed=5, scale=1.0)
    env = model.env
    log_pf = model.tables().log_pf
    u = log_reaching(env, log_pf).exp()
    traj = sample_trajectories(env, TablePolicy(env, log_pf), 100_000, torch.Generator().manual_seed(1))
    visits = torch.zeros(env.n_states, dtype=torch.float64)
    for t in range(traj.states.shape[1]):
        alive = traj.length > t  # state at position t was visited (s_t for t < length)
        visits += torch.bincount(env.flat_index(traj.states[alive, t]), minlength=env.n_states)
    assert torch.allclose(visits / 100_000, u, atol=0.01)
    assert u[0].item() == 1.0


def test_backward_expectation_of_constant_is_constant_and_of_indicator_is_hitting_prob():
    model = random_model(height=7, seed=2)
    env = model.env
    log_pf = model.tables().log_pf
    v = backward_expectation(env, log_pf, torch.zeros(env.n_states, dtype=torch.float64))
    assert torch.allclose(v, torch.zeros_like(v), atol=1e-12)
    # E[1{x = cell}] from s0 is p(cell)
    log_p = log_terminal(env, log_pf)
    cell = 17
    ind = torch.full((env.n_states,), float("-inf"), dtype=torch.float64)
    ind[cell] = 0.0
    assert math.isclose(backward_expectation(env, log_pf, ind)[0].exp().item(), log_p[cell].exp().item(), rel_tol=1e-10)


def test_dp_on_a_3d_grid():
    env = GridEnv(5, 3)
    p = log_terminal(env, normalize_log_policy(env, torch.randn(env.n_states, 4))).exp()
    assert abs(p.sum().item() - 1.0) < 1e-9
