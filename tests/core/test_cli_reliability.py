"""The command line under hostile input (issue 16): one ``error:`` line and exit 2, or a correct answer; never
a traceback, a NaN answer or a clobbered file. Also Ctrl-C (exit 130, one line, nothing partial left) and the
bounds of ``core/limits.py``. Grid commands are the cheap vehicle; the domain-specific cases live beside each
domain's own CLI tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sculpt_core.cli import EXIT_INTERRUPTED, main
from sculpt_core.core import algebra as A
from sculpt_core.core import limits
from sculpt_core.core.cli import parse_list
from sculpt_core.core.io import check_output_path, save_array
from sculpt_core.core.metrics import l1_distance, log_normalize
from sculpt_core.core.operators import parse_labels
from sculpt_core.errors import SculptError

ROOT = Path(__file__).resolve().parents[2]


def run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error(code, out, err, *needles):
    assert code == 2 and out == "", (code, out, err)
    lines = [ln for ln in err.strip().splitlines()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ----- argument layer -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (["grid", "compose", "--bases", "circle1,circle2", "--y", "1,2", "--method", "reaching", "--u", "trajectory",
      "--samples", "0"], ["--samples", "≥ 1"]),
    (["grid", "compose", "--bases", "circle1,circle2", "--y", "1,2", "--method", "reaching", "--u", "trajectory",
      "--samples", "-5"], ["--samples"]),
    (["grid", "compose", "--bases", "circle1,circle2", "--y", "1,2", "--method", "reaching", "--u", "trajectory",
      "--samples", str(10**9)], ["--samples", "1,000,000", "bound"]),
    (["grid", "train", "--reward", "circle1", "--seed", str(2**70)], ["--seed", "2^63"]),
    (["grid", "train", "--reward", "circle1", "--batch-size", str(10**9)], ["--batch-size", "65,536"]),
    (["grid", "train", "--reward", "circle1", "--steps", "¹"], ["--steps", "digits"]),
    (["grid", "compose", "--bases", "circle1,circle2", "--y", "¹,²", "--method", "oracle"], ["--y", "'¹'"]),
    (["grid", "compose", "--bases", "circle1,circle2", "--y", "١,٢", "--method", "oracle"], ["--y"]),
    (["grid", "compose", "--bases", "circle1,circle2", "--y", "1.5,2", "--method", "oracle"], ["--y", "'1.5'"]),
    (["grid", "compose", "--bases", "circle1,circle2", "--weights", "1,1e400", "--method", "oracle"], ["--weights"]),
    (["grid", "compose", "--bases", "circle1,circle2", "--y", "1,2", "--method", "magic"], ["invalid choice"]),
    (["grid", "nope"], ["invalid choice"]),
    (["grid", "dist", "--base", "circle1"], ["--out"]),
])
def test_bad_arguments_are_one_line_before_any_work(args, needles, capsys, tmp_path):
    out = tmp_path / "out.npy"
    code, stdout, err = run(args + ([] if args[-1] == "circle1" or args[1] == "nope" else ["--out", str(out)]), capsys)
    assert_one_error(code, stdout, err, *needles)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_help_exits_0(capsys):
    assert main(["grid", "--help"]) == 0
    assert "dist" in capsys.readouterr().out


def test_an_internal_error_is_one_line_with_exit_1(monkeypatch, capsys):
    import sculpt_core.domains.grid.cli as grid_cli

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(grid_cli, "cmd_grid_rewards", boom)
    code, out, err = run(["grid", "rewards"], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "internal error (ZeroDivisionError" in err
    monkeypatch.setenv("SCULPT_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["grid", "rewards"])


# ----- --out ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["folder", "trailing separator", "below a file", "empty", "unwritable"])
def test_a_bad_out_is_refused_before_any_work(kind, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("keep me")
    (tmp_path / "folder").mkdir()
    out = {"folder": str(tmp_path / "folder"), "trailing separator": str(tmp_path / "new_dir") + os.sep,
           "below a file": str(tmp_path / "a_file" / "p.npy"), "empty": "",
           "unwritable": "/proc/no_such_dir/p.npy"}[kind]
    import sculpt_core.domains.grid.cli as grid_cli

    def no_work(args):  # the check comes first: the command itself must never run
        raise AssertionError("the command ran with a bad --out")

    monkeypatch.setattr(grid_cli, "cmd_grid_dist", no_work)  # register() looks it up when main() builds the parser
    code, stdout, err = run(["grid", "dist", "--base", "circle1", "--out", out], capsys)
    assert_one_error(code, stdout, err)
    assert (tmp_path / "a_file").read_text() == "keep me" and not (tmp_path / "new_dir").exists()


def test_out_is_written_exactly_where_given(tmp_path, capsys):
    for name in ("p.txt", "p", "p.npy", "p.csv"):
        code, out, _ = run(["grid", "dist", "--base", "circle1", "--out", str(tmp_path / name)], capsys)
        assert code == 0 and json.loads(out)["out"] == str(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "p.csv", "p.npy", "p.txt"]
    np.testing.assert_array_equal(np.load(tmp_path / "p.txt"), np.load(tmp_path / "p.npy"))


def test_check_output_path_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "c.npy"
    assert check_output_path(target) == target
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SculptError, match="folder"):
        save_array(str(tmp_path / "x") + os.sep, np.zeros(2))


# ----- Ctrl-C -------------------------------------------------------------------------------------------------------
def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so Python installs its KeyboardInterrupt handler even when the
    tests themselves run as a background job (a non-interactive shell starts those with SIGINT ignored, and an
    ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(os.name != "posix", reason="needs SIGINT delivery to a child process (POSIX)")
def test_ctrl_c_exits_130_with_one_line_and_leaves_the_old_output(tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"the previous model")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sculpt_core", "grid", "train", "--reward", "circle1", "--steps",
                             "100000", "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    err = ""
    while time.monotonic() < deadline:  # wait until training runs (the progress bar is on stderr)
        err += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
        if "train circle1" in err or proc.poll() is not None:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=60)
    err += rest
    # exactly 130: CPython would re-send SIGINT at exit (status -2) when the KeyboardInterrupt had crossed a C
    # extension's PyRun_* call, so sculpt_core/__main__.py leaves with os._exit(130) after flushing
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert stdout == "" and "Traceback" not in err
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert last.startswith("error: interrupted"), last
    assert sum(ln.startswith("error:") for ln in err.replace("\r", "\n").splitlines()) == 1
    assert out.read_bytes() == b"the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left behind


# ----- bounds and numerics -----------------------------------------------------------------------------------------
def test_check_int_names_the_bound():
    assert limits.check_int(5, "--n", 1, 10) == 5 and limits.check_int(3.0, "--n", 1, 10) == 3
    for bad, match in [(0, "≥ 1"), (11, "at most 10"), (2.5, "integer"), (True, "integer"), ("3", "integer")]:
        with pytest.raises(SculptError, match=match):
            limits.check_int(bad, "--n", 1, 10)
    with pytest.raises(SculptError, match="2\\^63"):
        limits.check_seed(2**70)
    with pytest.raises(SculptError, match="bound is 1 KiB"):
        limits.check_size(2048, "upload", 1024)


def test_strict_number_lists():
    assert parse_list(" 1, 2 ,3 ", int, "--y") == [1, 2, 3] and parse_list("+2,-1", int, "--y") == [2, -1]
    assert parse_list("0.5,1e-3,2", float, "--w") == [0.5, 1e-3, 2.0]
    for text in ["¹,²", "١,٢", "1_0", "1.5", "0x1", "", ","]:
        with pytest.raises(SculptError):
            parse_list(text, int, "--y")
    for text in ["nan", "inf", "1e400", "1_0.5", "٣", "abc"]:
        with pytest.raises(SculptError):
            parse_list(text, float, "--w")
    assert parse_labels("y1 y2,3") == (1, 2, 3)
    for text in ["¹,²", "١", "y²", "1.5"]:
        with pytest.raises(SculptError, match="digits 0-9"):
            parse_labels(text)


def test_fractional_and_boolean_labels_are_refused():
    with pytest.raises(SculptError, match="whole"):
        A.conditioning((1.5, 2), 2)
    with pytest.raises(SculptError):
        A.conditioning((True, 2), 2)
    assert A.conditioning((np.int64(2), 1.0), 2).labels == (2, 1)


def test_log_normalize_is_exact_for_huge_log_weights():
    import torch

    p = log_normalize(torch.full((32, 32), 1.8e19, dtype=torch.float64)).exp()
    assert abs(float(p.sum()) - 1) < 1e-12 and torch.allclose(p, torch.full_like(p, 1 / 1024))
    for bad in (torch.tensor([0.0, float("nan")]), torch.tensor([0.0, float("inf")]), torch.full((3,), -float("inf"))):
        with pytest.raises(SculptError, match="cannot be normalised"):
            log_normalize(bad)
    big = A.linear([1, 1]).log_target(torch.log_softmax(torch.randn(2, 5, dtype=torch.float64), 1),
                                      torch.tensor([1.8e19, 0.0], dtype=torch.float64))
    assert abs(float(big.exp().sum()) - 1) < 1e-12


def test_l1_is_never_outside_0_2():
    assert l1_distance([1.0, 0.0], [0.0, 1.0]) == 2.0
    with pytest.raises(SculptError, match="total mass 1024"):
        l1_distance(np.ones(1024), np.full(1024, 1 / 1024))
    with pytest.raises(SculptError):
        l1_distance([0.5, float("nan")], [0.5, 0.5])


def test_an_error_quoting_user_text_stays_one_line(tmp_path, capsys):
    """Found by the fuzz suite: a CSV header holding a record separator (\\x1e, a line break to str.splitlines)
    was echoed into the message and split it."""
    pytest.importorskip("rdkit")
    table = tmp_path / "in.csv"
    table.write_text("\x1e,x\u2028y\nCCO,1\n", encoding="utf-8")
    code, out, err = run(["mol", "score", "--in", str(table), "--out", str(tmp_path / "o.csv")], capsys)
    assert_one_error(code, out, err, "no 'smiles' column", "\\x1e", "\\u2028")
