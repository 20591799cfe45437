"""Molecule rewards: the plain-PyTorch sEH proxy against the shared reference outputs,
QED/SA, reward formulas, bad SMILES, missing weights, hostile weight pickles and the ``mol score`` CLI."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from sculpt_core.cli import main
from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules import rewards as M
from sculpt_core.domains.molecules import seh_proxy as S

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SEH_DIR = SHARED / "seh_proxy"
REFERENCE = SEH_DIR / "reference_outputs.csv"
WEIGHTS = SEH_DIR / "best_params.pkl.gz"
needs_shared = pytest.mark.skipif(not (REFERENCE.is_file() and WEIGHTS.is_file()),
                                  reason=f"shared sEH data not present at {SEH_DIR} (needs <repo>/../shared/data)")


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    if not REFERENCE.is_file():
        pytest.skip(f"shared reference outputs not present at {REFERENCE}")
    with REFERENCE.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def shared_weights(monkeypatch):
    """Pin the loader to the shared weight file, whatever the caller's environment says."""
    monkeypatch.setenv(S.SEH_WEIGHTS_ENV, str(WEIGHTS))


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No weights anywhere: the env var names a missing file and the other two locations are empty."""
    monkeypatch.setenv(S.SEH_WEIGHTS_ENV, str(tmp_path / "nope.pkl.gz"))
    monkeypatch.setattr(S, "SHARED_WEIGHTS", tmp_path / "shared" / "best_params.pkl.gz")
    monkeypatch.setattr(S, "CACHE_WEIGHTS", tmp_path / "cache" / "best_params.pkl.gz")


def column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows])


# ----- proxy against the reference ------------------------------------------------------------------
@needs_shared
def test_proxy_matches_reference_batched_and_one_by_one(reference, shared_weights):
    mols = [M.parse_smiles(r["smiles"]) for r in reference]
    assert all(m is not None for m in mols)
    ref = column(reference, "proxy_raw")
    model = S.get_seh_proxy()
    batched = model.predict_mols(mols)
    assert batched.dtype == np.float32
    np.testing.assert_allclose(batched, ref, rtol=0, atol=1e-4)
    small_batches = model.predict_mols(mols, batch_size=7)
    np.testing.assert_allclose(small_batches, ref, rtol=0, atol=1e-4)
    singles = np.array([model.predict_mols([m])[0] for m in mols])
    np.testing.assert_allclose(singles, ref, rtol=0, atol=1e-4)
    assert S.get_seh_proxy() is model  # one model per process


@needs_shared
def test_score_smiles_matches_reference(reference, shared_weights):
    records = M.score_smiles([r["smiles"] for r in reference])
    assert [r["smiles"] for r in records] == [r["smiles"] for r in reference]
    assert all(r["valid"] for r in records)
    for key, tol in [("proxy_raw", 1e-4), ("seh_reward", 1e-4), ("qed", 1e-6), ("sa_score", 1e-6), ("sa_reward", 1e-6)]:
        np.testing.assert_allclose(column(records, key), column(reference, key), rtol=0, atol=tol, err_msg=key)


def test_qed_and_sa_match_reference_without_weights(reference, no_weights):
    """SA/QED need no proxy weights; the edge-case rows (ions, [2H], charged N) are included."""
    assert not S.seh_available()
    records = M.score_smiles([r["smiles"] for r in reference])
    for key in ("qed", "sa_score", "sa_reward"):
        np.testing.assert_allclose(column(records, key), column(reference, key), rtol=0, atol=1e-6, err_msg=key)
    assert all(math.isnan(r["proxy_raw"]) and math.isnan(r["seh_reward"]) for r in records)


def test_reward_formulas():
    f32_min = float(np.float32(1e-4))
    assert M.seh_reward(-3.0) == float(np.float32(f32_min) / np.float32(8)) == pytest.approx(1.25e-5)
    assert M.seh_reward(4.0) == 0.5
    assert M.seh_reward(1000.0) == 12.5
    assert M.seh_reward(float("nan")) == 0.0
    np.testing.assert_array_equal(M.seh_reward([float("nan"), 8.0, 0.0]), np.array([0.0, 1.0, 1.25e-5], np.float32))
    assert M.sa_reward(1.0) == 1.0 and M.sa_reward(10.0) == 0.0
    assert M.sa_reward(5.5) == float(np.float32(4.5) / np.float32(9))


def test_seh_reward_formula_on_reference(reference):
    """The CSV's seh_reward is exactly the float32 formula applied to its proxy_raw."""
    np.testing.assert_array_equal(M.seh_reward(column(reference, "proxy_raw")).astype(np.float64),
                                  column(reference, "seh_reward"))
    np.testing.assert_array_equal(M.sa_reward(column(reference, "sa_score")).astype(np.float64),
                                  column(reference, "sa_reward"))


