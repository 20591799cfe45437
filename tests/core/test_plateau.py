"""The plateau test of a training run: paired relative change with a bootstrap interval, and the verdict.

Known answers: an exact 10% scaling of every item gives −0.1 with a zero-width interval; on simulated
noisy pairs the 95% interval covers the true change about 95% of the time; a flat run is a plateau and a
run still falling by 20% is not; the checkpoint compared is the latest one a full window older.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sculpt_core.core.metrics import paired_relative_change, plateau_verdict
from sculpt_core.errors import SculptError


def test_exact_scaling_gives_its_ratio_with_no_spread():
    before = np.random.default_rng(0).exponential(5.0, 300)
    point, low, high = paired_relative_change(before, 0.9 * before)
    assert point == pytest.approx(-0.1) and low == pytest.approx(-0.1) and high == pytest.approx(-0.1)
    assert paired_relative_change(torch.tensor(before), torch.tensor(before)) == (0.0, 0.0, 0.0)


def test_interval_covers_the_true_change_at_its_level():
    rng = np.random.default_rng(3)
    covered = 0
    trials = 200
    for t in range(trials):
        before = rng.exponential(4.0, 200) + 0.5
        after = before * rng.lognormal(np.log(0.95), 0.3, 200)
        truth = (0.5 + 4.0) * 0.95 * np.exp(0.3 ** 2 / 2) / (0.5 + 4.0) - 1.0  # population ratio − 1
        _, low, high = paired_relative_change(before, after, n_boot=400, seed=t)
        covered += low <= truth <= high
    assert 0.88 <= covered / trials <= 0.99, covered  # percentile bootstrap at n = 200: close to 95%


def test_pairing_is_far_tighter_than_the_spread_between_items():
    rng = np.random.default_rng(1)
    before = rng.exponential(10.0, 500)           # items differ by ~100%
    after = before * 0.97 + rng.normal(0, 0.05, 500)
    point, low, high = paired_relative_change(before, after)
    assert point == pytest.approx(-0.03, abs=0.002) and low <= point <= high
    # the means alone differ by ~±4.5% between two independent sets of 500 such items; paired, ±0.1%
    assert high - low < 0.01


@pytest.mark.parametrize("before, after, msg", [
    (np.ones(5), np.ones(4), "equal length"),
    (np.ones((2, 3)), np.ones((2, 3)), "1-D"),
    (np.array([1.0, np.nan]), np.ones(2), "finite"),
    (np.zeros(3), np.ones(3), "positive mean"),
])
def test_bad_pairs_are_refused(before, after, msg):
    with pytest.raises(SculptError, match=msg):
        paired_relative_change(before, after)


def _run(rates: list[float], n: int = 400, seed: int = 0) -> list[np.ndarray]:
    """Per-item losses of successive checkpoints, each ``rate`` times the previous plus small noise."""
    rng = np.random.default_rng(seed)
    cur = rng.exponential(3.0, n) + 0.1
    out = [cur]
    for r in rates:
        cur = np.abs(cur * r + rng.normal(0, 0.01, n))
        out.append(cur)
    return out


def test_flat_run_is_a_plateau_and_a_falling_one_is_not():
    steps = [0, 500, 1000, 1500, 2000]
    flat = plateau_verdict(steps, _run([0.5, 0.8, 1.0, 1.0]), window=1000)
    assert flat["plateau"] is True and (flat["from_steps"], flat["to_steps"]) == (1000, 2000)
    assert abs(flat["relative_change"]) < 0.01
    falling = plateau_verdict(steps, _run([0.9, 0.9, 0.9, 0.9]), window=1000)
    assert falling["plateau"] is False and falling["relative_change"] == pytest.approx(-0.19, abs=0.01)
    # a 3% drop is within a 5% tolerance, not within 1%
    slow = _run([1.0, 1.0, 0.985, 0.985])
    assert plateau_verdict(steps, slow, window=1000)["plateau"] is True
    assert plateau_verdict(steps, slow, window=1000, tolerance=0.01)["plateau"] is False


def test_compares_the_latest_checkpoint_a_full_window_older():
    losses = _run([1.0] * 4)
    assert plateau_verdict([0, 400, 900, 1100, 1300], losses, window=500)["from_steps"] == 400
    short = plateau_verdict([0, 100, 200, 300, 400], losses, window=500)
    assert short["plateau"] is None and "500 steps" in short["why"]


def test_verdict_refuses_inconsistent_runs():
    losses = _run([1.0, 1.0])
    with pytest.raises(SculptError, match="increase"):
        plateau_verdict([0, 500, 500], losses, window=100)
    with pytest.raises(SculptError, match="step counts for"):
        plateau_verdict([0, 500], losses, window=100)
    with pytest.raises(SculptError, match="tolerance"):
        plateau_verdict([0, 500, 1000], losses, window=100, tolerance=0.0)
