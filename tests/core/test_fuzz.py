"""Property-based fuzzing (hypothesis) of everything that reads user input: the list and label parsers, the
composition validation, the diffusion spec reader and the command line itself.

The contract under test: every input ends in a correct answer or a SculptError (on the command line: exit 2
and one ``error:`` line), never another exception, a traceback, a NaN answer or a half-written file. Runs are
kept short (modest ``max_examples``, no deadline); the counts of inputs tried, clear errors and tracebacks are
written to ``test-output/fuzz_counts.json`` at the end of the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sculpt_core.cli import main
from sculpt_core.core import algebra as A
from sculpt_core.core.cli import composition_from_args, parse_list
from sculpt_core.core.operators import OPERATORS, build_composition, parse_labels, parse_weights
from sculpt_core.errors import SculptError

ROOT = Path(__file__).resolve().parents[2]
COUNTS: dict[str, Counter] = {}
#: SCULPT_FUZZ_SCALE=10 runs ten times the examples (a deeper hunt than the test suite's default).
SCALE = float(os.environ.get("SCULPT_FUZZ_SCALE", "1"))
#: The suite's default run is reproducible (the same examples every time, so CI is stable); a scaled run is random.
DERANDOMIZE = SCALE == 1
FAST = settings(max_examples=int(150 * SCALE), deadline=None, database=None, derandomize=DERANDOMIZE, suppress_health_check=[HealthCheck.too_slow])
CLI = settings(max_examples=int(40 * SCALE), deadline=None, database=None, derandomize=DERANDOMIZE,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _count(suite: str, outcome: str) -> None:
    COUNTS.setdefault(suite, Counter())[outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    total = Counter()
    for c in COUNTS.values():
        total.update(c)
    report = {"suites": {k: dict(v) for k, v in sorted(COUNTS.items())}, "total": dict(total)}
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    (out / "fuzz_counts.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print("\nfuzz counts:", json.dumps(report["total"], sort_keys=True))


def _library_call(suite: str, fn, *args, **kwargs):
    """fn(*args) → its value, or None after a SculptError; any other exception fails the test."""
    try:
        value = fn(*args, **kwargs)
    except SculptError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(exc)
        _count(suite, "error")
        return None
    except Exception as exc:  # pragma: no cover - a failure is what we are looking for
        _count(suite, "traceback")
        raise AssertionError(f"{suite}: {type(exc).__name__}: {exc}") from exc
    _count(suite, "ok")
    return value


# ----- text strategies ---------------------------------------------------------------------------------------
DIGITS = "0123456789¹²³١٢٣۱۲٣१२३１２３"  # ASCII, superscripts, Arabic-Indic, Persian, Devanagari, full-width
LIST_TEXT = st.one_of(
    st.text(alphabet=DIGITS + ",;. -+_eEyYnaif\t\n", max_size=16),
    st.text(max_size=12),
    st.lists(st.integers(-3, 5), min_size=0, max_size=5).map(lambda v: ",".join(map(str, v))),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4).map(lambda v: ",".join(map(repr, v))),
)
FLOATS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3).map(float),
                   st.sampled_from([0.0, 1.0, 0.5, 1e-300, 1e300, -0.0, 0.05, 0.95]))


# ----- parsers -------------------------------------------------------------------------------------------------
@FAST
@given(LIST_TEXT, st.sampled_from([int, float, str]))
def test_parse_list(text, kind):
    values = _library_call("parse_list", parse_list, text, kind, "--x")
    if values is not None:
        assert values and all(type(v) is kind for v in values)
        if kind is float:
            assert all(math.isfinite(v) for v in values)
        if kind is int:  # what was read is what was written: ASCII digits only
            assert parse_list(",".join(map(str, values)), int, "--x") == values
            assert all(t.strip().lstrip("+-").isascii() for t in text.split(",") if t.strip())


@FAST
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6))
def test_parse_list_reads_every_int_list(values):
    assert parse_list(",".join(map(str, values)), int, "--y") == values


@FAST
@given(LIST_TEXT)
def test_parse_labels(text):
    labels = _library_call("parse_labels", parse_labels, text)
    if labels is not None:
        assert 1 <= len(labels) <= 6 and all(type(y) is int and y >= 0 for y in labels)


@FAST
@given(LIST_TEXT, st.integers(1, 4))
def test_parse_weights(text, m):
    weights = _library_call("parse_weights", parse_weights, text, m)
    if weights is not None:
        assert len(weights) == m and all(math.isfinite(w) for w in weights)


@FAST
@given(st.sampled_from(list(OPERATORS) + ["nope", ""]), st.integers(-1, 5), FLOATS, LIST_TEXT, LIST_TEXT)
def test_build_composition(op, m, alpha, labels, weights):
    comp = _library_call("build_composition", build_composition, op, m, alpha, labels, weights)
    if comp is not None:
        comp.validate()
        assert comp.n_models == m


VALID_LABELS = st.lists(st.integers(1, 3), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v)))
VALID_WEIGHTS = st.lists(st.floats(0, 5), min_size=1, max_size=4).map(lambda v: ",".join(map(repr, v)))


@FAST
@given(st.one_of(st.integers(2, 3), st.integers(-1, 4)), st.one_of(
    st.tuples(st.one_of(VALID_LABELS, LIST_TEXT), st.one_of(st.none(), st.floats(0.01, 0.99), FLOATS), st.none()),
    st.tuples(st.none(), st.none(), st.one_of(VALID_WEIGHTS, LIST_TEXT)),
    st.tuples(st.one_of(st.none(), LIST_TEXT), FLOATS, st.one_of(st.none(), LIST_TEXT))),
    st.one_of(st.just(1.0), st.floats(0.1, 5), FLOATS))
def test_composition_from_args(n, args, beta):
    y, alpha, weights = args
    comp = _library_call("composition_from_args", composition_from_args, n, y, alpha, weights,
                         1.0 if beta is None else beta)
    if comp is not None:
        _check_composition(comp)


# ----- composition validation ------------------------------------------------------------------------------------
LOG_P = torch.log_softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 1)


def _check_composition(comp: A.Composition) -> None:
    """A valid composition of up to 4 models defines a distribution: its target sums to 1 and is finite."""
    if comp.n_models > 4:
        return
    log_z = torch.linspace(-1, 1, comp.n_models, dtype=torch.float64)
    try:
        target = comp.log_target(LOG_P[: comp.n_models], log_z)
    except SculptError:
        return  # e.g. a weight pattern with no mass: refused, not NaN
    p = target.exp()
    assert torch.isfinite(target[target > -math.inf]).all() and abs(float(p.sum()) - 1) < 1e-9


@FAST
@given(st.sampled_from(A.KINDS + ("bogus",)), st.one_of(st.integers(-2, 5), st.floats(), st.booleans()),
       st.lists(st.one_of(st.integers(-2, 6), st.floats(), st.booleans(), st.text(max_size=2)), max_size=5),
       FLOATS, st.lists(st.one_of(st.floats(), st.integers(-2, 5)), max_size=5), FLOATS)
def test_composition_validation(kind, n, labels, alpha, weights, beta):
    comp = _library_call("Composition", A.Composition, kind, n, tuple(labels), alpha, tuple(weights),
                         1.0 if beta is None else beta)
    if comp is not None:
        _check_composition(comp)


@FAST
@given(st.lists(st.one_of(st.integers(-2, 5), st.floats(), st.booleans(), st.text(max_size=2), st.none()),
                max_size=5), st.integers(-1, 4))
def test_conditioning_refuses_what_is_not_a_label(labels, n):
    comp = _library_call("conditioning", A.conditioning, labels, n)
    if comp is not None:  # accepted labels are whole numbers in 1..n, exactly as given (never truncated)
        assert [float(y) for y in labels] == [float(y) for y in comp.labels]


# ----- diffusion specs ----------------------------------------------------------------------------------------------
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(), st.integers(-5, 5), st.text(max_size=3)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=12)
NUMS = st.one_of(st.floats(-3, 3), st.floats(), st.integers(-2, 3))


VALID_SPEC = st.integers(1, 4).flatmap(lambda k: st.fixed_dictionaries(
    {"weights": st.lists(st.floats(0.01, 5), min_size=k, max_size=k),
     "means": st.lists(st.lists(st.floats(-3, 3), min_size=2, max_size=2), min_size=k, max_size=k),
     "stds": st.lists(st.floats(1e-3, 2), min_size=k, max_size=k)}, optional={"name": st.text(max_size=5)}))


def _spec_like():
    k = st.integers(0, 3)
    return k.flatmap(lambda n: st.fixed_dictionaries(
        {"weights": st.one_of(st.lists(NUMS, min_size=n, max_size=n), JSON),
         "means": st.one_of(st.lists(st.lists(NUMS, min_size=2, max_size=2), min_size=n, max_size=n), JSON)},
        optional={"stds": st.one_of(st.lists(NUMS, min_size=n, max_size=n), JSON),
                  "covs": st.one_of(st.lists(st.lists(st.lists(NUMS, min_size=2, max_size=2), min_size=2, max_size=2),
                                             min_size=n, max_size=n), JSON),
                  "name": JSON, "extra": JSON}))


@FAST
@given(st.one_of(JSON, _spec_like(), VALID_SPEC))
def test_diffusion_spec_from_dict(data):
    pytest.importorskip("sculpt_core.domains.diffusion.spec")
    from sculpt_core.domains.diffusion.spec import spec_from_dict

    spec = _library_call("spec_from_dict", spec_from_dict, data)
    if spec is not None:
        w = torch.as_tensor(spec.weights, dtype=torch.float64)
        assert torch.isfinite(w).all() and abs(float(w.sum()) - 1) < 1e-6


# ----- the command line ---------------------------------------------------------------------------------------------
# Each option has valid values and hostile ones. A run draws at most one option to be hostile (so the hostile
# value reaches the code behind the others, not just the first check) or none (so successful runs are checked
# for correct output too).
INTS = ["0", "-1", "1000000000", str(2**70), "abc", "", "¹", "١", "1_0", "1.5"]
REALS = ["nan", "inf", "-inf", "abc", "", "¹", "1e400", "-1", "0"]
SEEDS = (["0", "7", "123456789"], INTS + [str(2**63)])
LABEL_HOSTILE = ["¹,²", "١,٢", "1.5,2", "0,1", "9", "", ",", "1,,x", "y1;y9", "-1", "1e3"]


def _run(argv: list[str], suite: str, before_work: bool = True) -> tuple[int, str, str]:
    """Run one command line; ``before_work``: a refusal must come before anything else is printed (no
    progress bar first)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    stdout, stderr = out.getvalue(), err.getvalue()
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    if code not in (0, 2) or "Traceback" in stderr or "internal error" in stderr:
        _count(suite, "traceback")
        raise AssertionError(f"{argv}: exit {code}: {stderr[-800:]}")
    if code == 2:  # one line, and nothing before it: bad input is refused before any work (or progress bar)
        assert len(lines) == 1 and stdout == "" and (stderr.strip() == lines[0] or not before_work), (argv, stderr)
        _count(suite, "error")
    else:
        assert not lines and len(stdout.strip().splitlines()) == 1, (argv, stderr, stdout)
        json.loads(stdout)
        _count(suite, "ok")
    return code, stdout, stderr