# ----- featurisation details of the sEH proxy ------------------------------------------------------------
def test_featurisation_edge_cases():
    g = S.mol_to_graph(M.parse_smiles("[Cl-].[Na+]"))  # zero bonds: one zero self-loop on atom 0
    assert g.edge_index.tolist() == [[0], [0]] and g.edge_attr.tolist() == [[0, 0, 0, 0]]
    g = S.mol_to_graph(M.parse_smiles("[2H]OC"))  # the explicit H is a node and counts for its neighbour
    x = g.x.numpy()
    assert x.shape == (3, 71) and x[0, 0] == 1 and x[0, 14] == 1 and x[1, 13] == 1
    g = S.mol_to_graph(M.parse_smiles("c1ccccc1C#N"))
    x = g.x.numpy()
    assert x[0, [1, 9, 11, 19]].tolist() == [1, 1, 1, 1] and x[0, 13] == 1  # aromatic SP2 carbon, one H
    assert x[7, [2, 10, 20]].tolist() == [1, 1, 1]  # nitrile N: SP, Z=7 → column 20
    assert sorted(set(g.edge_type.tolist())) == [0, 2, 3] and g.edge_index.shape[1] == 16
    x = S.mol_to_graph(M.parse_smiles("C")).x.numpy()
    assert x[0, 13] == 4 and x[0, 12] == 1  # raw H count, not one-hot
    for bad in ("[U]", "[Rn]"):  # Z > 56
        with pytest.raises(SculptError, match="atomic number"):
            S.mol_to_graph(M.parse_smiles(bad))
    with pytest.raises(SculptError):
        S.mol_to_graph(None)


# ----- invalid input -----------------------------------------------------------------------------------
@needs_shared
def test_invalid_smiles_never_raise(shared_weights):
    inputs = ["CCO", "not a smiles", "", None, float("nan"), "C1CC", "c1cccc1", "[U]", 42]
    records = M.score_smiles(inputs)
    assert [r["valid"] for r in records] == [True, False, False, False, False, False, False, True, False]
    for r in records:
        assert list(r) == list(M.RECORD_KEYS)
        if not r["valid"]:
            assert all(math.isnan(r[k]) for k in M.RECORD_KEYS[2:])
    uranium = records[7]  # parses, but the proxy cannot encode Z > 56: NaN proxy, sEH reward 0, SA/QED computed
    assert math.isnan(uranium["proxy_raw"]) and uranium["seh_reward"] == 0.0 and 0 < uranium["qed"] < 1
    assert records[0]["proxy_raw"] == pytest.approx(0.0273121, abs=1e-4)
    assert M.score_smiles([]) == []


@needs_shared
def test_score_mols_flat_rewards(reference, shared_weights):
    mols = [M.parse_smiles(s) for s in (reference[0]["smiles"], "bad(", "[U]", reference[1]["smiles"])]
    rewards, valid = M.score_mols(mols)
    assert rewards.shape == (4, 3) and rewards.dtype == torch.float32 and valid.tolist() == [True, False, False, True]
    assert rewards[1].abs().sum() == 0 and rewards[2].abs().sum() == 0
    for row, ref in ((0, reference[0]), (3, reference[1])):
        expected = [float(ref["seh_reward"]), float(ref["sa_reward"]), float(ref["qed"])]
        assert rewards[row].tolist() == pytest.approx(expected, abs=1e-4)
    empty, flags = M.score_mols([])
    assert empty.shape == (0, 3) and flags.shape == (0,)


# ----- weights: location, absence, hostile pickles, download ---------------------------------------------
def test_missing_weights_give_a_clear_error(no_weights, monkeypatch):
    with pytest.raises(SculptError, match="sEH proxy weights not found: set SCULPT_SEH_WEIGHTS"):
        S.get_seh_proxy()
    assert not S.seh_available() and "not a file" in S.seh_unavailable_reason()
    monkeypatch.delenv(S.SEH_WEIGHTS_ENV)
    with pytest.raises(SculptError, match="sEH proxy weights not found: set SCULPT_SEH_WEIGHTS"):
        M.score_mols([M.parse_smiles("CCO")])
    with pytest.raises(SculptError, match="not found"):
        M.score_smiles(["CCO"], seh=True)
    record = M.score_smiles(["CCO"])[0]  # SA and QED keep working
    assert record["valid"] and math.isnan(record["seh_reward"]) and record["qed"] == pytest.approx(0.4068, abs=1e-4)


