import pickle

import pytest
import torch

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.domains.grid.rewards import grid_log_reward
from sculpt_core.domains.grid.train import GridTrainConfig, exact_l1, train_grid_model

SMALL = GridTrainConfig(steps=400, eval_every=100, batch_size=128, hidden=128, lr=3e-3)


@pytest.fixture(scope="module")
def trained():
    env = GridEnv(10, 2)
    return train_grid_model(grid_log_reward(env, "circle1"), 1.0, SMALL, "circle1")


def test_short_tb_training_reaches_stated_l1(trained):
    model, info = trained
    assert info["history"][0][1] > 0.15  # far from the target at first
    assert info["l1"] < 0.06, info["history"]  # stated target for 400 steps on a 10x10 grid (measured 0.024)
    assert model.meta["l1"] == info["l1"] and model.meta["steps"] == 400


def test_detailed_balance_learns_flows():
    env = GridEnv(8, 2)
    cfg = GridTrainConfig(loss="db", steps=400, eval_every=100, batch_size=128, hidden=128, lr=3e-3)
    model, info = train_grid_model(grid_log_reward(env, "diag_sigmoid"), 1.0, cfg, "diag_sigmoid")
    assert info["l1"] < 0.05, info["history"]
    t = model.tables()
    # learned u = F(s)/Z vs exact reaching probability, where the policy puts most mass
    u_exact = t.exact_log_u(env).exp()
    u_flow = (t.log_flow - t.log_flow[0]).exp()
    busy = u_exact > 0.05
    assert ((u_flow[busy] - u_exact[busy]).abs() / u_exact[busy]).mean() < 0.1


def test_beta_conditioned_training_follows_beta():
    env = GridEnv(8, 2)
    cfg = GridTrainConfig(steps=1000, eval_every=250, batch_size=256, hidden=128, lr=3e-3, beta_range=(0.5, 2.0))
    model, _ = train_grid_model(grid_log_reward(env, "circle2"), 1.0, cfg, "circle2")
    assert model.beta_range == (0.0, 2.0)
    gap = (model.target_log_p(0.5).exp() - model.target_log_p(2.0).exp()).abs().sum().item()
    # the model at each β is much closer to that β's target than the two targets are to each other
    assert exact_l1(model, 2.0) < 0.4 * gap and exact_l1(model, 0.5) < 0.4 * gap
    with pytest.raises(SculptError, match="outside"):
        model.tables(5.0)


def test_checkpoint_round_trip(trained, tmp_path):
    model, _ = trained
    path = model.save(tmp_path / "m.pt")
    loaded = GridBaseModel.load(path)
    assert loaded.meta == model.meta and torch.equal(loaded.log_reward, model.log_reward)
    assert torch.allclose(loaded.tables().log_pf, model.tables().log_pf)


def test_corrupt_and_hostile_checkpoints_are_refused(trained, tmp_path):
    model, _ = trained
    good = model.save(tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(SculptError, match="not a readable Sculpt checkpoint"):
        GridBaseModel.load(truncated)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "sculpt.grid_base_model", "payload": Evil()}, hostile, _use_new_zipfile_serialization=True)
    with pytest.raises(SculptError, match="refused or corrupt"):
        GridBaseModel.load(hostile)
    assert not marker.exists()

    wrong = tmp_path / "wrong.pt"
    torch.save({"format": "something.else"}, wrong)
    with pytest.raises(SculptError, match="expected"):
        GridBaseModel.load(wrong)
    state = torch.load(good, weights_only=True)
    state["state_dict"] = {k: v.reshape(-1)[:1] for k, v in state["state_dict"].items()}
    torch.save(state, tmp_path / "shapes.pt")
    with pytest.raises(SculptError, match="do not fit"):
        GridBaseModel.load(tmp_path / "shapes.pt")
    with pytest.raises(SculptError, match="not found"):
        GridBaseModel.load(tmp_path / "missing.pt")


def test_bad_training_inputs():
    env = GridEnv(6, 2)
    log_r = grid_log_reward(env, "circle1")
    with pytest.raises(SculptError, match="NaN"):
        train_grid_model(torch.full((6, 6), float("nan")), 1.0, SMALL)
    with pytest.raises(SculptError, match="temperature"):
        train_grid_model(log_r, -1.0, SMALL)
    with pytest.raises(SculptError, match="loss"):
        GridTrainConfig(loss="fm")


def test_separate_flow_mlp_learns_u_without_moving_the_policy():
    env = GridEnv(8, 2)
    log_r = grid_log_reward(env, "diag_sigmoid")
    base = dict(steps=300, eval_every=300, batch_size=128, hidden=64, lr=3e-3, flow_hidden=64)
    with_flow, _ = train_grid_model(log_r, 1.0, GridTrainConfig(**base), "diag_sigmoid")
    without_flow, _ = train_grid_model(log_r, 1.0, GridTrainConfig(aux_flow=False, **base), "diag_sigmoid")
    t, t0 = with_flow.tables(), without_flow.tables()
    # the flow loss only reaches the flow MLP: the policy is the one trained without it
    assert torch.allclose(t.log_pf, t0.log_pf, atol=1e-6)
    u_exact = t.exact_log_u(env).exp()
    u_flow = (t.log_flow - t.log_flow[0]).exp()
    busy = u_exact > 0.05
    assert ((u_flow[busy] - u_exact[busy]).abs() / u_exact[busy]).mean() < 0.1
