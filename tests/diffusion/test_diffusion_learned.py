"""Learned score models of the diffusion domain: DSM brings the learned score close to the exact one, the
model runs in every composition method in place of an exact spec, checkpoints round-trip and refuse bad
files, and ``diffusion train`` on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import PAIR, TILT
from sculpt_core.cli import main
from sculpt_core.core import algebra as A
from sculpt_core.core.checkpoint import save_checkpoint
from sculpt_core.domains.diffusion.compose import ExactScoreModel, ScoreModel
from sculpt_core.domains.diffusion.model import (
    CHECKPOINT_KIND,
    ScoreBaseModel,
    new_model,
)
from sculpt_core.domains.diffusion.sampling import sample_method
from sculpt_core.domains.diffusion.spec import spec_from_dict
from sculpt_core.domains.diffusion.train import score_error, train_dsm
from sculpt_core.errors import SculptError

# Invented specs (not the built-ins).


@pytest.fixture(scope="module")
def pair():
    return spec_from_dict(PAIR, "pair")


@pytest.fixture(scope="module")
def trained(pair):
    return train_dsm(pair, steps=400, batch=256, seed=0)


def test_dsm_brings_the_learned_score_close_to_the_exact_one(pair, trained):
    untrained = score_error(new_model(pair, seed=0), pair)
    meta = trained.meta
    assert untrained["score_error"] > 0.9 and untrained["score_error_grid"] > 0.9  # an untrained net knows nothing
    assert meta["score_error"] < 0.6 * untrained["score_error"]
    assert meta["score_error_grid"] < 0.6 * untrained["score_error_grid"]
    # the easy part: large t, on the data and over the whole grid [-3.5, 3.5]²
    for key in ("score_error_by_t", "score_error_grid_by_t"):
        assert meta[key]["0.5"] < 0.15 and meta[key]["1"] < 0.15, meta[key]
    assert np.isfinite(meta["final_loss"]) and 0 < meta["final_loss"] < 1.5 and meta["seconds"] > 0
    assert meta["spec_name"] == "pair" and spec_from_dict(meta["spec"]).n_components == 2
    assert meta["steps"] == 400 and meta["seed"] == 0


def test_training_is_seeded_and_reports_progress(pair):
    seen = []
    a = train_dsm(pair, steps=30, batch=64, seed=3, progress=lambda s, m: seen.append((s, m["loss"])),
                  progress_every=10, evaluate=False)
    b = train_dsm(pair, steps=30, batch=64, seed=3, evaluate=False)
    c = train_dsm(pair, steps=30, batch=64, seed=4, evaluate=False)
    sa, sb, sc = (m.net.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [s for s, _ in seen] == [10, 20, 30] and all(np.isfinite(v) for _, v in seen)
    with pytest.raises(SculptError, match="steps must be"):
        train_dsm(pair, steps=0)
    with pytest.raises(SculptError, match="lr must be"):
        train_dsm(pair, steps=5, lr=float("nan"))


def test_learned_model_is_a_score_model_in_every_method(pair, trained):
    assert isinstance(trained, ScoreModel)
    x = torch.randn(50, 2, dtype=torch.float64)
    s = trained.score(x, 0.3)
    assert s.shape == (50, 2) and s.dtype == torch.float64 and bool(torch.isfinite(s).all())
    tilt = spec_from_dict(TILT, "tilt")
    models = [trained, ExactScoreModel(tilt)]
    for method, comp in (("base", A.mixture([1.0, 1.0])), ("score-sum", A.harmonic_mean()),
                         ("superdiff", A.mixture([1.0, 2.0])), ("oracle", A.harmonic_mean())):
        out, _ = sample_method([pair, tilt], comp, method, 40, steps=8, seed=1, device="cpu", models=models)
        assert out.shape == (40, 2) and bool(torch.isfinite(out).all()), method
    with pytest.raises(SculptError, match="score models for"):
        sample_method([pair, tilt], A.harmonic_mean(), "score-sum", 10, steps=2, device="cpu", models=[trained])


def test_fast_score_path_and_bf16_precision_match_the_network(trained):
    """score() (time embedding folded into the first layer) is the network's forward; bf16 stays within 2%."""
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(4)) * 2
    for t in (0.001, 0.05, 0.5, 1.0):
        with torch.no_grad():
            ref = trained.net(x, torch.full((256,), t))
        fast = trained.score(x.double(), t).float()
        assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        half = trained.with_precision("bf16").score(x.double(), t).float()
        assert float((half - ref).norm() / ref.norm()) < 0.02
    assert trained.precision == "fp32"  # a view: the model itself is unchanged
    with pytest.raises(SculptError, match="precision"):
        trained.with_precision("fp8")


