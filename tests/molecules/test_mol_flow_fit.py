"""Refitting a molecule base model's flow head (``domains/molecules/flow_fit.py``) against the exact DP of a tiny
fragment library: the backward estimate of log u is unbiased, the refit head approaches the exact reaching
probabilities, and nothing the policy computes (nor the classifier tie) changes."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import tiny_fragment_env

from sculpt_core.domains.molecules.compose import prepare_mol_bases  # noqa: E402
from sculpt_core.domains.molecules.exact import SpaceDP  # noqa: E402
from sculpt_core.domains.molecules.flow_fit import FlowFitConfig, fit_flow_head  # noqa: E402
from sculpt_core.domains.molecules.marginals import backward_log_weights, log_reaching  # noqa: E402
from sculpt_core.domains.molecules.model import MolBaseModel  # noqa: E402
from sculpt_core.errors import SculptError  # noqa: E402

BETA = 24.0


def _model(env, seed: int, hidden: int = 32) -> MolBaseModel:
    """A random, deliberately peaked policy (heads scaled up) so u spans several nats."""
    torch.manual_seed(seed)
    m = MolBaseModel.create(env, hidden=hidden, n_layers=2, meta={"beta_range": [0.0, 64.0]}, name=f"f{seed}")
    with torch.no_grad():
        for head in (m.net.stop_head, m.net.add_head, m.net.edge_head):
            head[-1].weight.mul_(4.0)
            head[-1].bias.mul_(4.0)
    m.net.eval()
    return m


@pytest.fixture(scope="module")
def env():
    return tiny_fragment_env()


@pytest.fixture(scope="module")
def dp(env) -> SpaceDP:
    return SpaceDP.build(env)


def _exact_log_u(dp: SpaceDP, model: MolBaseModel) -> torch.Tensor:
    return dp.log_reaching(dp.table(model.policy(BETA)))


def _flow_log_u(dp: SpaceDP, model: MolBaseModel) -> torch.Tensor:
    """What flow-u reaching mixes with: log F(s) − log F(s0) at every class."""
    return prepare_mol_bases([model], BETA).log_pf_and_u(dp.states)[1][0]


def test_backward_estimate_of_reaching_is_unbiased(env, dp):
    model = _model(env, 0)
    exact = _exact_log_u(dp, model)
    pick = torch.randperm(dp.n_states, generator=torch.Generator().manual_seed(3))[:60]
    states = [dp.states[i] for i in pick.tolist()]
    bases = prepare_mol_bases([model], BETA)
    est = log_reaching(bases, states, 256, torch.Generator().manual_seed(0))[0]
    err = est - exact[pick]
    assert float(err.abs().mean()) < 0.06 and abs(float(err.mean())) < 0.03
    s0 = [s for s in dp.states if s.n_nodes == 0]
    assert float(log_reaching(bases, s0, 4)[0, 0]) == 0.0  # u(s0) = 1 exactly
    # the same backward paths with and without the Stop differ by exactly log p_F(Stop | x)
    complete = [s for s in states if s.complete][:10]
    with_stop = backward_log_weights(bases, complete, 3, torch.Generator().manual_seed(5))
    without = backward_log_weights(bases, complete, 3, torch.Generator().manual_seed(5), stop=False)
    stop_lp = bases.log_pf(complete)[0, :, env.stop_action]
    assert torch.allclose(with_stop - without, stop_lp[None, :, None].expand_as(with_stop), atol=1e-12)


def test_refit_head_approaches_exact_reaching_and_keeps_the_policy(env, dp):
    model, other = _model(env, 1), _model(env, 2)
    exact = _exact_log_u(dp, model)
    before = float((_flow_log_u(dp, model) - exact).abs().mean())
    policy_fp, full_fp = model.policy_fingerprint(), model.fingerprint()
    log_pf = model.log_pf(dp.states, BETA).detach().clone()
    log_z = model.log_z(BETA).detach().clone()
    figures = fit_flow_head(model, [other], FlowFitConfig(betas=(BETA,), n_traj=256, k=16, steps=3000))
    after = float((_flow_log_u(dp, model) - exact).abs().mean())
    assert before > 2.0 and after < 0.25 * before, (before, after)
    assert figures["held_out_mae_log_u_after"] < figures["held_out_mae_log_u_before"]
    assert figures["pool_states"] <= dp.n_states and figures["behaviours"] == ["f1", "f2"]
    assert model.policy_fingerprint() == policy_fp and model.fingerprint() != full_fp
    assert torch.equal(model.log_pf(dp.states, BETA), log_pf) and torch.equal(model.log_z(BETA), log_z)
    assert not model.net.training


def test_refit_checks_its_inputs(env):
    model = _model(env, 0)
    for bad in ({"betas": ()}, {"betas": (math.nan,)}, {"k": 0}, {"steps": 1.5}, {"epsilon": 1.0},
                {"max_states": 0}, {"holdout": -0.1}):
        with pytest.raises(SculptError):
            FlowFitConfig(**bad)
    with pytest.raises(SculptError, match="outside"):
        fit_flow_head(model, [], FlowFitConfig(betas=(100.0,)))
    from sculpt_core.domains.molecules.flow_fit import default_fit_betas

    assert default_fit_betas(model) == (8.0, 16.0, 24.0, 32.0, 48.0, 64.0)  # inside its trained range [0, 64]
    narrow = _model(env, 0)
    narrow.meta["beta_range"] = [1.0, 5.0]
    assert default_fit_betas(narrow) == (3.0,)


def test_cli_fit_flow_writes_a_refitted_checkpoint_and_keeps_classifiers_tied(env, dp, tmp_path, capsys):
    import json

    from sculpt_core.cli import main
    from sculpt_core.domains.molecules.classifier import MolClassifier, MolClassifierConfig, save_mol_classifier
    from sculpt_core.domains.molecules.zoo import load_classifier_for

    paths = []
    for seed in (3, 4):
        path = tmp_path / f"b{seed}.pt"
        _model(env, seed).save(path)
        paths.append(str(path))
    models = [MolBaseModel.load(p) for p in paths]
    net = MolClassifier(MolClassifierConfig(env.n_frags, env.max_frags, 2, 2, hidden=8, n_layers=1), env)
    clf = save_mol_classifier(tmp_path / "clf.pt", net, ["b3", "b4"],
                              {"beta": BETA, "base_fingerprints": [m.policy_fingerprint() for m in models]})
    out = tmp_path / "b3_flow.pt"
    code = main(["mol", "fit-flow", "--model", paths[0], "--behaviours", paths[1], "--betas", "24", "--n-traj", "64",
                 "--k", "8", "--steps", "400", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["held_out_mae_log_u_after"] < report["held_out_mae_log_u_before"] and "pool:" in err
    refit = MolBaseModel.load(out)
    assert refit.meta["flow_fit"]["betas"] == [BETA] and refit.meta["has_flow"] is True
    exact = _exact_log_u(dp, refit)
    assert float((_flow_log_u(dp, refit) - exact).abs().mean()) < float((_flow_log_u(dp, models[0]) - exact).abs().mean())
    assert load_classifier_for([refit, models[1]], BETA, str(clf))[1] == ["b3", "b4"]  # still tied
    assert MolBaseModel.load(paths[0]).fingerprint() == models[0].fingerprint()  # the input is untouched
    for bad, message in ((["--betas", "24,x"], "--betas"), (["--betas", "80"], "outside"),
                         (["--behaviours", "nope"], "unknown molecule model")):
        code = main(["mol", "fit-flow", "--model", paths[0], "--out", str(tmp_path / "bad.pt"), "--steps", "2", *bad])
        _, err = capsys.readouterr()
        assert code == 2 and err.startswith("error:") and message in err, err
        assert not (tmp_path / "bad.pt").exists()


def test_depth_head_reads_nodes_plus_set_stems_in_both_forwards(env):
    from dataclasses import replace

    from sculpt_core.domains.molecules.flow_fit import install_flow_head, new_flow_head
    from sculpt_core.domains.molecules.policy import MolPolicyConfig
    from sculpt_core.domains.molecules.sampling import sample_trajectories

    model = _model(env, 5)
    install_flow_head(model, *new_flow_head(model, FlowFitConfig(head_hidden=24, head_layers=3), seed=0))
    assert model.net.cfg.flow_depth and model.net.cfg.flow_hidden == 24 and model.net.cfg.max_depth == 3 + 2 * 2
    traj = sample_trajectories(env, model.policy(BETA), 32, torch.Generator().manual_seed(0), 0.3, with_smiles=False)
    states = traj.transitions()[0] + traj.terminal
    batch = env.batch_graphs(states)
    one_hot = model.net.flow_input(batch, torch.zeros(len(states), 2))[:, 2:]
    assert one_hot.argmax(1).tolist() == [s.n_nodes + s.n_set_stems for s in states]
    assert max(s.n_nodes + s.n_set_stems for s in states) > 2
    cond = model.net.encode_beta(torch.full((len(states),), BETA))
    torch.testing.assert_close(model.net(batch, cond).log_flow, model.net.forward_reference(batch, cond).log_flow)
    with pytest.raises(SculptError):
        MolPolicyConfig(flow_hidden=-1)
    with pytest.raises(SculptError):
        replace(model.net.cfg, flow_layers=0)


def test_flow_fit_note_names_heads_not_refitted_for_the_beta(env):
    from sculpt_core.domains.molecules.compose import flow_fit_note

    plain, refit = _model(env, 6), _model(env, 7)
    refit.meta["flow_fit"] = {"betas": [16.0, 32.0]}
    assert flow_fit_note([refit], 24.0) is None and flow_fit_note([refit], 32.0) is None
    note = flow_fit_note([plain, refit], 40.0)
    assert "f6 (flow head not refitted)" in note and "f7 (refitted for β in [16, 32])" in note and "fit-flow" in note


def test_refit_is_all_or_nothing_dedupes_behaviours_and_old_ties_still_match(env, monkeypatch):
    import sculpt_core.domains.molecules.flow_fit as FF
    from sculpt_core.domains.molecules.train import MolTrainConfig, train_mol_model

    model = _model(env, 8)
    full_fp, cfg_before = model.fingerprint(), model.net.cfg
    seen = []
    real = FF.collect_states

    def spy(models, cfg, gen):
        seen.append([m.name for m in models])
        return real(models, cfg, gen)

    def broken(*_a, **_k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(FF, "collect_states", spy)
    monkeypatch.setattr(FF, "head_inputs", broken)
    with pytest.raises(RuntimeError):  # the model named again as a behaviour (same policy): rolled out once
        fit_flow_head(model, [model, _model(env, 8)], FlowFitConfig(betas=(BETA,), n_traj=8, k=2, steps=5))
    assert seen == [["f8"]]
    assert model.fingerprint() == full_fp and model.net.cfg == cfg_before  # nothing installed
    # a classifier tied before policy fingerprints existed recorded the full fingerprint: still accepted
    assert model.matches_fingerprint(full_fp) and model.matches_fingerprint(model.policy_fingerprint())
    assert not model.matches_fingerprint(_model(env, 9).fingerprint())
    # training moves the policy and the head: a recorded refit is dropped
    model.meta["flow_fit"] = {"betas": [BETA]}
    trained, _ = train_mol_model(lambda mols: torch.ones(len(mols)), MolTrainConfig(steps=1, batch_size=4,
                                 beta_range=(0.0, 64.0), eval_every=1), model=model)
    assert "flow_fit" not in trained.meta
