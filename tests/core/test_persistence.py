"""Persistence never corrupts or loses data (``sculpt_core.core.io`` and everything that writes through it).

- a checkpoint writer killed (SIGKILL) at random moments always leaves a complete, loadable checkpoint;
- processes updating the manifest side by side lose no entry;
- a command that fails (before or while writing) leaves an existing ``--out`` file byte-identical;
- array and CSV files round-trip.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sculpt_core.cli import main
from sculpt_core.core import io as core_io
from sculpt_core.core.checkpoint import load_checkpoint, save_checkpoint
from sculpt_core.core.zoo import read_manifest, update_manifest, write_manifest
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.errors import SculptError

from helpers import random_model

ROOT = Path(__file__).resolve().parents[2]
POSIX = pytest.mark.skipif(os.name != "posix", reason="needs fork, SIGKILL and flock")


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(core_io.TEMP_SUFFIX))


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


# ----- atomic checkpoint writes under SIGKILL ---------------------------------------------------------------
# One interpreter (imports paid once) forks, per round, a child that re-saves a ~5 MB grid base model in a
# loop, every parameter filled with the version number; the test kills the child at a random moment.
_SAVER = r"""
import os, sys
import torch
torch.set_num_threads(1)
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.domains.grid.policy import GridPolicyConfig, GridPolicyNet

target, rounds, hidden = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
net = GridPolicyNet(GridPolicyConfig(height=8, ndim=2, hidden=hidden, n_hidden=2))

def save(version):
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float(version))
    GridBaseModel(net, {"version": version}, None, "victim").save(target)

for r in range(rounds):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        version = (r + 1) * 1_000_000
        save(version)
        os.write(ready_w, b"x")
        while True:
            version += 1
            save(version)
    os.close(ready_w)
    os.read(ready_r, 1)  # the child has completed one save in this round
    os.close(ready_r)
    print(pid, flush=True)
    sys.stdin.readline()  # the test has killed it
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def _assert_complete(path: Path, at_least: int) -> int:
    """The checkpoint at ``path`` loads (weights_only) and is one whole version ≥ ``at_least``."""
    model = GridBaseModel.load(path)
    version = model.meta["version"]
    assert version >= at_least
    for name, tensor in model.net.state_dict().items():
        assert torch.all(tensor == float(version)), f"{name} mixes versions"
    return version


@POSIX
def test_checkpoint_survives_sigkill_at_random_moments(tmp_path):
    target = tmp_path / "victim.pt"
    rounds, rng = 6, random.Random(7)
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(target), str(rounds), "1024"], cwd=ROOT,
                            env=_child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for r in range(rounds):
            line = proc.stdout.readline()
            assert line.strip().isdigit(), f"saver died: {line!r}"
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(int(line), signal.SIGKILL)
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "reaped"
            _assert_complete(target, at_least=(r + 1) * 1_000_000)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # only the target and, at most, temp files of killed writers: never a second "real" file
    assert {p.name for p in tmp_path.iterdir()} - set(_temp_files(tmp_path)) == {"victim.pt"}


