"""The diffusion zoo: building a model writes its checkpoint and manifest entry, names load (cached), ``--bases``
resolves zoo names, built-in specs, ``spec:`` exact specs, checkpoints and JSON specs in that order, the
command line reports which score each base used, and the shipped models are good samplers of their specs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import PAIR
from sculpt_core.cli import main
from sculpt_core.core import algebra as A
from sculpt_core.core.zoo import read_manifest
from sculpt_core.domains.diffusion.spec import BUILTIN_SPECS
from sculpt_core.domains.diffusion.zoo import (
    DIFFUSION_ZOO_SPECS,
    SECTION,
    build_diffusion_zoo,
    diffusion_model_names,
    load_diffusion_model,
    resolve_base,
)
from sculpt_core.errors import SculptError



@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """A temporary assets folder holding one tiny ``band`` model (60 DSM steps, evaluated on 400 samples)."""
    folder = tmp_path_factory.mktemp("diffusion_assets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCULPT_ASSETS", str(folder))
        entries = build_diffusion_zoo(["band"], steps=60, seed=1, eval_n=400, eval_steps=20)
        yield folder, entries


@pytest.fixture
def assets(tiny_zoo, monkeypatch):
    folder, entries = tiny_zoo
    monkeypatch.setenv("SCULPT_ASSETS", str(folder))
    return folder, entries


def _cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_build_writes_the_checkpoint_and_the_manifest_entry(assets):
    folder, entries = assets
    entry = read_manifest()[SECTION]["band"]
    assert entry == entries["band"]
    assert entry["file"] == "zoo/diffusion/band.pt" and (folder / entry["file"]).is_file()
    assert entry["spec"] == "band" and entry["steps"] == 60 and entry["seed"] == 1 and entry["seconds"] > 0
    assert set(entry["score_error_by_t"]) == {"0.01", "0.05", "0.2", "0.5", "1"}
    assert entry["eval_n"] == 400 and entry["l1"] > 0 and entry["l1_floor"] > 0
    assert entry["l1_over_floor"] == pytest.approx(entry["l1"] / entry["l1_floor"], rel=1e-3)
    assert (folder / entry["file"]).stat().st_size < 1_000_000
    assert diffusion_model_names() == ["band"]
    with pytest.raises(SculptError, match="unknown diffusion zoo model"):
        build_diffusion_zoo(["nope"], steps=1)


def test_load_by_name_is_cached_and_records_its_spec(assets):
    folder, _ = assets
    model = load_diffusion_model("band")
    assert model.name == "band" and load_diffusion_model("band") is model
    spec = model.spec()
    assert spec is not None and spec.n_components == 3
    assert torch.allclose(spec.means, torch.tensor(BUILTIN_SPECS["band"]["means"], dtype=torch.float64))
    assert model.meta["sample_eval"]["l1_over_floor"] == read_manifest()[SECTION]["band"]["l1_over_floor"]
    by_path = load_diffusion_model(str(folder / "zoo/diffusion/band.pt"))
    assert by_path is model  # same file, same mtime: the cached object
    with pytest.raises(SculptError, match="unknown diffusion model"):
        load_diffusion_model("nope")


def test_resolve_precedence(assets, tmp_path):
    folder, _ = assets
    zoo = resolve_base("band")  # in the manifest → learned
    assert zoo.score == "learned" and zoo.spec.name == "band" and zoo.model is load_diffusion_model("band")
    exact = resolve_base("spec:band")  # the escape hatch: the exact spec of the same name
    assert exact.score == "exact" and exact.model is None and exact.spec.name == "band"
    assert torch.allclose(exact.spec.covs, zoo.spec.covs) and torch.allclose(exact.spec.weights, zoo.spec.weights)
    ring = resolve_base("ring")  # built-in, not in this manifest → exact
    assert ring.score == "exact" and ring.spec.n_components == 8
    ckpt = resolve_base(str(folder / "zoo/diffusion/band.pt"))  # a .pt path → learned
    assert ckpt.score == "learned" and ckpt.spec.name == "band"
    (tmp_path / "pair.json").write_text(json.dumps(PAIR))
    js = resolve_base(str(tmp_path / "pair.json"))
    assert js.score == "exact" and js.spec.name == "pair"
    assert resolve_base(f"spec:{tmp_path / 'pair.json'}").score == "exact"
    with pytest.raises(SculptError, match="checkpoint not found"):
        resolve_base(str(tmp_path / "missing.pt"))
    with pytest.raises(SculptError, match="unknown diffusion base"):
        resolve_base("spec:nope")


def test_cli_sample_with_a_zoo_name_reports_the_scores_used(assets, tmp_path, capsys):
    out_path = tmp_path / "x.npy"
    base = ["diffusion", "sample", "--n", "200", "--steps", "20", "--out", str(out_path)]
    code, out, _ = _cli([*base, "--bases", "band,ring", "--y", "1,2", "--method", "score-sum"], capsys)
    assert code == 0
    record = json.loads(out)
    assert record["bases"] == ["band", "ring"] and record["scores"] == ["learned", "exact"]
    assert np.load(out_path).shape == (200, 2) and record["l1"] > 0 and record["l1_floor"] > 0
    code, out, _ = _cli([*base, "--bases", "spec:band,ring", "--y", "1,2", "--method", "score-sum"], capsys)
    assert code == 0 and json.loads(out)["scores"] == ["exact", "exact"]
    code, out, _ = _cli([*base, "--bases", "band,ring", "--y", "1,2", "--method", "oracle", "--n", "50",
                         "--steps", "5"], capsys)
    assert code == 0 and json.loads(out)["scores"] == ["exact", "exact"]  # the oracle: exact spec scores
    code, out, _ = _cli(["diffusion", "density", "--bases", "band,spec:ring", "--y", "1,2", "--bins", "10",
                         "--out", str(tmp_path / "q.npy")], capsys)
    assert code == 0 and json.loads(out)["bases"] == ["band", "ring"]


@pytest.mark.parametrize("bases, message", [
    ("nope,band", "unknown diffusion base"),
    ("spec:nope,band", "unknown diffusion base"),
    ("missing.pt,band", "checkpoint not found"),
])
def test_cli_unknown_bases_exit_2_with_one_error_line(assets, tmp_path, capsys, bases, message):
    code, out, err = _cli(["diffusion", "sample", "--bases", bases, "--y", "1,2", "--method", "score-sum", "--n",
                           "50", "--steps", "5", "--out", str(tmp_path / "x.npy")], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_cli_build_diffusion_refuses_unknown_names(assets, capsys):
    code, out, err = _cli(["zoo", "build-diffusion", "--names", "ring,nope", "--steps", "5"], capsys)
    assert code == 2 and err.strip().startswith("error:") and "nope" in err and len(err.strip().splitlines()) == 1


def test_shipped_diffusion_models_load_and_sample_near_the_floor(monkeypatch):
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    entries = read_manifest().get(SECTION, {})
    assert set(DIFFUSION_ZOO_SPECS) <= set(entries), "run `python -m sculpt_core zoo build-diffusion`"
    for name, entry in entries.items():
        model = load_diffusion_model(name)
        spec = model.spec()
        assert spec is not None and entry["spec"] in BUILTIN_SPECS, name
        assert model.meta["spec_name"] == entry["spec"], name
        assert entry["l1_over_floor"] <= 1.6, (name, entry)
        assert entry["eval_n"] == 20000 and entry["eval_steps"] == 500, name


def test_shipped_classifiers_load_and_belong_to_the_shipped_bases(monkeypatch):
    from sculpt_core.domains.diffusion.sampling import sample_method
    from sculpt_core.domains.diffusion.zoo import (
        DIFFUSION_ZOO_CLASSIFIERS,
        base_fingerprints,
        diffusion_classifier_entries,
        find_diffusion_classifier,
        load_diffusion_classifier,
        resolve_base,
    )

    from sculpt_core.domains.diffusion.images.zoo import IMAGE_ZOO_CLASSIFIERS

    monkeypatch.delenv("SCULPT_ASSETS", raising=False)  # the shipped zoo, not the module's tiny one
    entries = diffusion_classifier_entries()
    # the section holds the 2-D classifiers and the colored-MNIST ones (tested in tests/diffusion/test_images_cli.py)
    assert set(entries) == set(DIFFUSION_ZOO_CLASSIFIERS) | set(IMAGE_ZOO_CLASSIFIERS)
    for key, (names, n_labels, alpha_cond, _settings) in DIFFUSION_ZOO_CLASSIFIERS.items():
        clf = load_diffusion_classifier(find_diffusion_classifier(list(names)))
        bases = [resolve_base(n) for n in names]
        clf.check_bases(base_fingerprints(bases))  # raises if a base was retrained after the classifier
        assert (clf.cfg.n_models, clf.cfg.n_labels, clf.cfg.alpha_cond) == (len(names), n_labels, alpha_cond)
        assert 0 < entries[key]["posterior_tv_y1_mean"] < 0.05
        comp = A.conditioning(tuple(range(1, len(names) + 1)), len(names))
        x, _ = sample_method([b.spec for b in bases], comp, "classifier", 64, 10, models=[b.model for b in bases],
                             classifier=clf)
        assert bool(torch.isfinite(x).all())
    assert find_diffusion_classifier(["band", "ring"]) is None  # order matters: labels name bases by position
