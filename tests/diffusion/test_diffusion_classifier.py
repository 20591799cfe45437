"""Time-conditioned guidance classifiers: the joint is a proper, exchangeable distribution, the guidance term is
the gradient of the observed labels' log-probability, training by the diffusion analogue of Algorithm A.1
converges to the exact label posterior of the augmented model, guidance with the trained classifier samples
the composition, checkpoints round-trip and refuse other bases, and the CLI refuses what it cannot do."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from helpers import PAIR, TILT, TRIO
from sculpt_core.cli import main
from sculpt_core.core import algebra as A
from sculpt_core.domains.diffusion.classifier import (
    ClassifierPosterior,
    DiffusionClassifier,
    DiffusionClassifierConfig,
    GuidanceClassifier,
    base_fingerprint,
)
from sculpt_core.domains.diffusion.compose import ExactScoreModel
from sculpt_core.domains.diffusion.exact import ExactComposition
from sculpt_core.domains.diffusion.metrics import evaluate
from sculpt_core.domains.diffusion.sampling import sample_method
from sculpt_core.domains.diffusion.spec import spec_from_dict
from sculpt_core.domains.diffusion.train_classifier import (
    DiffusionClassifierTrainConfig,
    posterior_error,
    train_diffusion_classifier,
)
from sculpt_core.errors import SculptError

# Invented specs (not the built-ins): two overlapping bases, whose harmonic mean and contrasts differ clearly.
SPEC_A = {"weights": [1, 1], "means": [[-1.0, 0.0], [1.0, 0.0]], "stds": [0.5, 0.5]}
SPEC_B = {"weights": [1], "means": [[0.6, 0.2]], "stds": [0.7]}


@pytest.fixture(scope="module")
def specs():
    return [spec_from_dict(SPEC_A, "a"), spec_from_dict(SPEC_B, "b")]


@pytest.fixture(scope="module")
def trained(specs):
    cfg = DiffusionClassifierTrainConfig(steps=500, batch=512, trajectories=1024, pool_steps=60, hidden=96,
                                         refresh_every=250, seed=1)
    models = [ExactScoreModel(s) for s in specs]
    return train_diffusion_classifier(models, cfg, base_names=["a", "b"], sigma_data=1.0)


def _random_classifier(m: int, n: int, alpha_cond: bool = False, seed: int = 0) -> GuidanceClassifier:
    torch.manual_seed(seed)
    return GuidanceClassifier(DiffusionClassifier(DiffusionClassifierConfig(m, n, alpha_cond, hidden=32)).eval())


@pytest.mark.parametrize("m,n", [(2, 2), (3, 3), (2, 3)])
def test_the_joint_is_normalised_and_exchangeable(m, n):
    net = _random_classifier(m, n).net
    x = torch.randn(50, 2) * 2
    t = torch.rand(50)
    with torch.no_grad():
        joint = net(x, t)
    assert joint.shape == (50,) + (m,) * n
    assert torch.allclose(joint.flatten(1).logsumexp(1), torch.zeros(50), atol=1e-5)
    for perm in itertools.permutations(range(1, n + 1)):
        assert torch.allclose(joint.permute(0, *perm), joint, atol=1e-5)


def test_an_alpha_conditioned_joint_depends_on_alpha():
    net = _random_classifier(2, 2, alpha_cond=True).net
    x = torch.randn(20, 2)
    with torch.no_grad():
        assert not torch.allclose(net(x, 0.3, -2.0), net(x, 0.3, 2.0))


def test_guidance_term_is_the_gradient_of_the_observed_log_probability():
    clf = _random_classifier(2, 2, seed=3)
    comp = A.contrast()
    post = ClassifierPosterior(clf, comp)
    x = torch.randn(8, 2, dtype=torch.float64)
    log_w, grad = post.weights_and_grad(x, 0.2)
    assert torch.allclose(log_w.exp().sum(1), torch.ones(8, dtype=torch.float64), atol=1e-5)

    def value(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return clf.net(z.float(), 0.2)[:, 0, 0].double()  # log Q(y1 = 1, y2 = 1 | x_t)

    h = 1e-2
    for d in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[d] = h
        fd = (value(x + e) - value(x - e)) / (2 * h)
        assert torch.allclose(grad[:, d], fd, atol=2e-3, rtol=1e-2)


def test_a_mixture_is_only_reweighted_by_its_prior():
    clf = _random_classifier(2, 2, seed=4)
    x = torch.randn(16, 2, dtype=torch.float64)
    log_w, grad = ClassifierPosterior(clf, A.mixture([0.8, 0.2])).weights_and_grad(x, 0.1)
    assert grad is None
    with torch.no_grad():
        y1 = clf.net.log_y1(x.float(), 0.1).double()
    expect = torch.softmax(y1 + torch.log(torch.tensor([0.8, 0.2], dtype=torch.float64)), 1)
    assert torch.allclose(log_w.exp(), expect, atol=1e-5)


def test_refuses_compositions_it_cannot_express():
    with pytest.raises(SculptError, match="α-conditioned"):
        ClassifierPosterior(_random_classifier(2, 2), A.contrast(alpha=0.3))
    with pytest.raises(SculptError, match="labels"):
        ClassifierPosterior(_random_classifier(3, 2), A.conditioning((1, 2, 3), 3))
    with pytest.raises(SculptError, match="chained"):
        ClassifierPosterior(_random_classifier(3, 3), A.chained_harmonic_mean(3))
    with pytest.raises(SculptError):
        DiffusionClassifierConfig(3, 2, alpha_cond=True).validate()
    with pytest.raises(SculptError):
        DiffusionClassifierConfig(1, 2).validate()
    with pytest.raises(SculptError):
        DiffusionClassifierTrainConfig(steps=0)


def test_training_converges_to_the_exact_label_posterior(specs, trained):
    errors = posterior_error(trained, specs, n=1500)
    untrained = posterior_error(_random_classifier(2, 2, seed=5), specs, n=1500)
    assert errors["posterior_tv_y1_mean"] < 0.05, errors
    assert errors["posterior_tv_joint_mean"] < 0.07, errors
    assert untrained["posterior_tv_joint_mean"] > 3 * errors["posterior_tv_joint_mean"]
    meta = trained.meta
    assert meta["bases"] == ["a", "b"] and len(meta["base_fingerprints"]) == 2
    assert meta["seconds"] > 0 and np.isfinite(meta["loss_terminal"]) and np.isfinite(meta["loss_nonterminal"])


@pytest.mark.parametrize("comp", [A.harmonic_mean(), A.contrast()], ids=["hm", "contrast"])
def test_guidance_with_the_trained_classifier_samples_the_composition(specs, trained, comp):
    n = 4000
    x, exact = sample_method(specs, comp, "classifier", n, 150, seed=2, classifier=trained)
    fig = evaluate(x, exact, 3.5, 24, emd_repeats=1)
    base, _ = sample_method(specs, comp, "base", n, 150, seed=2)
    wrong = evaluate(base, exact, 3.5, 24, emd_repeats=1)
    assert fig["l1"] <= 2 * fig["l1_floor"] + 0.05, fig
    assert wrong["l1"] > fig["l1"] + 0.1  # the target is not one of the bases


def test_training_is_seeded_and_reports_progress(specs):
    cfg = DiffusionClassifierTrainConfig(steps=6, batch=32, trajectories=64, pool_steps=10, hidden=16, seed=9)
    models = [ExactScoreModel(s) for s in specs]
    seen = []
    a = train_diffusion_classifier(models, cfg, progress=lambda s, m: seen.append(s), progress_every=2)
    b = train_diffusion_classifier(models, cfg)
    assert seen == [2, 4, 6]
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)


def test_checkpoint_round_trip_and_base_fingerprints(tmp_path, specs, trained):
    path = trained.save(tmp_path / "clf.pt")
    back = GuidanceClassifier.load(path)
    x = torch.randn(10, 2)
    with torch.no_grad():
        assert torch.equal(back.net(x, 0.3), trained.net(x, 0.3))
    back.check_bases([base_fingerprint(s) for s in specs])
    other = spec_from_dict(TILT, "tilt")
    with pytest.raises(SculptError, match="other base models"):
        back.check_bases([base_fingerprint(s) for s in (specs[0], other)])
    with pytest.raises(SculptError, match="trained for 2 bases"):
        back.check_bases([base_fingerprint(s) for s in (specs[0], specs[1], other)])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SculptError):
        GuidanceClassifier.load(tmp_path / "bad.pt")


def _write_specs(tmp_path):
    paths = []
    for name, spec in (("pair", PAIR), ("trio", TRIO)):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(spec))
        paths.append(str(p))
    return ",".join(paths)


def test_cli_trains_a_classifier_and_samples_with_it(tmp_path, capsys):
    bases = _write_specs(tmp_path)
    clf = tmp_path / "clf.pt"
    assert main(["diffusion", "train-classifier", "--bases", bases, "--steps", "30", "--batch", "128",
                 "--trajectories", "128", "--pool-steps", "20", "--out", str(clf)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n_labels"] == 2 and out["scores"] == ["exact", "exact"] and clf.is_file()
    assert 0 <= out["posterior_tv_y1_mean"] <= 1
    x_path = tmp_path / "x.npy"
    assert main(["diffusion", "sample", "--bases", bases, "--y", "1,2", "--method", "classifier", "--classifier",
                 str(clf), "--gamma", "2", "--n", "300", "--steps", "20", "--out", str(x_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["method"] == "classifier" and out["gamma"] == 2.0 and out["classifier"] == str(clf)
    assert np.load(x_path).shape == (300, 2)


@pytest.mark.parametrize("argv,message", [
    (["--y", "1,1", "--alpha", "0.3"], "not α-conditioned"),
    (["--y", "1,2", "--gamma", "0"], "gamma"),
    (["--y", "1,2", "--gamma", "nan"], "gamma"),
])
def test_cli_refuses_what_the_classifier_cannot_do(tmp_path, capsys, argv, message):
    bases = _write_specs(tmp_path)
    clf = tmp_path / "clf.pt"
    _random_classifier(2, 2).save(clf)
    code = main(["diffusion", "sample", "--bases", bases, "--method", "classifier", "--classifier", str(clf),
                 "--n", "10", "--steps", "5", "--out", str(tmp_path / "x.npy"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error:") and message in err[-1]
    assert not (tmp_path / "x.npy").exists()


def test_cli_refuses_a_classifier_of_other_bases_and_missing_ones(tmp_path, capsys):
    bases = _write_specs(tmp_path)
    clf = tmp_path / "clf.pt"
    trained = _random_classifier(2, 2)
    trained.meta["base_fingerprints"] = ["0" * 16, "1" * 16]
    trained.save(clf)
    args = ["diffusion", "sample", "--bases", bases, "--y", "1,2", "--method", "classifier", "--n", "10",
            "--steps", "5", "--out", str(tmp_path / "x.npy")]
    assert main(args + ["--classifier", str(clf)]) == 2
    assert "other base models" in capsys.readouterr().err
    assert main(args) == 2
    assert "no shipped classifier" in capsys.readouterr().err
    assert main(["diffusion", "train-classifier", "--bases", bases.split(",")[0], "--out", str(clf)]) == 2
    assert "at least two" in capsys.readouterr().err