@needs_shared
def test_weight_location_order(monkeypatch, tmp_path):
    monkeypatch.delenv(S.SEH_WEIGHTS_ENV, raising=False)
    cache = tmp_path / "cache.pkl.gz"
    monkeypatch.setattr(S, "SHARED_WEIGHTS", tmp_path / "missing.pkl.gz")
    monkeypatch.setattr(S, "CACHE_WEIGHTS", cache)
    cache.write_bytes(WEIGHTS.read_bytes())
    assert S.find_seh_weights() == cache
    monkeypatch.setattr(S, "SHARED_WEIGHTS", WEIGHTS)
    assert S.find_seh_weights() == WEIGHTS
    monkeypatch.setenv(S.SEH_WEIGHTS_ENV, str(cache))
    assert S.find_seh_weights() == cache
    params = S.load_seh_params(WEIGHTS)
    assert [p.shape for p in params] == list(S.PARAM_SHAPES)


class _Boom:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


@pytest.mark.parametrize("payload", ["system", "eval", "inside_list"])
def test_hostile_pickle_is_never_executed(payload, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    obj = {"system": _Boom(marker), "eval": _Eval(),
           "inside_list": [np.zeros((64, 71), np.float32), _Boom(marker)]}[payload]
    path = tmp_path / "best_params.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(obj)))
    with pytest.raises(SculptError, match="unsafe sEH proxy weights"):
        S.load_seh_params(path)
    assert not marker.exists()
    monkeypatch.setenv(S.SEH_WEIGHTS_ENV, str(path))
    assert not S.seh_available() and not marker.exists()


def test_malformed_weight_files_are_rejected(tmp_path, monkeypatch):
    cases = {
        "wrong_len.pkl.gz": gzip.compress(pickle.dumps([np.zeros(3, np.float32)])),
        "wrong_dtype.pkl.gz": gzip.compress(pickle.dumps([np.zeros(s, np.float64) for s in S.PARAM_SHAPES])),
        "object_array.pkl.gz": gzip.compress(pickle.dumps([np.array([1, 2], dtype=object)] * 22)),
        "truncated.pkl.gz": gzip.compress(pickle.dumps([np.zeros(s, np.float32) for s in S.PARAM_SHAPES]))[:500],
        "not_pickle.pkl.gz": gzip.compress(b"hello"),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SculptError):
            S.load_seh_params(tmp_path / name)
    monkeypatch.setattr(S, "MAX_PICKLE_BYTES", 1000)  # a gzip bomb stops at the size limit
    (tmp_path / "big.pkl.gz").write_bytes(gzip.compress(pickle.dumps(np.zeros(10_000, np.float32))))
    with pytest.raises(SculptError, match="too large"):
        S.load_seh_params(tmp_path / "big.pkl.gz")
    monkeypatch.undo()
    good = [np.zeros(s, np.float32) for s in S.PARAM_SHAPES]
    (tmp_path / "good.pkl").write_bytes(pickle.dumps(good))  # plain (non-gzip) pickles of arrays load fine
    assert len(S.load_seh_params(tmp_path / "good.pkl")) == 22


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@needs_shared
def test_download_is_checked_and_atomic(tmp_path, monkeypatch):
    """download_seh_weights with urlopen replaced (no network): right bytes saved, wrong bytes and offline refused."""
    import urllib.request

    good = WEIGHTS.read_bytes()
    assert hashlib.sha256(good).hexdigest() == S.SEH_WEIGHTS_SHA256
    dest = tmp_path / "cache" / "best_params.pkl.gz"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _FakeResponse(good))
    assert S.download_seh_weights(dest) == dest and dest.read_bytes() == good
    dest.unlink()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _FakeResponse(good[:-1]))
    with pytest.raises(SculptError, match="sha256"):
        S.download_seh_weights(dest)

    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(SculptError, match="offline"):
        S.download_seh_weights(dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


# ----- CLI --------------------------------------------------------------------------------------------
def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_out(path: Path) -> list[dict]:
    with path.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == list(M.RECORD_KEYS)
        return list(reader)


@needs_shared
def test_cli_round_trip_smi_and_csv(reference, tmp_path, capsys, shared_weights):
    subset = reference[:5] + reference[-6:]
    smi = tmp_path / "in.smi"
    smi.write_text("".join(f"{r['smiles']} mol{i}\n" for i, r in enumerate(subset)) + "\nnot_smiles\n")
    code, out, _ = run_cli(["mol", "score", "--in", str(smi), "--out", str(tmp_path / "a.csv")], capsys)
    assert code == 0
    record = json.loads(out)
    assert record["n"] == 12 and record["valid"] == 11 and record["invalid"] == 1 and record["seh"] == "ok"
    rows = read_out(tmp_path / "a.csv")
    assert rows[-1]["valid"] == "false" and rows[-1]["proxy_raw"] == "" and rows[-1]["qed"] == ""
    for row, ref in zip(rows, subset):
        assert row["smiles"] == ref["smiles"] and row["valid"] == "true"
        for key, tol in [("proxy_raw", 1e-4), ("seh_reward", 1e-4), ("qed", 1e-6), ("sa_score", 1e-6), ("sa_reward", 1e-6)]:
            assert abs(float(row[key]) - float(ref[key])) <= tol, key

    table = tmp_path / "in.csv"
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "SMILES"])
        writer.writerows([[i, r["smiles"]] for i, r in enumerate(subset)] + [[99, "C1CC"]])
    code, out, _ = run_cli(["mol", "score", "--in", str(table), "--out", str(tmp_path / "b.csv")], capsys)
    assert code == 0 and json.loads(out)["valid"] == 11
    assert read_out(tmp_path / "b.csv") == rows[:-1] + [{**rows[-1], "smiles": "C1CC"}]


