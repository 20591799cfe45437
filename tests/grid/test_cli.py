import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sculpt_core.cli import main
from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.domains.grid.rewards import grid_log_reward

from helpers import random_model


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_then_dist_round_trip(tmp_path, capsys):
    reward = grid_log_reward(GridEnv(8, 2), "diag_sigmoid").numpy()
    np.save(tmp_path / "logr.npy", reward)
    code, out, _ = run_cli(["grid", "train", "--reward-file", str(tmp_path / "logr.npy"), "--steps", "150",
                            "--out", str(tmp_path / "m.pt")], capsys)
    assert code == 0
    record = json.loads(out.strip().splitlines()[-1])
    assert record["steps"] == 150 and 0 <= record["l1"] < 0.5
    code, out, _ = run_cli(["grid", "dist", "--base", str(tmp_path / "m.pt"), "--out", str(tmp_path / "p.npy")], capsys)
    assert code == 0
    record2 = json.loads(out)
    p = np.load(tmp_path / "p.npy")
    assert p.shape == (8, 8) and p.dtype == np.float64 and abs(p.sum() - 1) < 1e-9
    assert abs(record2["l1_to_target"] - record["l1"]) < 1e-9


def test_dist_of_checkpoint_matches_exact_policy(tmp_path, capsys):
    model = random_model(height=6, seed=1)
    model.save(tmp_path / "r.pt")
    assert run_cli(["grid", "dist", "--base", str(tmp_path / "r.pt"), "--out", str(tmp_path / "p.csv")], capsys)[0] == 0
    p = np.loadtxt(tmp_path / "p.csv", delimiter=",")
    assert p.shape == (6, 6)
    # the written table is the exact terminal distribution of the policy, p[z0, z1]: by a brute-force sum over
    # every trajectory of the in-memory model (not the DP the command uses)
    log_pf = model.tables().log_pf.numpy()
    env = model.env
    brute = np.zeros((6, 6))

    def walk(z, logp):
        idx = env.flat_index(torch.tensor([z]))[0].item()
        brute[z] += np.exp(logp + log_pf[idx, env.stop_action])
        for d in range(2):
            if z[d] < 5:
                walk(tuple(c + (k == d) for k, c in enumerate(z)), logp + log_pf[idx, d])

    walk((0, 0), 0.0)
    np.testing.assert_allclose(p, brute, rtol=1e-9, atol=1e-15)
    assert not np.allclose(p, p.T, atol=1e-6)  # an uneven policy, so a transposed table would be caught too
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-12)


@pytest.mark.parametrize("args, message", [
    (["grid", "dist", "--base", "no_such_model", "--out", "x.npy"], "unknown grid model"),
    (["grid", "dist", "--base", "missing.pt", "--out", "x.npy"], "checkpoint not found"),
    (["grid", "train", "--reward", "nope", "--out", "x.pt"], "unknown grid reward"),
    (["grid", "train", "--reward", "circle1", "--temperature", "0", "--steps", "5", "--out", "x.pt"], "temperature"),
])
def test_bad_inputs_exit_2_with_a_message(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err and out == ""


def test_bad_reward_files(tmp_path, capsys):
    np.save(tmp_path / "rect.npy", np.zeros((4, 5)))
    bad = np.zeros((6, 6))
    bad[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    for name, msg in [("rect.npy", "square"), ("nan.npy", "NaN")]:
        code, _, err = run_cli(["grid", "train", "--reward-file", str(tmp_path / name), "--out", str(tmp_path / "m.pt")], capsys)
        assert code == 2 and msg in err


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "sculpt_core", "--help"], capture_output=True, text=True, check=True)
    assert "grid" in out.stdout and "zoo" in out.stdout
