"""Flow leaf targets of the chain objective on the tiny exact library (3 fragments, ≤ 3 nodes).

The bases' flow posterior P(i | x) = p_i(x) / Σ_j p_j(x), p_i(x) = u_i(x) p_iF(⊤ | x), is exact with exact flows; the
per-model calibration against backward importance sampling undoes a known shift; chain training with flow targets
cuts the guided L1 and teaches the terminal head the posterior. Fixtures and helpers come from
``test_mol_compose`` (same library, same random bases).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rdkit", reason="RDKit is needed for the fragment environment")

from sculpt_core.core import algebra as A  # noqa: E402
from sculpt_core.domains.molecules.compose import prepare_mol_bases  # noqa: E402
from sculpt_core.domains.molecules.model import MolBaseModel  # noqa: E402
from sculpt_core.domains.molecules.train_classifier import MolClassifierTrainConfig, train_mol_classifier  # noqa: E402
from sculpt_core.errors import SculptError  # noqa: E402
from test_mol_compose import (BETA, _SHORT_RUN, _ExactFlowModel, _exact_flow_models, _guided_l1_fn,  # noqa: E402,F401
                              bases2, bases3, dp, env, models, tables)


def _complete(dp, table):
    """(every complete molecule of the space, each model's exact log p_i(x) on them ``[m, N]``, the mask of the
    complete classes): the molecules where Stop is valid."""
    log_px = torch.stack([dp.log_terminal(t) for t in table])  # −inf where Stop is invalid
    complete = torch.isfinite(log_px).all(0)
    return [s for s, ok in zip(dp.states, complete.tolist()) if ok], log_px[:, complete], complete


def test_flow_terminal_posterior_is_exact_with_exact_flows(dp, tables, models):
    """p_i(x) = u_i(x) p_iF(⊤ | x): with exact flows the posterior of every molecule is p_i(x) / Σ_j p_j(x)."""
    bases = prepare_mol_bases(_exact_flow_models(dp, models, tables[3]), BETA)
    molecules, log_px, complete = _complete(dp, tables[3])
    assert len(molecules) > 50
    post = bases.log_terminal_posterior(molecules)
    assert torch.allclose(post.exp(), torch.softmax(log_px.T, 1), atol=1e-6)
    with pytest.raises(SculptError, match="cannot stop"):
        bases.log_terminal_posterior([dp.states[int(torch.nonzero(~complete)[1])]])
    flowless = MolBaseModel(models[0].net, models[0].env, {**models[0].meta, "has_flow": False}, "noflow")
    with pytest.raises(SculptError, match="flow"):
        prepare_mol_bases([flowless, models[1]], BETA).log_terminal_posterior(molecules[:2])


class _ShiftedFlowModel(_ExactFlowModel):
    """Exact flows, every state but s0 shifted by ``shift`` nats: log p_i^flow(x) = log p_i(x) + shift."""

    shift = 0.0

    def log_flow(self, states, beta):
        out = super().log_flow(states, beta)
        return out + self.shift * torch.tensor([len(s.frags) > 0 for s in states], dtype=out.dtype)


def test_flow_offsets_undo_a_per_model_shift_of_the_flows(dp, tables, models):
    from sculpt_core.domains.molecules.marginals import flow_offsets

    twins = []
    for mod, table, shift in zip(models, tables[3], (2.0, 0.0, -1.0)):
        twin = _ShiftedFlowModel(mod.net, mod.env, dict(mod.meta), mod.name).attach(dp, dp.log_reaching(table))
        twin.shift = shift
        twins.append(twin)
    bases = prepare_mol_bases(twins, BETA)
    molecules, log_px, _ = _complete(dp, tables[3])
    molecules = molecules[:80]
    offsets = flow_offsets(bases, molecules, k=64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(offsets, torch.tensor([-2.0, 0.0, 1.0], dtype=torch.float64) + 1 / 3, atol=0.05), offsets
    exact = torch.softmax(log_px.T[:80], 1)
    assert (bases.log_terminal_posterior(molecules).exp() - exact).abs().max() > 0.1  # the shift moves it
    assert torch.allclose(bases.log_terminal_posterior(molecules, offsets).exp(), exact, atol=0.02)


def test_chain_training_with_flow_terminal_targets_cuts_guided_l1(env, dp, tables, models, bases2):
    """Leaf targets from the bases' (here exact) flow posterior: the chain objective's fixed point needs no
    terminal head at all, and the head itself learns the posterior on the chain's molecules."""
    twins = _exact_flow_models(dp, models[:2], tables[2])
    guided_l1 = _guided_l1_fn(dp, tables, bases2, [A.harmonic_mean(0.5), A.contrast(0.3)])
    common = dict(_SHORT_RUN, seed=102)
    a1, _ = train_mol_classifier(twins, BETA, MolClassifierTrainConfig(steps=20, warmup=5, objective="a1", **common))
    before = guided_l1(a1)
    cfg = MolClassifierTrainConfig(steps=160, warmup=40, objective="chain", terminal_target="flow", **common)
    net, info = train_mol_classifier(twins, BETA, cfg, init=a1)
    after = guided_l1(net)
    print("chain + flow targets guided L1 before", before, "after", after, f"({info['seconds']:.1f} s)")
    assert info["terminal_target"] == "flow" and abs(sum(info["flow_offsets"])) < 1e-3
    assert max(abs(c) for c in info["flow_offsets"]) < 0.2  # exact flows: nothing to calibrate
    for b, a in zip(before, after):
        assert a < b / 1.5, (before, after)
    molecules, log_px, _ = _complete(dp, tables[2])
    weight = torch.logsumexp(log_px, 0).exp()  # where the bases put their molecules
    with torch.no_grad():
        head = net.log_q_terminal_single(molecules).double().exp()
    tv = 0.5 * (head - torch.softmax(log_px.T, 1)).abs().sum(1)
    assert float((weight * tv).sum() / weight.sum()) < 0.1
    with pytest.raises(SculptError, match="chain objective"):
        MolClassifierTrainConfig(objective="a1", terminal_target="flow")
    with pytest.raises(SculptError, match="terminal target"):
        MolClassifierTrainConfig(objective="chain", terminal_target="exact")
    with pytest.raises(SculptError, match="flow_calibration"):
        MolClassifierTrainConfig(objective="chain", terminal_target="flow", flow_calibration=-1)