def test_cli_without_weights_still_scores_sa_and_qed(tmp_path, capsys, no_weights):
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\nc1ccccc1O phenol\n")
    code, out, _ = run_cli(["mol", "score", "--in", str(smi), "--out", str(tmp_path / "o.csv")], capsys)
    assert code == 0
    record = json.loads(out)
    assert record["seh"].startswith("unavailable: sEH proxy weights not found")
    rows = read_out(tmp_path / "o.csv")
    assert [r["proxy_raw"] for r in rows] == ["", ""] and [r["seh_reward"] for r in rows] == ["", ""]
    assert float(rows[0]["qed"]) == pytest.approx(0.4068, abs=1e-4) and float(rows[1]["sa_reward"]) > 0.9


@pytest.mark.parametrize("name, content, message", [
    ("missing.smi", None, "input file not found"),
    ("nosmiles.csv", "id,name\n1,CCO\n", "no 'smiles' column"),
    ("empty.csv", "", "empty"),
    ("blank.smi", "\n  \n", "no SMILES"),
    ("mols.sdf", "CCO\n", "unsupported input"),
    ("long.smi", "CCO\n" + "C" * 100_000 + "\n", "SMILES 2 has 100,000 characters; the bound is 1,000"),
    ("binary.smi", "\udcff", "not UTF-8"),
])
def test_cli_bad_inputs_exit_2(name, content, message, tmp_path, capsys):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
    code, out, err = run_cli(["mol", "score", "--in", str(path), "--out", str(tmp_path / "o.csv")], capsys)
    assert code == 2 and err.startswith("error:") and message in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "o.csv").exists()


def test_cli_reads_csv_as_csv(tmp_path, capsys, no_weights):
    """A quoted field may hold a newline (and commas): it stays one field, written back as given, and a SMILES
    with whitespace inside is invalid rather than scored by its first word ("CCO\nCC" is not ethanol)."""
    table = tmp_path / "in.csv"
    table.write_text('name,smiles\n"two\nlines",c1ccccc1\nb,"CCO\nCC"\n"x,y",CCO\n', encoding="utf-8")
    code, out, _ = run_cli(["mol", "score", "--in", str(table), "--out", str(tmp_path / "o.csv")], capsys)
    assert code == 0 and json.loads(out)["n"] == 3 and json.loads(out)["invalid"] == 1
    rows = read_out(tmp_path / "o.csv")
    assert [r["smiles"] for r in rows] == ["c1ccccc1", "CCO\nCC", "CCO"]
    assert [r["valid"] for r in rows] == ["true", "false", "true"]


@pytest.mark.parametrize("value, message", [("0", "--batch-size must be ≥ 1"), ("-3", "--batch-size must be ≥ 1"),
                                            ("1000000000", "65,536")])
def test_cli_batch_size_is_checked_first(value, message, tmp_path, capsys):
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\n")
    code, out, err = run_cli(["mol", "score", "--in", str(smi), "--out", str(tmp_path / "o.csv"), "--batch-size", value],
                             capsys)
    assert code == 2 and message in err and "no molecules to batch" not in err and len(err.strip().splitlines()) == 1


def test_parse_smiles_refuses_over_long_and_split_strings():
    assert M.parse_smiles("C" * 1001) is None and M.parse_smiles("CCO CC") is None and M.parse_smiles(" CCO ") is not None