def test_checkpoint_round_trip(tmp_path, trained, pair):
    path = trained.save(tmp_path / "sub" / "m.pt")
    back = ScoreBaseModel.load(path)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2
    for t in (0.01, 0.2, 1.0):
        assert torch.equal(back.score(x, t), trained.score(x, t))
    assert back.meta == trained.meta and back.name == "pair"
    spec = back.spec()
    assert torch.allclose(spec.means, pair.means) and torch.allclose(spec.covs, pair.covs)
    assert back.net.cfg == trained.net.cfg
    assert not back.net.training


def test_bad_checkpoints_give_sculpt_errors(tmp_path, trained):
    good = trained.save(tmp_path / "good.pt")
    cases = {
        "garbage.pt": b"this is not a checkpoint",
        "truncated.pt": good.read_bytes()[: len(good.read_bytes()) // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SculptError, match="not a readable Sculpt checkpoint"):
            ScoreBaseModel.load(tmp_path / name)
    with pytest.raises(SculptError, match="checkpoint not found"):
        ScoreBaseModel.load(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "other.pt", "sculpt.grid_base_model", {"config": {}, "state_dict": {}, "meta": {}})
    with pytest.raises(SculptError, match="expected a"):
        ScoreBaseModel.load(tmp_path / "other.pt")
    payload = {"config": trained.net.cfg.to_dict(), "meta": trained.meta,
               "state_dict": {k: v.clone() for k, v in trained.net.state_dict().items()}}
    bad_cfg = {**payload, "config": {**payload["config"], "hidden": -3}}
    save_checkpoint(tmp_path / "cfg.pt", CHECKPOINT_KIND, bad_cfg)
    with pytest.raises(SculptError, match="invalid model configuration"):
        ScoreBaseModel.load(tmp_path / "cfg.pt")
    nan_state = {k: torch.full_like(v, float("nan")) for k, v in payload["state_dict"].items()}
    save_checkpoint(tmp_path / "nan.pt", CHECKPOINT_KIND, {**payload, "state_dict": nan_state})
    with pytest.raises(SculptError, match="NaN"):
        ScoreBaseModel.load(tmp_path / "nan.pt")
    short = dict(payload["state_dict"])
    short.pop(next(iter(short)))
    save_checkpoint(tmp_path / "short.pt", CHECKPOINT_KIND, {**payload, "state_dict": short})
    with pytest.raises(SculptError, match="do not fit"):
        ScoreBaseModel.load(tmp_path / "short.pt")
    save_checkpoint(tmp_path / "spec.pt", CHECKPOINT_KIND, {**payload, "meta": {**trained.meta, "spec": {"weights": [1]}}})
    with pytest.raises(SculptError, match="stored training spec"):
        ScoreBaseModel.load(tmp_path / "spec.pt")


# ----- command line -----------------------------------------------------------------------------
def _cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_train_round_trip(tmp_path, capsys):
    (tmp_path / "tilt.json").write_text(json.dumps(TILT))
    out_path = tmp_path / "m.pt"
    code, out, _ = _cli(["diffusion", "train", "--spec", str(tmp_path / "tilt.json"), "--steps", "60",
                         "--batch", "128", "--seed", "2", "--out", str(out_path)], capsys)
    assert code == 0
    rec = json.loads(out)
    for key in ("steps", "seconds", "final_loss", "score_error", "out", "spec"):
        assert key in rec
    assert rec["steps"] == 60 and rec["spec"] == "tilt" and rec["out"] == str(out_path)
    model = ScoreBaseModel.load(out_path)
    assert model.meta["spec_name"] == "tilt" and model.meta["seed"] == 2 and model.meta["steps"] == 60
    assert model.meta["score_error"] == rec["score_error"]


@pytest.mark.parametrize("extra, message", [
    (["--spec", "nope"], "unknown diffusion base"),
    (["--spec", "BAD"], "not positive definite"),
    (["--spec", "ring", "--steps", "0"], "steps must be"),
    (["--spec", "ring", "--batch", "0"], "batch must be"),
    (["--spec", "ring", "--lr", "-1"], "lr must be"),
])
def test_cli_train_bad_input_exits_2_with_one_error_line(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BAD").write_text(json.dumps({"weights": [1], "means": [[0, 0]], "covs": [[[1, 2], [2, 1]]]}))
    (tmp_path / "m.pt").write_bytes(b"keep")
    code, out, err = _cli(["diffusion", "train", *extra, "--out", "m.pt"]
                          if "--steps" in extra else ["diffusion", "train", *extra, "--steps", "5", "--out", "m.pt"],
                          capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error:") and message in lines[-1]
    assert [ln for ln in lines if ln.startswith("error:")] == [lines[-1]]
    assert (tmp_path / "m.pt").read_bytes() == b"keep"  # nothing written on failure


def test_cli_train_refuses_a_folder_as_out(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    code, out, err = _cli(["diffusion", "train", "--spec", "ring", "--steps", "5", "--out", str(tmp_path / "d")],
                          capsys)
    assert code == 2 and out == "" and "it is a folder" in err.strip().splitlines()[-1]
