"""Shared test setup and, for the app tests, a tiny model zoo built in seconds.

The app tests run against ``tiny_zoo``: the paper's zoo names trained for a few steps, two β-conditioned
models and one classifier, in a temporary assets folder (``SCULPT_ASSETS``). Set ``SCULPT_TEST_REAL_ZOO=1``
to run them against the shipped ``assets/`` instead (tests that assert the tiny zoo's exact contents skip
then). In-app training is made tiny by ``SCULPT_FAST_TRAINING``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: In CI (``CI=true``) nothing may be skipped: a skip there (missing ``../shared`` data, no chromium, a missing
#: shipped asset) hides a failure of something the product needs, so it FAILS the run with the skip's reason.
#: Outside CI skips stay skips, and every skip reason names what is missing. The one exception are skips the
#: run asked for itself, whose reason starts with ``NOT_APPLICABLE`` (e.g. SCULPT_TEST_REAL_ZOO=1).
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel run (pytest -n N): one thread per worker, and per child
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # process it starts, so N workers do not oversubscribe N cores
    import torch

    torch.set_num_threads(1)
NOT_APPLICABLE = "not applicable to this run: "


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip_in_ci(report, where: str) -> None:
    reason = _skip_reason(report.longrepr)
    if reason.startswith(NOT_APPLICABLE):
        return
    report.outcome = "failed"
    report.longrepr = (f"{where} was skipped, but CI=true allows no skips (the product needs it): {reason}. "
                       "Install what is missing (bash .ci/setup; the shared data in ../shared) or fix the test.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip_in_ci(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:  # a module-level skip (importorskip, allow_module_level=True)
        _fail_skip_in_ci(report, collector.nodeid or str(collector.path))


def build_tiny_zoo(folder: Path) -> Path:
    """Train the tiny zoo into ``folder`` (manifest.json + zoo/grid/*.pt + one classifier); a few seconds."""
    from sculpt_core.domains.grid.env import GridEnv
    from sculpt_core.domains.grid.rewards import grid_log_reward
    from sculpt_core.domains.grid.classifier import save_classifier
    from sculpt_core.domains.grid.train_classifier import ClassifierTrainConfig, train_grid_classifier
    from sculpt_core.domains.grid.train import GridTrainConfig, train_grid_model

    env = GridEnv(32, 2)
    specs = {  # name: (reward, temperature, β-conditioned)
        "symmetric_shubert": ("symmetric_shubert", 0.5, False),
        "diag_sigmoid": ("diag_sigmoid", 1.0, False),
        "circle1": ("circle1", 1.0, False),
        "circle2": ("circle2", 1.0, False),
        "circle3": ("circle3", 1.0, False),
        "shubert_beta": ("symmetric_shubert", 0.5, True),
        "diag_beta": ("diag_sigmoid", 1.0, True),
    }
    manifest: dict = {"grid_models": {}, "grid_classifiers": {}}
    models = {}
    for name, (reward, temperature, cond) in specs.items():
        cfg = GridTrainConfig(steps=3, hidden=32, batch_size=16, eval_every=3, seed=len(name),
                              beta_range=(0.5, 2.0) if cond else None, betas_per_step=2)
        model, info = train_grid_model(grid_log_reward(env, reward), temperature, cfg, reward)
        model.name = name
        rel = f"zoo/grid/{name}.pt"
        model.save(folder / rel)
        models[name] = model
        manifest["grid_models"][name] = {"file": rel, "reward": reward, "temperature": temperature, "height": 32,
                                         "loss": "tb", "has_flow": True, "steps": 3, "l1": round(info["l1"], 6)}
    pair = ["symmetric_shubert", "diag_sigmoid"]
    clf, _ = train_grid_classifier([models[n] for n in pair], ClassifierTrainConfig(
        steps=2, trajectories_per_model=8, warmup=1, alphas_per_step=2, hidden=32, eval_every=2, alpha_cond=True))
    rel = "zoo/grid_classifiers/" + "+".join(pair) + ".pt"
    fingerprints = [models[n].fingerprint() for n in pair]
    save_classifier(folder / rel, clf, pair, {"steps": 2}, fingerprints)
    manifest["grid_classifiers"]["+".join(pair)] = {"file": rel, "bases": pair, "alpha_cond": True,
                                                     "base_fingerprints": fingerprints}
    _copy_molecule_zoo(folder, manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def _copy_molecule_zoo(folder: Path, manifest: dict) -> None:
    """The shipped molecule models and classifiers join the tiny zoo as they are (they are small, and training
    molecule models takes minutes), so the molecule page runs on the same assets folder."""
    import shutil

    real = json.loads((ROOT / "assets" / "manifest.json").read_text())
    for section in ("mol_models", "mol_classifiers", "maps"):
        for name, entry in real.get(section, {}).items():
            src = ROOT / "assets" / entry["file"]
            if src.is_file():
                (folder / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, folder / entry["file"])
                manifest.setdefault(section, {})[name] = entry


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path | None:
    """The tiny zoo's folder (built once per test session), or None with SCULPT_TEST_REAL_ZOO=1."""
    if os.environ.get("SCULPT_TEST_REAL_ZOO") == "1":
        return None
    return build_tiny_zoo(tmp_path_factory.mktemp("tiny_zoo"))


@pytest.fixture
def tiny_zoo_contents(tiny_zoo) -> None:
    """For tests that assert the tiny zoo's exact contents (model count, names, which classifier is missing):
    skipped under SCULPT_TEST_REAL_ZOO=1, where the shipped zoo has other contents."""
    if tiny_zoo is None:
        pytest.skip(NOT_APPLICABLE + "asserts the tiny zoo's contents; SCULPT_TEST_REAL_ZOO=1 uses the shipped zoo")


@pytest.fixture
def app_env(tiny_zoo, monkeypatch) -> dict[str, str]:
    """Environment of one app test (undone after it): the tiny zoo in SCULPT_ASSETS, fast in-app training."""
    env = {"SCULPT_FAST_TRAINING": "1"}
    if tiny_zoo is not None:
        env["SCULPT_ASSETS"] = str(tiny_zoo)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


TINY_IMAGE_CLASSIFIER = {"steps": 5, "trajectories": 8, "pool_steps": 5, "batch": 8, "refresh_every": 5}


def build_tiny_image_zoo(folder: Path) -> Path:
    """A 7×7 colored-MNIST zoo in ``folder`` in a few seconds: one score family of the five sets (named like the
    shipped one, so the default bases resolve), a judge and both guidance classifiers. Only the plumbing is
    real: the models train for a few steps, so their samples are noise."""
    from sculpt_core.domains.diffusion.images.judge import train_judge
    from sculpt_core.domains.diffusion.images.train import ImageTrainConfig, train_image_family
    from sculpt_core.domains.diffusion.images.zoo import (
        DEFAULT_FAMILY,
        IMAGE_ZOO_CLASSIFIERS,
        resolve_image_bases,
        ship_image_classifier,
        ship_image_family,
        train_image_classifier,
    )

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCULPT_ASSETS", str(folder))
        family, _ = train_image_family(ImageTrainConfig(size=7, channels=(8,), steps=10, batch=16, warmup=2))
        ship_image_family(DEFAULT_FAMILY, family, train_judge(7, epochs=1), {})
        for key, (bases, n_labels, alpha_cond, _) in IMAGE_ZOO_CLASSIFIERS.items():
            clf = train_image_classifier(resolve_image_bases(list(bases)), n_labels, alpha_cond, TINY_IMAGE_CLASSIFIER)
            ship_image_classifier(key, clf)
    return folder


@pytest.fixture(scope="session")
def tiny_image_zoo(tmp_path_factory) -> Path | None:
    """The tiny colored-MNIST zoo's folder (built once per test session), or None with SCULPT_TEST_REAL_ZOO=1."""
    if os.environ.get("SCULPT_TEST_REAL_ZOO") == "1":
        return None
    return build_tiny_image_zoo(tmp_path_factory.mktemp("tiny_image_zoo"))
