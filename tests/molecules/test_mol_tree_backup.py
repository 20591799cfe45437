"""The tree backup of the chain objective on the tiny exact library (3 fragments, ≤ 3 nodes).

Targets G_t = Σ_a p_M(a | s_t) V(s_t, a) + λ p_M(a_t | s_t) (G_{t+1} − V(s_t, a_t)) reproduce the exact chain
posterior at every stored state for every λ, whichever policy made the moves (guided branches included); with a
posterior that is not harmonic for the mixture chain (the A.1 fixed point) they do not; leaf values from exact
flows give the same targets. Short training with the tree backup cuts the guided L1 to within 10% of the
Monte-Carlo targets' (or below) at the same budget. Fixtures come from
``test_mol_compose`` (same library, same random bases).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("rdkit", reason="RDKit is needed for the fragment environment")

from sculpt_core.core import algebra as A  # noqa: E402
from sculpt_core.core.guidance import tree_backup_targets  # noqa: E402
from sculpt_core.domains.molecules.compose import GuidedPolicy  # noqa: E402
from sculpt_core.domains.molecules.exact import ExactClassifier  # noqa: E402
from sculpt_core.domains.molecules.sampling import sample_trajectories  # noqa: E402
from sculpt_core.domains.molecules.train_classifier import (BranchPolicy, MixtureChainPolicy,  # noqa: E402
                                                            MolClassifierTrainConfig, _assemble, make_tree_targets,
                                                            train_mol_classifier)
from sculpt_core.errors import SculptError  # noqa: E402
from test_mol_compose import (BETA, _SHORT_RUN, _exact_flow_models, _guided_l1_fn,  # noqa: E402,F401
                              bases2, bases3, dp, env, models, tables)


def test_tree_backup_formula_on_a_two_step_chain():
    """Row 0 moves (action 1) into row 1, which stops (action 0): G_1 = E_1, G_0 = E_0 + λ p (G_1 − V)."""
    log_pm = torch.tensor([[math.log(0.25), math.log(0.75)], [math.log(0.5), math.log(0.5)]])
    values = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.0, 1.0]]])  # [S, A, K] probabilities
    taken, nxt = torch.tensor([1, 0]), torch.tensor([1, -1])
    e0 = 0.25 * values[0, 0] + 0.75 * values[0, 1]
    e1 = 0.5 * values[1, 0] + 0.5 * values[1, 1]
    for lam in (0.0, 0.3, 1.0):
        g = tree_backup_targets(log_pm, values.log(), taken, nxt, lam)
        assert torch.allclose(g[1], e1.double())
        assert torch.allclose(g[0], (e0 + lam * 0.75 * (e1 - values[0, 1])).double())
        assert torch.allclose(g.sum(1), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="λ"):
        tree_backup_targets(log_pm, values.log(), taken, nxt, 1.5)


def _stored(env, dp, tables, bases3, exact):
    """Trajectories of a base model, of the mixture chain and of guided branches, assembled as training rows."""
    gen = torch.Generator().manual_seed(5)
    policies = [bases3.models[0].policy(BETA), MixtureChainPolicy(bases3, exact),
                BranchPolicy(GuidedPolicy(bases3, A.conditioning((1, 2, 3), 3), exact, "exact"),
                             MixtureChainPolicy(bases3, exact), gen)]
    rows = []
    for policy in policies:
        traj = sample_trajectories(env, policy, 24, gen)
        rows += [(-1, traj.states[b], traj.actions[b, : int(traj.lengths[b])].tolist(), 0) for b in range(len(traj))
                 if bool(traj.valid[b])]
    return _assemble(rows, True, torch.zeros(len(rows)))


def test_tree_targets_reproduce_the_exact_chain_posterior_whoever_made_the_moves(env, dp, tables, bases3):
    exact = ExactClassifier(dp, tables[3], n_labels=3, kind="chain")
    data = _stored(env, dp, tables, bases3, exact)
    assert len(data.nonterminal) > 100 and (data.nt_next == -1).sum() == len(data.terminal)
    truth = exact.log_q_nonterminal(data.nonterminal).flatten(1).exp()
    for lam in (0.0, 0.5, 1.0):
        got = make_tree_targets(bases3, exact, 3, lam)(data)
        # float32 base networks evaluated in other batches than the exact tables: ~1e-8 differences
        assert (got - truth).abs().sum(1).max() < 1e-6, lam
    # the A.1 fixed point is not harmonic for the mixture chain: its backup moves it (the test can fail)
    a1 = ExactClassifier(dp, tables[3], n_labels=3, kind="a1")
    a1.log_mixture_weights = exact.log_mixture_weights  # same mixture, another value function
    a1.mixture_from_embedding = exact.mixture_from_embedding
    moved = make_tree_targets(bases3, a1, 3, 0.0)(data) - a1.log_q_nonterminal(data.nonterminal).flatten(1).exp()
    assert moved.abs().max() > 1e-3


def test_tree_targets_with_flow_leaves_match_the_exact_posterior(env, dp, tables, models, bases3):
    """Leaf values from the bases' (here exact) flows, taken from the same pass as p_F: the same exact targets."""
    from sculpt_core.domains.molecules.compose import prepare_mol_bases

    exact = ExactClassifier(dp, tables[3], n_labels=3, kind="chain")
    data = _stored(env, dp, tables, bases3, exact)
    flow_bases = prepare_mol_bases(_exact_flow_models(dp, models, tables[3]), BETA)
    truth = exact.log_q_nonterminal(data.nonterminal).flatten(1).exp()
    got = make_tree_targets(flow_bases, exact, 3, 1.0, flow_leaves=True)(data)
    assert (got - truth).abs().sum(1).max() < 1e-6
    shifted = make_tree_targets(flow_bases, exact, 3, 1.0, flow_leaves=True,
                                offsets=torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))(data)
    assert (shifted - truth).abs().sum(1).max() > 1e-3  # the offsets reach the leaves