def test_clean_saves_leave_no_temp_files_and_keep_permissions(tmp_path):
    model = random_model(height=4, seed=0)
    target = tmp_path / "sub" / "m.pt"
    for _ in range(3):
        model.save(target)
    os.chmod(target, 0o600)
    model.save(target)
    assert (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.pt"]
    assert GridBaseModel.load(target).net.cfg == model.net.cfg


def test_a_save_that_fails_midway_keeps_the_old_checkpoint(tmp_path):
    """torch.save raising after it has started writing (an unpicklable value after big tensors)."""
    target = tmp_path / "c.pt"
    save_checkpoint(target, "sculpt.test", {"state_dict": {"w": torch.ones(1000)}})
    before = target.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(target, "sculpt.test", {"state_dict": {"w": torch.zeros(100_000)}, "meta": lambda: 0})
    assert target.read_bytes() == before
    assert torch.equal(load_checkpoint(target, "sculpt.test")["state_dict"]["w"], torch.ones(1000))
    assert _temp_files(tmp_path) == []


# ----- the manifest under concurrent updates ----------------------------------------------------------------
_UPDATER = r"""
import sys, time
from pathlib import Path
from sculpt_core.core.zoo import update_manifest

section, prefix, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
for i in range(n):
    update_manifest(section, f"{prefix}{i}", {"file": f"zoo/{prefix}{i}.pt", "i": i})
"""


@POSIX
def test_parallel_manifest_updates_lose_no_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SCULPT_ASSETS", str(tmp_path))
    write_manifest({"grid_models": {}, "grid_classifiers": {"keep": {"file": "zoo/keep.pt"}}})
    go, n = tmp_path / "go", 200
    writers = [("grid_models", "a"), ("mol_classifiers", "b")]  # the second section does not exist yet
    procs = [subprocess.Popen([sys.executable, "-c", _UPDATER, section, prefix, str(n), str(go)], cwd=ROOT,
                              env=_child_env(SCULPT_ASSETS=str(tmp_path)), stdout=subprocess.PIPE, text=True)
             for section, prefix in writers]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    manifest = read_manifest()
    for section, prefix in writers:
        assert sorted(manifest[section]) == sorted(f"{prefix}{i}" for i in range(n)), section
        assert manifest[section][f"{prefix}{n - 1}"] == {"file": f"zoo/{prefix}{n - 1}.pt", "i": n - 1}
    assert manifest["grid_classifiers"] == {"keep": {"file": "zoo/keep.pt"}}
    assert _temp_files(tmp_path) == []


def test_manifest_defaults_new_sections_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SCULPT_ASSETS", str(tmp_path / "assets"))
    assert read_manifest() == {"grid_models": {}, "grid_classifiers": {}}
    update_manifest("mol_classifiers", "x+y", {"file": "zoo/mol/x.pt"})
    assert read_manifest() == {"grid_models": {}, "grid_classifiers": {}, "mol_classifiers": {"x+y": {"file": "zoo/mol/x.pt"}}}
    path = tmp_path / "assets" / "manifest.json"
    assert json.loads(path.read_text())["mol_classifiers"]["x+y"]["file"] == "zoo/mol/x.pt"
    path.write_text("{not json")
    with pytest.raises(SculptError, match="not valid JSON"):
        read_manifest()
    with pytest.raises(SculptError, match="not valid JSON"):
        update_manifest("grid_models", "m", {"file": "m.pt"})
    assert path.read_text() == "{not json"  # a failed update writes nothing


def test_file_lock_is_reentrant_and_excludes_other_threads(tmp_path):
    target = tmp_path / "data.json"
    with core_io.file_lock(target):
        # nested use in the same thread does not deadlock
        assert core_io.locked_update_json(target, lambda d: d.update(a=1), dict) == {"a": 1}
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with core_io.file_lock(target, timeout=0.2):
                    pass
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert len(errors) == 1 and isinstance(errors[0], SculptError) and "timed out" in str(errors[0])
    with core_io.file_lock(target, timeout=1.0):  # free again
        pass
    assert core_io.read_json(target, dict) == {"a": 1}


# ----- a failed command leaves an existing --out untouched -----------------------------------------------------
def _existing(path: Path, data: bytes) -> tuple[bytes, int]:
    path.write_bytes(data)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))  # a rewrite would move the mtime
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture
def empty_zoo(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "assets"
    folder.mkdir()
    monkeypatch.setenv("SCULPT_ASSETS", str(folder))
    return folder


def test_failed_commands_leave_existing_out_untouched(tmp_path, empty_zoo, capsys):
    random_model(height=6, seed=1, name="a").save(tmp_path / "a.pt")
    random_model(height=6, seed=2, name="b").save(tmp_path / "b.pt")
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\nc1ccccc1\n")
    npy, csv_out = tmp_path / "old.npy", tmp_path / "old.csv"
    buf = io.BytesIO()
    np.save(buf, np.arange(4.0))
    old_npy = _existing(npy, buf.getvalue())
    old_csv = _existing(csv_out, b"smiles,seh_reward,sa_reward,qed\r\nC,0.1,0.2,0.3\r\n")
    ab = f"{tmp_path / 'a.pt'},{tmp_path / 'b.pt'}"
    cases = [
        (["grid", "compose", "--bases", "no_such_model,other", "--method", "oracle", "--y", "1,2", "--out", str(npy)], npy),
        (["grid", "compose", "--bases", ab, "--method", "oracle", "--y", "1,3", "--out", str(npy)], npy),
        (["grid", "compose", "--bases", ab, "--method", "oracle", "--out", str(npy)], npy),  # no composition
        (["grid", "compose", "--bases", ab, "--method", "classifier", "--y", "1,2", "--out", str(npy)], npy),
        (["grid", "dist", "--base", str(tmp_path / "missing.pt"), "--out", str(npy)], npy),
        (["grid", "dist", "--base", "no_such_model", "--out", str(npy)], npy),
        (["mol", "score", "--in", str(tmp_path / "missing.smi"), "--out", str(csv_out)], csv_out),
        (["mol", "sample", "--bases", "no_such_model", "--n", "3", "--out", str(csv_out)], csv_out),
        (["mol", "sample", "--bases", str(tmp_path / "missing.pt"), "--n", "3", "--out", str(csv_out)], csv_out),
    ]
    for argv, out in cases:
        assert main(argv) == 2, argv
        assert "error:" in capsys.readouterr().err
        expected = old_npy if out == npy else old_csv
        assert (out.read_bytes(), out.stat().st_mtime_ns) == expected, argv
    assert _temp_files(tmp_path) == []


def test_a_command_failing_while_writing_leaves_out_untouched(tmp_path, monkeypatch, capsys):
    """``mol score`` whose CSV formatting fails on the second molecule (after rows were produced)."""
    from sculpt_core.domains.molecules import rewards

    smi = tmp_path / "in.smi"
    smi.write_text("CCO\nc1ccccc1\nCCN\n")
    out = tmp_path / "scores.csv"
    old = _existing(out, b"smiles,valid\r\nC,true\r\n")
    real_cell = rewards.csv_cell

    def failing_cell(value):
        if value == "c1ccccc1":
            raise SculptError("cannot format this cell")
        return real_cell(value)

    monkeypatch.setattr(rewards, "csv_cell", failing_cell)
    assert main(["mol", "score", "--in", str(smi), "--out", str(out)]) == 2
    assert "cannot format" in capsys.readouterr().err
    assert (out.read_bytes(), out.stat().st_mtime_ns) == old
    assert _temp_files(tmp_path) == []
    monkeypatch.setattr(rewards, "csv_cell", real_cell)
    assert main(["mol", "score", "--in", str(smi), "--out", str(out)]) == 0
    capsys.readouterr()
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    assert rows[0] == list(rewards.RECORD_KEYS) and [r[0] for r in rows[1:]] == ["CCO", "c1ccccc1", "CCN"]


# ----- round trips -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npy", ".csv", ".CSV"])
@pytest.mark.parametrize("shape", [(5,), (3, 4)])
def test_save_array_round_trips(tmp_path, suffix, shape):
    arr = np.random.default_rng(0).random(shape) * 1e-3 - 1e-4
    path = core_io.save_array(tmp_path / f"a{suffix}", arr)
    assert path == tmp_path / f"a{suffix}"
    back = np.load(path, allow_pickle=False) if suffix == ".npy" else np.loadtxt(path, delimiter=",")
    assert back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)  # savetxt's %.18e is exact for float64
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a{suffix}"]


