"""The fast paths of molecule base-model training agree with the reference computations they replace.

- the loss terms recorded during the roll-out (one forward pass per roll-out step, kept differentiable) equal
  one batched forward pass over every visited state (the old ``train_step``), values and gradients;
- the recording roll-out draws exactly the trajectories of the plain per-trajectory-β policy;
- the policy's factored forward pass equals its reference transcription (values, gradients), and the shipped
  checkpoints draw the same molecules with either;
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rdkit", reason="RDKit is needed for the fragment environment")

from sculpt_core.domains.molecules.env import FragmentEnv  # noqa: E402
from sculpt_core.domains.molecules.fragments import resolve_fragments_path  # noqa: E402
from sculpt_core.domains.molecules.model import MolBaseModel, PerTrajectoryBetaPolicy  # noqa: E402
from sculpt_core.domains.molecules.sampling import sample_trajectories  # noqa: E402
from sculpt_core.domains.molecules.train import (MolTrainConfig, batched_step_terms, log_rewards,  # noqa: E402
                                                 sample_training_batch, tb_db_losses)
from sculpt_core.errors import SculptError  # noqa: E402
from helpers import full_fragment_env, full_fragment_library  # noqa: E402,F401 (fixtures env, lib)

try:
    resolve_fragments_path()
except SculptError as exc:  # the shared data folder is not part of the repository
    pytest.skip(f"fragment table unavailable: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def trained_like(env: FragmentEnv) -> MolBaseModel:
    """A small random model with sharpened heads (so the draws are far from uniform), in training mode."""
    torch.manual_seed(1)
    m = MolBaseModel.create(env, hidden=32, n_layers=2, name="paths")
    with torch.no_grad():
        for head in (m.net.stop_head, m.net.add_head, m.net.edge_head, m.net.flow_head):
            head[-1].weight.mul_(4.0)
            head[-1].bias.mul_(4.0)
    m.net.train()
    return m


def _grads(model: MolBaseModel, loss: torch.Tensor) -> list[torch.Tensor]:
    model.net.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.net.parameters()]


def test_recorded_terms_equal_one_batched_forward(trained_like):
    cfg = MolTrainConfig(batch_size=24, seed=5)
    betas, traj, lpf, flow = sample_training_batch(trained_like, cfg, torch.Generator().manual_seed(5))
    ref_lpf, ref_flow = batched_step_terms(trained_like, traj, betas)
    assert lpf.shape == ref_lpf.shape == (int(traj.lengths.sum()),)
    torch.testing.assert_close(lpf, ref_lpf, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(flow, ref_flow, atol=2e-5, rtol=1e-5)

    log_r = log_rewards(torch.rand(24, generator=torch.Generator().manual_seed(0)), betas, torch.ones(24, dtype=torch.bool))
    tb, db = tb_db_losses(trained_like, traj, betas, log_r, lpf, flow)
    ref_tb, ref_db = tb_db_losses(trained_like, traj, betas, log_r, ref_lpf, ref_flow)
    torch.testing.assert_close(tb, ref_tb, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(db, ref_db, atol=1e-4, rtol=1e-6)
    for g, ref in zip(_grads(trained_like, tb + db), _grads(trained_like, ref_tb + ref_db)):
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4)


def test_recording_rollout_draws_the_plain_policys_trajectories(trained_like):
    cfg = MolTrainConfig(batch_size=32, seed=7)
    betas, traj, _, _ = sample_training_batch(trained_like, cfg, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    torch.rand(32, generator=gen, dtype=torch.float64)  # the β draw sample_training_batch makes first
    plain = sample_trajectories(trained_like.env, PerTrajectoryBetaPolicy(trained_like, betas), 32, gen,
                                cfg.epsilon, with_smiles=False)
    assert torch.equal(plain.actions, traj.actions) and torch.equal(plain.lengths, traj.lengths)
    assert plain.states == traj.states


def _visited_states(model: MolBaseModel, n: int, seed: int) -> list:
    traj = sample_trajectories(model.env, model.policy(32.0), n, torch.Generator().manual_seed(seed), 0.3,
                               with_smiles=False)
    return traj.transitions()[0]


def test_factored_forward_equals_the_reference_forward(trained_like):
    net = trained_like.net
    states = _visited_states(trained_like, 16, 3)
    batch = trained_like.env.batch_graphs(states)
    cond = net.encode_beta(torch.linspace(0.0, 96.0, len(states)))
    fast, ref = net(batch, cond), net.forward_reference(batch, cond)
    for name in ("stop", "add_node", "set_edge", "log_flow"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=2e-5, rtol=1e-5)

    def total(out) -> torch.Tensor:
        w = torch.Generator().manual_seed(0)  # fixed random weights so no gradient cancels by symmetry
        return sum((getattr(out, k) * torch.randn(getattr(out, k).shape, generator=w)).sum()
                   for k in ("stop", "add_node", "set_edge", "log_flow"))

    for g, r in zip(_grads(trained_like, total(fast)), _grads(trained_like, total(ref))):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_shipped_models_sample_as_with_the_reference_forward(monkeypatch):
    """The shipped checkpoints draw the same molecules (fixed seed) with the factored pass and the reference."""
    from pathlib import Path

    zoo = Path(__file__).resolve().parents[2] / "assets" / "zoo" / "mol"
    paths = [zoo / f"{n}.pt" for n in ("seh", "sa", "qed") if (zoo / f"{n}.pt").is_file()]
    if not paths:
        pytest.skip("no shipped molecule models")
    for path in paths:
        model = MolBaseModel.load(path)
        fast = sample_trajectories(model.env, model.policy(32.0), 48, torch.Generator().manual_seed(11), 0.1)
        with monkeypatch.context() as mp:
            mp.setattr(type(model.net), "forward", type(model.net).forward_reference)
            ref = sample_trajectories(model.env, model.policy(32.0), 48, torch.Generator().manual_seed(11), 0.1)
        assert torch.equal(fast.actions, ref.actions) and fast.smiles == ref.smiles, path.name
