"""The one roll-out loop reproduces, draw for draw, the outputs the two per-domain loops gave before they were
merged (recorded in ``tests/core/data/sampling_reference.json`` with the same seeds): grid table policies with and
without ε-exploration, grid trajectory-product reaching (a carried policy), the grid training roll-out, and
molecule base / trajectory-product / per-trajectory-β policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import random_model, tiny_fragment_env
from sculpt_core.core import algebra as A
from sculpt_core.domains.grid.compose import prepare_bases, sample_composed
from sculpt_core.domains.grid.sampling import TablePolicy, rollout_from_tables, sample_trajectories

REF = json.loads((Path(__file__).parent / "data" / "sampling_reference.json").read_text())


@pytest.fixture(scope="module")
def grid_bases():
    return prepare_bases([random_model(8, seed=s) for s in (0, 1)])


def _check_grid(traj, ref) -> None:
    assert traj.actions.tolist() == ref["actions"]
    assert traj.length.tolist() == ref["length"]
    assert traj.terminal_states.tolist() == ref["terminal"]
    assert traj.states.shape[1] == ref["n_steps_states"]
    # the path is the running sum of the moves up to the stop, zero padding after it
    moves = torch.nn.functional.one_hot(traj.actions.clamp(min=0), 3)[..., :2] * (traj.actions >= 0)[..., None]
    taken = (torch.arange(traj.actions.shape[1])[None, :] < traj.length[:, None])[..., None]
    assert torch.equal(traj.states[:, 1:], moves.cumsum(1) * taken)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_grid_table_policy_matches_recorded(grid_bases, eps):
    env = grid_bases.env
    traj = sample_trajectories(env, TablePolicy(env, grid_bases.log_pf[0]), 300, torch.Generator().manual_seed(3), eps)
    _check_grid(traj, REF[f"grid_table_eps{eps}"])


def test_grid_trajectory_product_matches_recorded(grid_bases):
    _check_grid(sample_composed(grid_bases, A.harmonic_mean(), 300, seed=5), REF["grid_traj_product"])


def test_grid_training_rollout_matches_recorded(grid_bases):
    env = grid_bases.env
    traj, acts, _ = rollout_from_tables(env, grid_bases.log_pf.reshape(-1, env.n_actions), torch.tensor([0, 64] * 50),
                                        0.05, torch.Generator().manual_seed(2))
    assert traj.tolist() == REF["grid_rollout_tables"]["traj"]
    assert acts.tolist() == REF["grid_rollout_tables"]["actions"]


# ----- molecules ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mol():
    from sculpt_core.domains.molecules.model import MolBaseModel

    env = tiny_fragment_env()
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = MolBaseModel.create(env, hidden=16, n_layers=2, name=f"r{seed}")
        with torch.no_grad():
            for head in (m.net.stop_head, m.net.add_head, m.net.edge_head, m.net.flow_head):
                head[-1].weight.mul_(5.0)
                head[-1].bias.mul_(5.0)
        m.net.eval()
        models.append(m)
    return env, models


def _check_mol(traj, ref) -> None:
    from sculpt_core.domains.molecules.env import canonical_key

    assert traj.actions.tolist() == ref["actions"]
    assert traj.lengths.tolist() == ref["lengths"]
    if "smiles" in ref:
        assert traj.smiles == ref["smiles"]
        assert [repr(canonical_key(s)) for s in traj.terminal] == ref["terminal"]
    assert [len(p) for p in traj.states] == [n + 1 for n in ref["lengths"]]


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_mol_base_policy_matches_recorded(mol, eps):
    from sculpt_core.domains.molecules.sampling import sample_trajectories as mol_sample

    env, models = mol
    traj = mol_sample(env, models[0].policy(24.0), 200, torch.Generator().manual_seed(7), eps)
    _check_mol(traj, REF[f"mol_base_eps{eps}"])


def test_mol_carried_policies_match_recorded(mol):
    from sculpt_core.domains.molecules.compose import composed_policy, prepare_mol_bases
    from sculpt_core.domains.molecules.model import PerTrajectoryBetaPolicy
    from sculpt_core.domains.molecules.sampling import sample_trajectories as mol_sample

    env, models = mol
    policy = composed_policy(prepare_mol_bases(models, 24.0), A.harmonic_mean(), "reaching", u_source="trajectory")
    _check_mol(mol_sample(env, policy, 200, torch.Generator().manual_seed(8)), REF["mol_traj_product"])
    per_beta = PerTrajectoryBetaPolicy(models[1], torch.linspace(2.0, 40.0, 150))
    traj = mol_sample(env, per_beta, 150, torch.Generator().manual_seed(9), 0.1, with_smiles=False)
    _check_mol(traj, REF["mol_per_beta"])
