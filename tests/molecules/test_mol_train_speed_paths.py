"""The fast paths of molecule base-model training agree with the reference computations they replace.

- the loss terms recorded during the roll-out (one forward pass per roll-out step, kept differentiable) equal
  one batched forward pass over every visited state (the old ``train_step``), values and gradients;
- the recording roll-out draws exactly the trajectories of the plain per-trajectory-β policy;
- the policy's factored forward pass equals its reference transcription (values, gradients), and the shipped
  checkpoints draw the same molecules with either;
- the sEH featurisation without a per-atom Python loop equals that loop; batched sEH scoring equals scoring one
  molecule at a time; rewards scored once per distinct molecule equal scoring every entry; assembling a batch of
  states and the memoised forward mask equal the plain calls;
- the per-trajectory TB residual (grouped sums over the flat step list) equals a loop over trajectories, and a
  fixed evaluation set is reproducible from its seed and scores every checkpoint on the same trajectories.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit", reason="RDKit is needed for the fragment environment")

from sculpt_core.domains.molecules.env import FragmentEnv  # noqa: E402
from sculpt_core.domains.molecules.fragments import resolve_fragments_path  # noqa: E402
from sculpt_core.domains.molecules.model import MolBaseModel, PerTrajectoryBetaPolicy  # noqa: E402
from sculpt_core.domains.molecules.sampling import sample_trajectories  # noqa: E402
from sculpt_core.domains.molecules.train import (MolTrainConfig, batched_step_terms, evaluate_tb_loss,  # noqa: E402
                                                 log_rewards, make_tb_eval_set, sample_training_batch,
                                                 tb_db_losses, tb_residuals)
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


# ----- rewards and assembly ----------------------------------------------------------------------------------
def _reference_atom_features(mol) -> np.ndarray:
    """The per-atom loop ``seh_proxy.atom_features`` replaced (its columns, one atom at a time)."""
    from rdkit.Chem import HybridizationType

    from sculpt_core.domains.molecules.seh_proxy import _ELEMENT_CLASS

    hyb_col = {HybridizationType.SP: 10, HybridizationType.SP2: 11, HybridizationType.SP3: 12}
    x = np.zeros((mol.GetNumAtoms(), 71), dtype=np.float32)
    for i, atom in enumerate(mol.GetAtoms()):
        z = atom.GetAtomicNum()
        x[i, _ELEMENT_CLASS.get(atom.GetSymbol(), 5)] = 1.0
        if atom.GetIsAromatic():
            x[i, 9] = 1.0
        col = hyb_col.get(atom.GetHybridization())
        if col is not None:
            x[i, col] = 1.0
        if z > 0:
            x[i, 13 + z] = 1.0
        x[i, 13] = atom.GetTotalNumHs(includeNeighbors=True)
    return x


def _reference_edges(mol) -> list[tuple[int, int, int]]:
    from rdkit.Chem import BondType

    kinds = {BondType.SINGLE: 0, BondType.UNSPECIFIED: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2, BondType.AROMATIC: 3}
    edges = []
    for b in mol.GetBonds():
        i, j, t = b.GetBeginAtomIdx(), b.GetEndAtomIdx(), kinds[b.GetBondType()]
        edges += [(i, j, t), (j, i, t)]
    return sorted(edges) if edges else [(0, 0, 4)]


ODD_SMILES = ("[Cl-].[Na+]", "[2H]OC", "c1ccccc1C#N", "C", "*CC(=O)[O-]", "c1cc[nH]c1", "C[N+](C)(C)C",
              "O=S(=O)(N)c1ccc(Br)cc1I", "P(=O)(O)(O)OC[Se]C", "[Si](C)(C)C=C", "N#N", "[H][H]")


def test_vectorised_featurisation_equals_the_atom_loop(trained_like):
    from sculpt_core.domains.molecules.rewards import parse_smiles
    from sculpt_core.domains.molecules.seh_proxy import mol_to_graph

    traj = sample_trajectories(trained_like.env, trained_like.policy(32.0), 64, torch.Generator().manual_seed(2), 0.5)
    mols = [m for m in trained_like.env.to_mols(traj.terminal) if m is not None]
    mols += [parse_smiles(s) for s in ODD_SMILES]
    assert len(mols) > 40 and all(m is not None for m in mols)
    for mol in mols:
        g = mol_to_graph(mol)
        assert np.array_equal(g.x.numpy(), _reference_atom_features(mol))
        got = list(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist(), g.edge_type.tolist()))
        assert got == _reference_edges(mol)


def test_to_mols_and_mask_memo_match_the_plain_calls(trained_like):
    from rdkit import Chem

    env = trained_like.env
    traj = sample_trajectories(env, trained_like.policy(32.0), 24, torch.Generator().manual_seed(4), 0.2)
    states = traj.terminal + traj.terminal[:5]  # repeats share one Mol
    mols = env.to_mols(states)
    assert [None if m is None else Chem.MolToSmiles(m) for m in mols] == \
        [None if env.to_mol(s) is None else Chem.MolToSmiles(env.to_mol(s)) for s in states]
    assert [env.to_smiles(s) for s in traj.terminal] == traj.smiles
    visited = traj.transitions()[0]
    first = env.forward_mask(visited)
    first[:] = False  # the caller owns its copy: the memo is not changed through it
    assert torch.equal(env.forward_mask(visited), env._forward_mask(visited))
    assert torch.equal(env.forward_mask(list(visited)), env._forward_mask(visited))  # another list, same states
    assert torch.equal(env.forward_mask(visited[:7]), env._forward_mask(visited[:7]))


def test_score_unique_equals_scoring_every_entry(trained_like):
    from sculpt_core.domains.molecules.train import reward_fn, score_unique

    env = trained_like.env
    traj = sample_trajectories(env, trained_like.policy(32.0), 32, torch.Generator().manual_seed(6), 0.2,
                               with_smiles=False)
    mols = env.to_mols(traj.terminal + traj.terminal[:6]) + [None]
    calls: list[int] = []

    def counted(batch):
        calls.append(len(batch))
        return reward_fn("sa")(batch)

    got = score_unique(counted, mols)
    every = torch.tensor([float("nan") if m is None else float(reward_fn("sa")([m])[0]) for m in mols])
    assert torch.equal(got.isnan(), every.isnan()) and torch.equal(got[~got.isnan()], every[~every.isnan()])
    assert calls == [len({id(m) for m in mols if m is not None})]


def test_batched_seh_reward_equals_one_molecule_at_a_time(trained_like):
    from sculpt_core.domains.molecules.seh_proxy import seh_available
    from sculpt_core.domains.molecules.train import reward_fn

    if not seh_available():
        pytest.skip("sEH proxy weights unavailable")
    env = trained_like.env
    traj = sample_trajectories(env, trained_like.policy(32.0), 40, torch.Generator().manual_seed(8), 0.3,
                               with_smiles=False)
    mols = [m for m in env.to_mols(traj.terminal) if m is not None]
    fn = reward_fn("seh")
    batched = fn(mols)
    single = torch.cat([fn([m]) for m in mols])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=1e-5)


def test_tb_residual_equals_a_loop_over_trajectories(trained_like):
    cfg = MolTrainConfig(batch_size=12, seed=7)
    betas, traj, lpf, flow = sample_training_batch(trained_like, cfg, torch.Generator().manual_seed(7))
    log_r = log_rewards(torch.rand(12, generator=torch.Generator().manual_seed(1)), betas,
                        torch.ones(12, dtype=torch.bool))
    lpf = lpf.detach()
    res = tb_residuals(trained_like, traj, betas, log_r, lpf).detach()
    _, actions, nxt, idx = traj.transitions()
    env = trained_like.env
    with torch.no_grad():
        log_z = trained_like.net.log_z(trained_like.net.encode_beta(betas)).double()
    for b in range(12):
        rows = (idx == b).nonzero().flatten().tolist()
        assert len(rows) == int(traj.lengths[b])
        lpb = sum(0.0 if int(actions[k]) == env.stop_action else -float(env.log_n_parents([nxt[k]])[0])
                  for k in rows)
        expect = float(log_z[b]) + float(lpf[rows].sum()) - lpb - float(log_r[b])
        assert float(res[b]) == pytest.approx(expect, abs=1e-6)
    tb, _ = tb_db_losses(trained_like, traj, betas, log_r, lpf, flow.detach())
    assert float(tb.detach()) == pytest.approx(float(res.pow(2).mean()), rel=1e-9)


def test_fixed_evaluation_set_is_reproducible_and_paired(trained_like):
    fn = lambda mols: torch.tensor([0.1 + 0.8 * (m.GetNumAtoms() % 5) / 4 for m in mols], dtype=torch.float64)
    a = make_tb_eval_set([trained_like], fn, 10, seed=4, chunk=4)
    b = make_tb_eval_set([trained_like], fn, 10, seed=4, chunk=4)
    assert [len(c.traj) for c in a] == [4, 4, 2]
    for x, y in zip(a, b):
        assert torch.equal(x.betas, y.betas) and torch.equal(x.log_r, y.log_r)
        assert torch.equal(x.traj.lengths, y.traj.lengths)
    la, lb = evaluate_tb_loss(trained_like, a), evaluate_tb_loss(trained_like, b)
    assert la.shape == (10,) and torch.equal(la, lb) and bool((la >= 0).all())
    assert trained_like.net.training  # evaluation leaves the training mode as it found it
    # the set's loss is the mean square of each chunk's residuals under the model scored
    with torch.no_grad():
        ref = torch.cat([tb_residuals(trained_like, c.traj, c.betas, c.log_r, batched_step_terms(
            trained_like, c.traj, c.betas)[0]).pow(2) for c in a])
    torch.testing.assert_close(la, ref)
    with pytest.raises(SculptError, match="at least one trajectory"):
        make_tb_eval_set([trained_like], fn, 0)
