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


# ----- hostile inputs (issue 16) ------------------------------------------------------------------------------------
def _one_error(code, out, err, needle):
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and needle in err, err


def test_reward_archives_and_impostor_npy_files_are_named_for_what_they_are(tmp_path, capsys):
    np.savez(tmp_path / "r.npz", a=np.zeros((8, 8)))
    (tmp_path / "renamed.npy").write_bytes((tmp_path / "r.npz").read_bytes())
    (tmp_path / "text.npy").write_text("1 2 3\n")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name, needle in [("r.npz", ".npz archive"), ("renamed.npy", ".npz archive"), ("text.npy", "not a .npy file"),
                         ("objects.npy", "Python objects")]:
        code, out, err = run_cli(["grid", "train", "--reward-file", str(tmp_path / name), "--steps", "1",
                                  "--out", str(tmp_path / "m.pt")], capsys)
        _one_error(code, out, err, needle)
        assert "pickled" not in err or name == "objects.npy"
    assert not (tmp_path / "m.pt").exists()


def test_scale_of_the_log_reward_is_checked_before_training(tmp_path, capsys):
    np.save(tmp_path / "huge.npy", np.full((8, 8), 1.8e19))
    code, out, err = run_cli(["grid", "train", "--reward-file", str(tmp_path / "huge.npy"), "--steps", "1",
                              "--out", str(tmp_path / "m.pt")], capsys)
    _one_error(code, out, err, "subtract a constant")
    code, out, err = run_cli(["grid", "train", "--reward", "circle1", "--temperature", "1e-300", "--steps", "1",
                              "--out", str(tmp_path / "m.pt")], capsys)
    _one_error(code, out, err, "raise the temperature")
    assert "learning rate" not in err


def test_a_huge_constant_log_reward_gives_the_uniform_target(tmp_path, capsys):
    """Normalised in log space: the L1 is a real L1 (≤ 2), the target the uniform distribution."""
    model = random_model(height=6, seed=2, log_reward=torch.full((6, 6), 1.8e19, dtype=torch.float64))
    model.save(tmp_path / "m.pt")
    code, out, _ = run_cli(["grid", "dist", "--base", str(tmp_path / "m.pt"), "--out", str(tmp_path / "p.npy")], capsys)
    assert code == 0
    p = np.load(tmp_path / "p.npy")
    assert json.loads(out)["l1_to_target"] == pytest.approx(np.abs(p - 1 / 36).sum()) and 0 <= json.loads(out)["l1_to_target"] <= 2
    np.testing.assert_allclose(model.target_log_p().exp().numpy(), 1 / 36, rtol=1e-12)


@pytest.mark.parametrize("value, needle", [(0, "'temperature'"), ("hot", "'temperature'"), (float("nan"), "'temperature'"),
                                           (-1.0, "'temperature'")])
def test_checkpoint_metadata_is_checked(value, needle, tmp_path, capsys):
    model = random_model(height=6, seed=1)
    model.meta["temperature"] = value
    model.save(tmp_path / "m.pt")
    code, out, err = run_cli(["grid", "dist", "--base", str(tmp_path / "m.pt"), "--out", str(tmp_path / "p.npy")], capsys)
    _one_error(code, out, err, needle)


def test_a_three_d_grid_with_a_csv_out_is_refused_before_work(tmp_path, capsys):
    np.save(tmp_path / "r3.npy", np.zeros((4, 4, 4)))
    assert run_cli(["grid", "train", "--reward-file", str(tmp_path / "r3.npy"), "--steps", "1",
                    "--out", str(tmp_path / "m3.pt")], capsys)[0] == 0
    code, out, err = run_cli(["grid", "dist", "--base", str(tmp_path / "m3.pt"), "--out", str(tmp_path / "p.csv")], capsys)
    _one_error(code, out, err, "write a .npy")
    assert run_cli(["grid", "dist", "--base", str(tmp_path / "m3.pt"), "--out", str(tmp_path / "p.npy")], capsys)[0] == 0
    assert np.load(tmp_path / "p.npy").shape == (4, 4, 4)


def test_a_classifier_for_other_bases_is_refused(tmp_path, capsys):
    clf = "assets/zoo/grid/classifier_circle1__circle2.pt"
    code, out, err = run_cli(["grid", "compose", "--bases", "circle3,symmetric_shubert", "--y", "1,2", "--method",
                              "classifier", "--classifier", clf, "--out", str(tmp_path / "q.npy")], capsys)
    _one_error(code, out, err, "trained on other base models")
    code, out, _ = run_cli(["grid", "compose", "--bases", "circle1,circle2", "--y", "1,2", "--alpha", "0.5", "--method",
                            "classifier", "--classifier", clf, "--out", str(tmp_path / "q.npy")], capsys)
    assert code == 0 and json.loads(out)["l1_to_target"] < 0.05  # the shipped pair (manifest: 0.0176)


def test_train_classifier_with_one_label_is_a_mixture_classifier(tmp_path, capsys):
    """--labels 1 guides mixtures and linear scalarisations only: it trains and is evaluated on a mixture
    (was: it trained every step, then failed on α)."""
    reward = grid_log_reward(GridEnv(8, 2), "diag_sigmoid").numpy()
    np.save(tmp_path / "logr.npy", reward)
    for name in ("a", "b"):
        assert run_cli(["grid", "train", "--reward-file", str(tmp_path / "logr.npy"), "--steps", "2", "--seed", str(len(name) + ord(name)),
                        "--out", str(tmp_path / f"{name}.pt")], capsys)[0] == 0
    bases = f"{tmp_path / 'a.pt'},{tmp_path / 'b.pt'}"
    code, out, _ = run_cli(["grid", "train-classifier", "--bases", bases, "--labels", "1", "--steps", "2",
                            "--out", str(tmp_path / "c.pt")], capsys)
    record = json.loads(out)
    assert code == 0 and record["n_labels"] == 1 and list(record["guided_l1"]) == ["mixture(1, 1)"]
    code, out, err = run_cli(["grid", "compose", "--bases", bases, "--y", "1,2", "--method", "classifier",
                              "--classifier", str(tmp_path / "c.pt"), "--out", str(tmp_path / "q.npy")], capsys)
    _one_error(code, out, err, "knows 1 labels")
    code, out, _ = run_cli(["grid", "compose", "--bases", bases, "--weights", "1,1", "--method", "classifier",
                            "--classifier", str(tmp_path / "c.pt"), "--out", str(tmp_path / "q.npy")], capsys)
    assert code == 0