def test_tree_backup_needs_mixture_weights_and_the_chain_objective(env, dp, tables, bases3):
    exact = ExactClassifier(dp, tables[3], n_labels=3, kind="a1")  # no mixture weights of its own
    data = _stored(env, dp, tables, bases3, ExactClassifier(dp, tables[3], n_labels=3, kind="chain"))
    with pytest.raises(SculptError, match="mixture weights"):
        make_tree_targets(bases3, exact, 3, 0.5)(data)
    with pytest.raises(SculptError, match="chain objective"):
        MolClassifierTrainConfig(objective="a1", backup="tree")
    with pytest.raises(SculptError, match="backup"):
        MolClassifierTrainConfig(objective="chain", backup="td")
    with pytest.raises(SculptError, match="tree_lambda"):
        MolClassifierTrainConfig(objective="chain", backup="tree", tree_lambda=-0.1)


def test_tree_backup_training_cuts_guided_l1_at_least_as_far_as_mc(env, dp, tables, models, bases2):
    guided_l1 = _guided_l1_fn(dp, tables, bases2, [A.harmonic_mean(0.5), A.contrast(0.3)])
    common = dict(_SHORT_RUN, seed=103, ema=0.9)  # the backup bootstraps from the target network: a faster average
    a1, _ = train_mol_classifier(models[:2], BETA, MolClassifierTrainConfig(steps=20, warmup=5, objective="a1", **common))
    before = guided_l1(a1)
    runs = {}
    for backup in ("mc", "tree"):
        cfg = MolClassifierTrainConfig(steps=160, warmup=40, objective="chain", branch_fraction=0.5, backup=backup,
                                       tree_lambda=1.0, **common)
        net, info = train_mol_classifier(models[:2], BETA, cfg, init=a1)
        runs[backup] = guided_l1(net)
        assert info["backup"] == backup
    print("guided L1 before", before, "mc", runs["mc"], "tree", runs["tree"])
    for b, a in zip(before, runs["tree"]):
        assert a < b / 1.5, (before, runs)
    assert sum(runs["tree"]) <= 1.1 * sum(runs["mc"]), runs