def test_save_array_writes_exactly_the_given_path_and_refuses_bad_arrays(tmp_path):
    path = core_io.save_array(tmp_path / "dist.out", np.eye(2))
    assert path.is_file() and not (tmp_path / "dist.out.npy").exists()
    np.testing.assert_array_equal(np.load(path), np.eye(2))
    old = path.read_bytes()
    with pytest.raises(SculptError):
        core_io.save_array(path, np.array([{"a": 1}], dtype=object))
    with pytest.raises(SculptError):
        core_io.save_array(tmp_path / "x.csv", np.zeros((2, 2, 2)))
    assert path.read_bytes() == old and not (tmp_path / "x.csv").exists()


def test_write_csv_round_trips_with_csv_cell(tmp_path):
    from sculpt_core.domains.molecules.rewards import RECORD_KEYS, csv_text, write_csv, write_scores_csv

    rows = [["C,C", True, float("nan"), 0.1, None, 1e-300, 'q"uote'], ["CCO", False, 1.5, -0.0, 3, 2.0, ""]]
    header = ["smiles", "valid", "a", "b", "c", "d", "e"]
    path = tmp_path / "deep" / "t.csv"
    write_csv(path, header, iter(rows))
    text = path.read_bytes().decode("utf-8")
    assert text == csv_text(header, rows)
    assert text.endswith("\r\n")  # the csv module's line ending, as before
    back = list(csv.reader(io.StringIO(text)))
    assert back == [header, ["C,C", "true", "", "0.1", "", "1e-300", 'q"uote'], ["CCO", "false", "1.5", "-0.0", "3", "2.0", ""]]
    records = [{"smiles": "CCO", "valid": True, "proxy_raw": float("nan"), "seh_reward": 0.25, "qed": 0.4,
                "sa_score": 1.0, "sa_reward": 1.0}]
    write_scores_csv(tmp_path / "s.csv", records)
    assert list(csv.DictReader((tmp_path / "s.csv").open(newline="")))[0] == {
        "smiles": "CCO", "valid": "true", "proxy_raw": "", "seh_reward": "0.25", "qed": "0.4", "sa_score": "1.0",
        "sa_reward": "1.0"}
    assert list(RECORD_KEYS) == list(records[0])


