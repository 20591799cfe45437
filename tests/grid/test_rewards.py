import math

import numpy as np
import pytest
import torch

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid import rewards as R


def at(fn, x0, x1):
    return fn(torch.tensor([[x0, x1]], dtype=torch.float64)).exp().item()


def test_reward_values_at_known_points():
    assert math.isclose(at(R.corners, 0.7, -0.7), 2.5 + 1e-3)
    assert math.isclose(at(R.corners, 0.0, 0.0), 1e-3)
    assert math.isclose(at(R.diag_sigmoid, 0.3, -0.3), 0.5 + 1e-5)
    # currin at x' = (0.5, 0.5): (1 - e^-1) * 1868.5 / 159.5 / 13.77
    assert math.isclose(at(R.currin, 0.0, 0.0), (1 - math.exp(-1)) * 1868.5 / 159.5 / 13.77 + 1e-8, rel_tol=1e-9)
    # branin's global minimum 0.397887 at (u, v) = (π, 2.275), with u = 15x0'-5, v = 15x1'
    x0, x1 = 2 * (math.pi + 5) / 15 - 1, 2 * 2.275 / 15 - 1
    assert math.isclose(at(R.branin, x0, x1), 1 - 0.397887 / 308.13 + 1e-8, rel_tol=1e-6)
    # circle1 at its centre: A / (2πσ²) + B; far outside: 0.1
    assert math.isclose(at(R.circle1, -0.3, 0.0), 2.5 / (2 * math.pi * 0.09) + 6.5 + 1e-8, rel_tol=1e-12)
    assert math.isclose(at(R.circle1, 0.9, 0.9), 0.1 + 1e-8)


def test_shubert_is_normalised_and_symmetric_variant_is_symmetric():
    env = GridEnv(64, 2)
    r = R.grid_log_reward(env, "shubert").exp()
    assert 0.9 < r.max().item() <= 1.0 + 1e-3 and r.min().item() >= 1e-3 - 1e-12
    s = R.grid_log_reward(env, "symmetric_shubert")
    assert torch.allclose(s, s.flip(0)) and torch.allclose(s, s.flip(1))


def test_index_convention_is_not_transposed():
    # diag_sigmoid is symmetric, circle2's centre has x1 > 0: the mass must sit at large z1
    env = GridEnv(32, 2)
    r = R.grid_log_reward(env, "circle2")
    z0, z1 = np.unravel_index(int(r.argmax()), (32, 32))
    assert z1 > 16 and z0 >= 16


def test_temperature_sharpens_target():
    env = GridEnv(16, 2)
    log_r = R.grid_log_reward(env, "circle1")
    p1 = R.target_log_distribution(log_r, 1.0).exp()
    p_half = R.target_log_distribution(log_r, 0.5).exp()
    assert math.isclose(p1.sum().item(), 1.0) and p_half.max() > p1.max()
    with pytest.raises(SculptError, match="temperature"):
        R.target_log_distribution(log_r, 0.0)


def test_bad_reward_inputs(tmp_path):
    env = GridEnv(8, 2)
    with pytest.raises(SculptError, match="unknown grid reward"):
        R.grid_log_reward(env, "nope")
    with pytest.raises(SculptError, match="shape"):
        R.validate_log_reward(env, np.zeros((8, 7)))
    bad = np.zeros((8, 8))
    bad[2, 3] = np.nan
    with pytest.raises(SculptError, match="NaN"):
        R.validate_log_reward(env, bad)
    with pytest.raises(SculptError, match="every cell is -inf"):
        R.validate_log_reward(env, np.full((8, 8), -np.inf))
    path = tmp_path / "r.npy"
    path.write_bytes(b"not an npy file")
    with pytest.raises(SculptError, match="not a .npy file"):
        R.load_log_reward_file(env, path)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SculptError):
        R.load_log_reward_file(env, tmp_path / "obj.npy")
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).normal(size=(8, 8)))
    assert R.load_log_reward_file(None, tmp_path / "ok.npy").shape == (8, 8)
