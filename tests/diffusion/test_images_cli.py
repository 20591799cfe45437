"""The colored-MNIST command line on a tiny image zoo built in seconds (a 7×7 family of the five sets, a judge
and both guidance classifiers in a temporary SCULPT_ASSETS), and the shipped image zoo's consistency."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sculpt_core.cli import main
from sculpt_core.core.zoo import REPO_ROOT
from sculpt_core.domains.diffusion.images.judge import train_judge
from sculpt_core.domains.diffusion.images.train import ImageTrainConfig, train_image_family
from sculpt_core.domains.diffusion.images.zoo import (
    IMAGE_ZOO_CLASSIFIERS,
    resolve_image_bases,
    ship_image_classifier,
    ship_image_family,
    train_image_classifier,
)

TINY_CLF = {"steps": 4, "trajectories": 8, "pool_steps": 4, "batch": 8, "refresh_every": 4}


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_images")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCULPT_ASSETS", str(folder))
        (folder / "manifest.json").write_text("{}")
        cfg = ImageTrainConfig(size=7, channels=(8,), steps=6, batch=8, warmup=2)
        family, _ = train_image_family(cfg)
        ship_image_family("mnist16", family, train_judge(7, epochs=1), {})
        for key, (bases, n_labels, alpha_cond, _) in IMAGE_ZOO_CLASSIFIERS.items():
            clf = train_image_classifier(resolve_image_bases(list(bases)), n_labels, alpha_cond, TINY_CLF)
            ship_image_classifier(key, clf)
        yield folder


@pytest.fixture
def images_env(tiny_images, monkeypatch):
    monkeypatch.setenv("SCULPT_ASSETS", str(tiny_images))
    return tiny_images


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("argv,expected", [
    (["--bases", "mn1,mn2,mn3", "--y", "1,2,3", "--method", "classifier"], ["green 0"]),
    (["--bases", "m1,m2", "--y", "1,1", "--method", "classifier", "--gamma", "10"], ["red 0"]),
    (["--bases", "mn1,mn2,mn3", "--y", "1,2,3", "--method", "superdiff"], ["green 0"]),
    (["--bases", "m1,m2", "--y", "1,2", "--method", "score-sum"], ["green 0"]),
    (["--bases", "mn1", "--method", "base"], ["green 0", "green 1", "green 2", "green 3"]),
])
def test_sample_writes_images_and_the_judges_fractions(images_env, tmp_path, capsys, argv, expected):
    out = tmp_path / "imgs.npy"
    assert main(["diffusion", "sample", *argv, "--n", "5", "--steps", "3", "--seed", "4", "--out", str(out)]) == 0
    report = _last_json(capsys)
    arr = np.load(out)
    assert arr.shape == (5, 3, 7, 7) and arr.dtype == np.float32 and arr.min() >= 0 and arr.max() <= 1
    judge = report["judge"]
    assert sorted(judge["expected"]) == sorted(expected) and 0 <= judge["fraction"] <= 1 and judge["n"] == 5
    assert sum(judge["counts"].values()) == 5 and report["shape"] == [5, 3, 7, 7]
    again = tmp_path / "again.npy"
    assert main(["diffusion", "sample", *argv, "--n", "5", "--steps", "3", "--seed", "4", "--out", str(again)]) == 0
    capsys.readouterr()
    assert np.array_equal(np.load(again), arr)  # seeded


@pytest.mark.parametrize("argv,message", [
    (["--bases", "mn1,mn2,mn3", "--y", "1,2,3", "--method", "oracle"], "no oracle"),
    (["--bases", "mn1,ring", "--y", "1,2", "--method", "score-sum"], "mixes colored-MNIST bases"),
    (["--bases", "mn1,mn2,mn3", "--y", "1,2,3", "--method", "classifier", "--n", "0"], "n must be"),
    (["--bases", "mn1,mn2", "--y", "1,2", "--method", "classifier"], "no shipped classifier"),
    (["--bases", "m1,m2", "--y", "1,2", "--alpha", "0.3", "--method", "classifier"], "not α-conditioned"),
    (["--bases", "mn1,mn2,mn3", "--y", "1,2,3", "--method", "classifier", "--gamma", "nan"], "γ"),
    (["--bases", "mn1,mn2,mn9", "--y", "1,2,3", "--method", "score-sum"], "mixes|unknown"),
    (["--bases", "m1,m2", "--y", "1,1", "--method", "superdiff"], "superdiff composes"),
    (["--bases", "m1,m2", "--method", "score-sum"], "give --y"),
    (["--bases", "mn1,mn2,mn3", "--y", "1,2,3", "--method", "classifier", "--prior", "exact"], "reference prior"),
])
def test_sample_refuses_bad_requests_with_one_line(images_env, tmp_path, capsys, argv, message):
    out = tmp_path / "x.npy"
    code = main(["diffusion", "sample", *argv, "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    import re

    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_csv_output_is_refused_and_an_existing_file_survives(images_env, tmp_path, capsys):
    out = tmp_path / "x.csv"
    out.write_text("keep")
    assert main(["diffusion", "sample", "--bases", "mn1", "--method", "base", "--n", "2", "--steps", "2",
                 "--out", str(out)]) == 2
    assert "npy" in capsys.readouterr().err and out.read_text() == "keep"


def test_train_classifier_and_train_images_commands(images_env, tmp_path, capsys):
    clf = tmp_path / "clf.pt"
    assert main(["diffusion", "train-classifier", "--bases", "m1,m2", "--steps", "3", "--batch", "4",
                 "--trajectories", "4", "--pool-steps", "3", "--out", str(clf)]) == 0
    report = _last_json(capsys)
    assert report["bases"] == ["m1", "m2"] and clf.is_file()
    out = tmp_path / "imgs.npy"
    assert main(["diffusion", "sample", "--bases", "m1,m2", "--y", "1,2", "--method", "classifier", "--classifier",
                 str(clf), "--n", "2", "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    # a classifier for other bases is refused by fingerprint
    assert main(["diffusion", "sample", "--bases", "mn1,mn2", "--y", "1,2", "--method", "classifier", "--classifier",
                 str(clf), "--n", "2", "--steps", "2", "--out", str(out)]) == 2
    assert "other base models" in capsys.readouterr().err
    fam, state = tmp_path / "fam.pt", tmp_path / "run.state.pt"
    args = ["diffusion", "train-images", "--sets", "m1,m2", "--size", "7", "--channels", "8", "--steps", "4", "--batch", "4",
            "--state", str(state), "--out", str(fam)]
    assert main([*args, "--time-limit", "0"]) == 0
    assert _last_json(capsys)["finished"] is False and state.is_file()
    assert main(args) == 0
    report = _last_json(capsys)
    assert report["finished"] is True and report["steps_done"] == 4
    assert main(["diffusion", "sample", "--bases", f"{fam}:m2", "--method", "base", "--n", "2", "--steps", "2",
                 "--out", str(out)]) == 0  # a family by checkpoint path, judged by the shipped judge of its size
    assert _last_json(capsys)["bases"] == [f"{fam}:m2"] and np.load(out).shape == (2, 3, 7, 7)


def test_the_shipped_image_zoo_is_consistent():
    """The shipped family, judge and classifiers exist, fit together and meet the judge's accuracy."""
    manifest = json.loads((REPO_ROOT / "assets" / "manifest.json").read_text())
    family = manifest.get("diffusion_image_models", {}).get("mnist16")
    judge = manifest.get("diffusion_image_judge", {}).get("mnist16")
    assert family and judge, "the colored-MNIST family and judge are not shipped in assets/"
    assert judge["held_out_accuracy"] >= 0.95 and family["size"] == judge["size"] == 16
    from sculpt_core.domains.diffusion.classifier import GuidanceClassifier
    from sculpt_core.domains.diffusion.images.model import ImageFamily

    fam = ImageFamily.load(REPO_ROOT / "assets" / family["file"])
    for key, (bases, n_labels, _, _) in IMAGE_ZOO_CLASSIFIERS.items():
        entry = manifest["diffusion_classifiers"][key]
        clf = GuidanceClassifier.load(REPO_ROOT / "assets" / entry["file"])
        clf.check_bases([fam.model(b).fingerprint() for b in bases])
        assert clf.cfg.n_labels == n_labels and clf.cfg.image_size == 16


def test_the_shipped_models_sample_from_the_command_line(tmp_path, capsys, monkeypatch):
    """The issue's command on the shipped zoo (few images and steps: the bench measures the fractions)."""
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    out = tmp_path / "imgs.npy"
    assert main(["diffusion", "sample", "--bases", "mn1,mn2,mn3", "--y", "1,2,3", "--method", "classifier", "--n", "4",
                 "--steps", "20", "--seed", "1", "--out", str(out)]) == 0
    report = _last_json(capsys)
    assert np.load(out).shape == (4, 3, 16, 16) and report["judge"]["expected"] == ["green 0"]
    assert report["judge"]["judge_held_out_accuracy"] >= 0.95 and "mn1+mn2+mn3" in report["classifier"]