def _hostile(data, *targets: str) -> str | None:
    """Which one thing of an example is hostile: None (a clean run, a third of the time) or one target."""
    return data.draw(st.one_of(st.just(None), st.sampled_from(targets)), label="hostile")


def _options(data, spec: dict[str, tuple[list, list]], always: tuple[str, ...] = (), bad: str | None = "draw") -> list[str]:
    """argv words for ``spec`` (option → (valid values, hostile values)): option ``bad`` hostile (by default one
    drawn here, or none), the others valid or left out (those in ``always`` are always given)."""
    names = list(spec)
    if bad == "draw":
        bad = data.draw(st.sampled_from([None, None] + names), label="hostile option")
    argv: list[str] = []
    for name in names:
        valid, hostile = spec[name]
        if name == bad:
            argv += [name, data.draw(st.sampled_from(hostile), label=name)]
        elif name in always or data.draw(st.booleans(), label=f"give {name}"):
            value = data.draw(st.sampled_from(valid), label=name)
            argv += [] if value is None else [name, value]
    return argv


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory) -> dict[str, str]:
    """Hostile and valid input files for the command line, and output paths of every kind."""
    from helpers import random_model

    d = tmp_path_factory.mktemp("fuzz")
    np.save(d / "ok.npy", np.random.default_rng(0).normal(size=(8, 8)))
    np.save(d / "three_d.npy", np.zeros((4, 4, 4)))
    np.save(d / "huge.npy", np.full((8, 8), 1.8e19))
    np.save(d / "nan.npy", np.full((8, 8), np.nan))
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(d / "archive.npz", a=np.zeros((8, 8)))
    (d / "archive.npy").write_bytes((d / "archive.npz").read_bytes())
    (d / "text.npy").write_text("not numpy\n")
    (d / "junk.pt").write_bytes(b"junk")
    (d / "a_file").write_text("x")
    (d / "folder").mkdir()
    model = random_model(height=8, seed=3, log_reward=torch.zeros(8, 8, dtype=torch.float64))
    model.save(d / "rand.pt")
    for key, value in (("t0", 0), ("tstr", "hot"), ("tnan", float("nan"))):
        model.meta["temperature"] = value
        model.save(d / f"{key}.pt")
    (d / "mols.smi").write_text("CCO\nc1ccccc1 benzene\n\nnot_a_smiles\n")
    (d / "mols.csv").write_text('smiles,name\n"CCO\nCC",a\nc1ccccc1,b\n,empty\n')
    (d / "nosmiles.csv").write_text("name\nx\n")
    (d / "long.smi").write_text("C" * 5000 + "\n")
    (d / "bin.smi").write_bytes(b"\xff\xfe\x00C")
    names = ("ok.npy", "three_d.npy", "huge.npy", "nan.npy", "objects.npy", "archive.npz", "archive.npy", "text.npy",
             "junk.pt", "rand.pt", "t0.pt", "tstr.pt", "tnan.pt", "mols.smi", "mols.csv", "nosmiles.csv", "long.smi",
             "bin.smi", "a_file", "folder")
    return {k: str(d / k) for k in names} | {"dir": str(d)}