def test_write_csv_failing_midway_keeps_the_old_file(tmp_path):
    from sculpt_core.domains.molecules.rewards import write_csv

    path = tmp_path / "t.csv"
    write_csv(path, ["x"], [[1], [2]])
    before = path.read_bytes()

    def rows():
        yield [3]
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_csv(path, ["x"], rows())
    assert path.read_bytes() == before and _temp_files(tmp_path) == []


def test_io_text_json_and_path_edge_cases(tmp_path):
    core_io.write_text(tmp_path / "t.txt", "é\n")
    assert (tmp_path / "t.txt").read_bytes() == "é\n".encode()
    core_io.write_json(tmp_path / "d.json", {"b": [1, 2], "a": 1.5})
    assert core_io.read_json(tmp_path / "d.json", dict) == {"a": 1.5, "b": [1, 2]}
    assert (tmp_path / "d.json").read_text().startswith('{\n  "a"')
    assert core_io.read_json(tmp_path / "none.json", lambda: {"empty": True}) == {"empty": True}
    with pytest.raises(SculptError):
        core_io.write_json(tmp_path / "d.json", {"x": object()})
    assert core_io.read_json(tmp_path / "d.json", dict) == {"a": 1.5, "b": [1, 2]}
    with pytest.raises(SculptError, match="folder"):
        core_io.write_text(tmp_path, "x")
    real = tmp_path / "real.txt"
    real.write_text("old")
    (tmp_path / "link.txt").symlink_to(real)
    core_io.write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and real.read_text() == "new"
    (tmp_path / "file").write_text("")
    with pytest.raises(SculptError, match="cannot write"):
        core_io.write_text(tmp_path / "file" / "under.txt", "x")  # parent is a file


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    stale, fresh = tmp_path / ".t.txt.dead.tmp", tmp_path / ".t.txt.live.tmp"
    other = tmp_path / ".u.txt.dead.tmp"
    for p in (stale, fresh, other):
        p.write_bytes(b"partial")
    old = time.time() - 2 * core_io.STALE_TEMP_S
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    core_io.write_text(tmp_path / "t.txt", "x")
    assert not stale.exists() and fresh.exists() and other.exists()  # only this target's, only stale ones


@pytest.mark.parametrize("config", ["not a dict", {"no_such_field": 1}, {"height": "x"}])
def test_a_stored_configuration_that_does_not_fit_is_a_clear_error(tmp_path, config):
    """Grid models and classifiers read their stored configuration through one checked helper."""
    from sculpt_core.domains.grid.classifier import CLASSIFIER_KIND, load_classifier
    from sculpt_core.domains.grid.model import CHECKPOINT_KIND, GridBaseModel

    model_file, clf_file = tmp_path / "m.pt", tmp_path / "c.pt"
    save_checkpoint(model_file, CHECKPOINT_KIND, {"config": config, "state_dict": {}, "meta": {}})
    save_checkpoint(clf_file, CLASSIFIER_KIND, {"config": config, "state_dict": {}, "bases": ["a", "b"]})
    with pytest.raises(SculptError, match="invalid model configuration"):
        GridBaseModel.load(model_file)
    with pytest.raises(SculptError, match="invalid classifier configuration"):
        load_classifier(clf_file)


def test_weights_fingerprint_is_kept_until_a_weight_changes():
    """The fingerprint's hash is kept on the network and recomputed after any in-place change (an optimiser step,
    ``load_state_dict``), so it always equals the hash of a fresh copy of the weights."""
    import copy

    import torch

    from sculpt_core.core.checkpoint import weights_fingerprint

    import hashlib

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    first = weights_fingerprint(net)
    real_sha256, hashed = hashlib.sha256, []
    hashlib.sha256 = lambda *a: hashed.append(1) or real_sha256(*a)
    try:
        assert weights_fingerprint(net) == first and not hashed  # kept: nothing hashed again
    finally:
        hashlib.sha256 = real_sha256
    assert weights_fingerprint(copy.deepcopy(net)) == first
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    stepped = weights_fingerprint(net)
    assert stepped != first and stepped == weights_fingerprint(copy.deepcopy(net))
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    net.load_state_dict(other.state_dict())
    assert weights_fingerprint(net) == weights_fingerprint(other)
    with torch.no_grad():
        net[0].weight.copy_(net[0].weight.t().contiguous().t())  # same values: same fingerprint
        net[1].bias.mul_(2.0)
    assert weights_fingerprint(net) == weights_fingerprint(copy.deepcopy(net)) != weights_fingerprint(other)
    assert weights_fingerprint(net, exclude=("1.",)) != weights_fingerprint(net)
    assert weights_fingerprint(net, extra=(torch.ones(2),)) != weights_fingerprint(net)