def _outs(f: dict[str, str], suffixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    d = f["dir"]
    return ([f"{d}/out{s}" for s in suffixes] + [f"{d}/sub/out{suffixes[0]}"],
            [f"{d}/new_dir/", f["folder"], f"{f['a_file']}/x{suffixes[0]}", "", "/proc/no/such/out"])


def _check_array(argv: list[str], code: int, distribution: bool) -> None:
    """Never a silent wrong answer: what a successful command wrote is finite (and a distribution sums to 1)."""
    out = argv[argv.index("--out") + 1]
    if code != 0:
        return
    arr = np.loadtxt(out, delimiter=",") if out.endswith(".csv") else np.load(out)
    assert np.isfinite(arr).all(), argv
    if distribution:
        assert (arr >= 0).all() and abs(arr.sum() - 1) < 1e-6, argv


def _composition(data, labels: list[str], weights: list[str], hostile: bool | None = None) -> list[str]:
    good, bad = ["y", "y+alpha", "weights"], ["both", "none", "bad y", "bad alpha", "bad weights"]
    kind = data.draw(st.sampled_from(good if hostile is False else bad if hostile else good + bad))
    return {"y": ["--y", data.draw(st.sampled_from(labels))],
            "y+alpha": ["--y", data.draw(st.sampled_from(labels)), "--alpha", data.draw(st.sampled_from(["0.05", "0.5", "0.95"]))],
            "weights": ["--weights", data.draw(st.sampled_from(weights))],
            "both": ["--y", labels[0], "--weights", weights[0]],
            "none": [],
            "bad y": ["--y", data.draw(st.sampled_from(LABEL_HOSTILE))],
            "bad alpha": ["--y", labels[0], "--alpha", data.draw(st.sampled_from(REALS + ["1", "1.5"]))],
            "bad weights": ["--weights", data.draw(st.sampled_from(LABEL_HOSTILE + ["0,0", "1,nan", "-1,2"]))]}[kind]


GRID_BASES = (["circle1,circle2", "circle1,circle2,circle3", "symmetric_shubert,diag_sigmoid", "circle1_beta,circle2_beta"],
              ["circle1", "nope,circle1", "", ",", "circle1,circle2,circle3,circle1,circle2"])


@CLI
@given(st.data())
def test_cli_grid_compose(cli_files, data):
    f = cli_files
    hostile_bases = GRID_BASES[1] + [f"{f['junk.pt']},circle1", f"{f['t0.pt']},circle1", f"{f['rand.pt']},circle1"]
    spec = {
        "--method": (["oracle", "classifier", "reaching", "ensemble"], ["magic", ""]),
        "--u": (["exact", "flow", "trajectory"], ["bogus"]),
        "--samples": (["1", "50", "400"], INTS),
        "--seed": SEEDS,
        "--beta": ([None, "1", "0.75"], REALS + ["3", "1e-300"]),
        "--result-beta": (["1", "2", "0.5"], REALS + ["1e-300", "1e300"]),
        "--classifier": ([None], [f["junk.pt"], f["rand.pt"], f"{ROOT}/assets/zoo/grid/classifier_circle1__circle2.pt",
                                  f["folder"], f["dir"] + "/missing.pt"]),
        "--out": _outs(f, (".npy", ".csv")),
    }
    bad = _hostile(data, "--bases", "composition", *spec)
    bases = data.draw(st.sampled_from(hostile_bases if bad == "--bases" else GRID_BASES[0]))
    three = len(bases.split(",")) == 3
    argv = ["grid", "compose", "--bases", bases]
    argv += _composition(data, ["1,2,3", "1,1", "3,3,2"] if three else ["1,2", "1,1", "2,2", "2,1", "y1 y2"],
                         ["1,2,1"] if three else ["1,2", "0.5,2"], hostile=bad == "composition")
    argv += _options(data, spec, always=("--method", "--out"), bad=bad)
    code, _, _ = _run(argv, "cli grid compose")
    _check_array(argv, code, distribution=True)


@CLI
@given(st.data())
def test_cli_grid_dist(cli_files, data):
    f = cli_files
    argv = ["grid", "dist"] + _options(data, bad=_hostile(data, "--base", "--beta", "--out"), spec={
        "--base": (["circle1", "circle1_beta", "diag_sigmoid", f["rand.pt"]],
                   ["nope", "", f["t0.pt"], f["tstr.pt"], f["tnan.pt"], f["junk.pt"], f["text.npy"], f["folder"]]),
        "--beta": ([None, "1", "2"], REALS + ["1e-300", "5"]),
        "--out": _outs(f, (".npy", ".csv")),
    }, always=("--base", "--out"))
    code, _, _ = _run(argv, "cli grid dist")
    _check_array(argv, code, distribution=True)


@CLI
@given(st.data())
def test_cli_grid_train(cli_files, data):
    f = cli_files
    if data.draw(st.booleans()):
        source = ["--reward", data.draw(st.sampled_from(["circle1", "diag_sigmoid", "nope", ""]))]
    else:
        source = ["--reward-file", data.draw(st.sampled_from(
            [f["ok.npy"], f["ok.npy"], f["three_d.npy"], f["huge.npy"], f["nan.npy"], f["objects.npy"], f["archive.npz"],
             f["archive.npy"], f["text.npy"], f["a_file"], f["folder"], f["dir"] + "/missing.npy"]))]
    argv = ["grid", "train"] + source + _options(data, {
        "--temperature": (["1", "0.5", "2"], REALS + ["1e-300", "1e300"]),
        "--steps": (["1", "2"], INTS),
        "--batch-size": (["1", "16"], INTS),
        "--seed": SEEDS,
        "--height": (["8", "4"], ["1", "513", "abc", "0"]),
        "--loss": (["tb", "db"], ["bogus"]),
        "--target-l1": (["0.5"], REALS),
        "--out": _outs(f, (".pt",)),
    }, always=("--steps", "--out"))
    _run(argv, "cli grid train")


@CLI
@given(st.data())
def test_cli_grid_train_classifier(cli_files, data):
    f = cli_files
    argv = ["grid", "train-classifier"] + _options(data, {
        "--bases": (["circle1,circle2", "circle1,circle2,circle3", f"{f['rand.pt']},{f['rand.pt']}"],
                    ["circle1", "nope,circle1", "", f"{f['junk.pt']},circle1"]),
        "--labels": (["1", "2", "3"], INTS + ["20"]),
        "--steps": (["1", "2"], INTS),
        "--seed": SEEDS,
        "--out": _outs(f, (".pt",)),
    }, always=("--bases", "--steps", "--out"))
    _run(argv, "cli grid train-classifier")


@CLI
@given(st.data())
def test_cli_mol_score(cli_files, data):
    pytest.importorskip("rdkit")
    f = cli_files
    content = data.draw(st.one_of(st.text(max_size=40), st.sampled_from(["CCO\n", "c1ccccc1\n\n", 'smiles\n"C\nC"\n'])))
    suffix = data.draw(st.sampled_from([".smi", ".csv", ".txt", ""]))
    path = Path(f["dir"]) / f"fuzz_in{suffix}"
    path.write_text(content, encoding="utf-8")
    argv = ["mol", "score"] + _options(data, {
        "--in": ([str(path), f["mols.smi"], f["mols.csv"]],
                 [f["nosmiles.csv"], f["long.smi"], f["bin.smi"], f["folder"], f["dir"] + "/missing.smi", ""]),
        "--batch-size": (["1", "3", "256"], INTS),
        "--out": _outs(f, (".csv",)),
    }, always=("--in", "--out"))
    _run(argv, "cli mol score")


@settings(max_examples=int(25 * SCALE), deadline=None, database=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_cli_mol_sample(cli_files, data):
    pytest.importorskip("rdkit")
    from sculpt_core.domains.molecules.fragments import resolve_fragments_path

    try:
        resolve_fragments_path()
    except SculptError as exc:
        pytest.skip(f"fragment table unavailable: {exc}")
    f = cli_files
    options = ["--n", "--beta", "--batch-size", "--seed", "--u", "--scoring", "--top-k", "--out"]
    bad = _hostile(data, "--bases", "composition", *options)
    method = data.draw(st.sampled_from(["base", "reaching", "ensemble"] + (["classifier"] if bad else [])))
    bases = data.draw(st.sampled_from(["nope", "", f["junk.pt"]] if bad == "--bases" else
                                      {"base": ["seh", "qed"]}.get(method, ["seh,sa", "sa,qed"])))
    argv = ["mol", "sample", "--bases", bases, "--method", method]
    if method != "base":
        argv += _composition(data, ["1,2", "1,1", "2,2"], ["1,1", "1,2"], hostile=bad == "composition")
    argv += _options(data, bad=bad, spec={
        "--n": (["1", "2"], INTS),
        "--beta": (["32", "16"], REALS + ["1000", "-5"]),
        "--batch-size": (["1", "4"], INTS),
        "--seed": SEEDS,
        "--u": (["trajectory", "flow"], ["bogus"]),
        "--scoring": (["fast"], ["bogus"]),
        "--top-k": (["8"], INTS),
        "--out": _outs(f, (".csv",)),
    }, always=("--n", "--out"))
    _run(argv, "cli mol sample")


@CLI
@given(st.data())
def test_cli_diffusion_cheap_commands(cli_files, data):
    f = cli_files
    spec = Path(f["dir"]) / "spec.json"
    spec.write_text(json.dumps(data.draw(st.one_of(JSON, _spec_like()), label="spec.json")))
    argv = ["diffusion", data.draw(st.sampled_from(["density", "sample"]))]
    argv += ["--bases", data.draw(st.sampled_from(["spec:ring,spec:band", "ring,band", f"{spec},spec:ring",
                                                   "nope,ring", "", "ring", f"{f['junk.pt']},ring"]))]
    argv += _composition(data, ["1,2", "1,1", "2,1"], ["1,1", "2,1"])
    if argv[1] == "density":
        argv += _options(data, {"--extent": (["3.5", "1"], REALS), "--bins": (["4", "8"], INTS + ["1001"]),
                                "--out": _outs(f, (".npy", ".csv"))}, always=("--bins", "--out"))
    else:
        argv += _options(data, {
            "--method": (["score-sum", "base", "superdiff", "oracle"], ["magic", ""]),
            "--n": (["8"], INTS), "--steps": (["3"], INTS), "--sampler": (["em", "pc", "ode"], ["bogus"]),
            "--seed": SEEDS, "--model": (["1", "2"], INTS), "--gamma": (["1", "0.5"], REALS),
            "--bins": (["4"], INTS), "--extent": (["3.5"], REALS), "--out": _outs(f, (".npy", ".csv"))},
            always=("--n", "--steps", "--bins", "--out"))
    code, _, _ = _run(argv, "cli diffusion")
    _check_array(argv, code, distribution=argv[1] == "density")


@CLI
@given(st.lists(st.one_of(st.sampled_from(["grid", "mol", "diffusion", "zoo", "list", "rewards", "specs", "dist",
                                           "compose", "--out", "--base", "--bases", "--y", "--", "-"]),
                          st.text(max_size=6)), max_size=6))
def test_cli_random_argv(cli_files, argv):
    """Random words: a parse error (exit 2, one line) or a cheap command; never a traceback. Run in a scratch
    folder (argparse also accepts abbreviations such as --ou for --out)."""
    argv = [w for w in argv if w not in ("-h", "--help")]  # help prints a usage page, not one JSON line
    with contextlib.chdir(Path(cli_files["dir"]) / "folder"):
        _run(argv, "cli random argv")
