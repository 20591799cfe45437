"""Domain-agnostic distribution maps (``sculpt_core.core.maps``): EMD from cost matrices against hand-computed
transports, Sinkhorn near the exact value, matrix assembly, the choice of items, and the oriented embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from sculpt_core.core import maps as MP
from sculpt_core.errors import SculptError


def test_emd_of_hand_computed_transports():
    # two points each, uniform: keep both in place (cost 1 + 1) beats swapping them (2 + 3)
    assert MP.emd(np.array([[1.0, 2.0], [3.0, 1.0]])) == pytest.approx(1.0)
    # all mass from the first point to the second
    assert MP.emd(np.array([[0.0, 1.0], [1.0, 0.0]]), [1, 0], [0, 1]) == pytest.approx(1.0)
    # 3 → 2 points, weights (1/3 each) into (1/2 each): 1/3 at cost 0, 1/6 + 1/3 moved at cost 1 and 2 ... by hand
    cost = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    # optimum: row0→col0 1/3, row1→col0 1/6 (cost 1), row1→col1 1/6 (cost 0), row2→col1 1/3 (cost 1)
    assert MP.emd(cost) == pytest.approx(1 / 6 + 1 / 3)
    # identical uniform sets with a zero diagonal cost: 0
    assert MP.emd(np.array([[0.0, 5.0], [5.0, 0.0]])) == pytest.approx(0.0)


def test_emd_refuses_bad_input():
    with pytest.raises(SculptError, match="non-negative"):
        MP.emd(np.array([[0.0, -1.0]]))
    with pytest.raises(SculptError, match="2-D"):
        MP.emd(np.zeros(3))
    with pytest.raises(SculptError, match="weights"):
        MP.emd(np.zeros((2, 2)), a=[1.0, 2.0, 3.0])
    with pytest.raises(SculptError, match="solver"):
        MP.transport(np.zeros((2, 2)), solver="magic")


def test_sinkhorn_is_close_to_exact_and_above_it():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(50, 2)) + [1.0, 0.0]
    cost = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    exact = MP.emd(cost)
    approx = MP.sinkhorn(cost, reg=0.01)
    assert exact - 1e-9 <= approx <= exact * 1.03
    assert MP.sinkhorn(cost, reg=0.1) > approx  # more regularisation, further from the optimum
    with pytest.raises(SculptError, match="regularisation"):
        MP.sinkhorn(cost, reg=0.0)


def test_pairwise_matrix_is_symmetric_with_zero_diagonal_and_reports_progress():
    points = [0.0, 1.0, 3.0, 7.0]
    seen = []
    d = MP.pairwise_matrix(4, lambda i, j: abs(points[i] - points[j]), progress=lambda *a: seen.append(a))
    assert d.dtype == np.float64 and d.shape == (4, 4)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert d[0, 3] == 7.0 and d[1, 2] == 2.0
    assert [s[:2] for s in seen] == [(k, 6) for k in range(1, 7)] and seen[-1][2] == 0.0
    with pytest.raises(SculptError, match="not finite"):
        MP.pairwise_matrix(2, lambda i, j: float("nan"))


def test_check_distance_matrix():
    d = np.array([[0.0, 1.0], [1.0 + 1e-12, 0.0]])
    out = MP.check_distance_matrix(d)
    np.testing.assert_array_equal(out, out.T)
    for bad, msg in ((np.array([[0.0, 1.0], [2.0, 0.0]]), "symmetric"), (np.array([[1.0, 1.0], [1.0, 0.0]]), "diagonal"),
                     (np.zeros((2, 3)), "square"), (np.array([[0.0, -1.0], [-1.0, 0.0]]), "non-negative")):
        with pytest.raises(SculptError, match=msg):
            MP.check_distance_matrix(bad)


def _oriented_ok(c: np.ndarray) -> None:
    assert c[1, 0] > c[0, 0] and abs(c[1, 1] - c[0, 1]) < 1e-9  # base 1 → base 2 along +x
    assert c[2, 1] > c[0, 1]  # base 3 on the positive-y side
    np.testing.assert_allclose(c[:3].mean(0), 0.0, atol=1e-9)  # centred on the bases


def test_orient_fixes_rotation_reflection_and_translation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 2))
    out = MP.orient(x)
    _oriented_ok(out)
    d_in = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(out[:, None] - out[None], axis=-1), d_in, atol=1e-12)
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (x @ rot.T) * [1.0, -1.0] + [5.0, -2.0]  # rotated, reflected, shifted
    np.testing.assert_allclose(MP.orient(moved), out, atol=1e-12)
    assert np.abs(MP.orient(x, normalize=True)).max() == pytest.approx(1.0)


def _matrix(k: int = 6, seed: int = 0) -> np.ndarray:
    pts = np.random.default_rng(seed).normal(size=(k, 3))
    return np.linalg.norm(pts[:, None] - pts[None], axis=-1)


def test_tsne_is_deterministic_oriented_and_clamps_perplexity():
    d = _matrix(6)
    a = MP.embed(d, "tsne", seed=3, max_iter=500)
    b = MP.embed(d, "tsne", seed=3, max_iter=500)
    np.testing.assert_array_equal(a.coords, b.coords)
    _oriented_ok(a.coords)
    assert a.params["perplexity"] == 4.0 and a.params["early_exaggeration"] == 100.0 and not a.notes
    clamped = MP.embed(d, "tsne", seed=3, perplexity=30.0, max_iter=300)
    assert clamped.params["perplexity"] == 5.0 and "clamped" in clamped.notes[0]


def test_mds_keeps_distances_of_a_planar_configuration():
    pts = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0], [2.0, 3.0]])
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    e = MP.embed(d, "mds", seed=0)
    _oriented_ok(e.coords)
    np.testing.assert_allclose(np.linalg.norm(e.coords[:, None] - e.coords[None], axis=-1), d, atol=1e-3)
    np.testing.assert_array_equal(MP.embed(d, "mds", seed=0).coords, e.coords)
    with pytest.raises(SculptError, match="unknown embedding"):
        MP.embed(d, "umap")


def test_two_distributions_lie_on_a_line():
    e = MP.embed(np.array([[0.0, 2.0], [2.0, 0.0]]), "tsne")
    np.testing.assert_allclose(e.coords, [[-1.0, 0.0], [1.0, 0.0]])


def test_plan_items_and_alphas():
    assert MP.parse_alphas("0.05:0.95:0.1") == pytest.approx([0.05 + 0.1 * i for i in range(10)])
    assert MP.parse_alphas("0.2, 0.8") == [0.2, 0.8]
    with pytest.raises(SculptError):
        MP.parse_alphas("a:b")
    items = MP.plan_items(["A", "B"], [(1, 2), (1, 1)], (1, 2), [0.25, 0.75], method="oracle")
    assert [it.label for it in items] == ["p_A", "p_B", "y={A,B}", "y={A,A}", "y={A,B} α=0.25", "y={A,B} α=0.75"]
    assert items[4].sweep == items[5].sweep == "y={A,B}" and items[4].alpha == 0.25
    assert items[2].composition(2).labels == (1, 2) and items[0].composition(2) is None
    with pytest.raises(SculptError, match="1..2"):
        MP.plan_items(["A", "B"], [(1, 3)])
    with pytest.raises(SculptError, match="two bases"):
        MP.plan_items(["A", "B", "C"], [], (1, 2), [0.5])
    with pytest.raises(SculptError, match="twice"):
        MP.plan_items(["A", "B"], [(1, 2), (1, 2)])


def test_pairwise_matrix_in_worker_processes_equals_one_process():
    points = np.random.default_rng(2).normal(size=(9, 2))
    dist = lambda i, j: float(np.linalg.norm(points[i] - points[j]))  # noqa: E731
    seen = []
    two = MP.pairwise_matrix(9, dist, progress=lambda *a: seen.append(a[0]), workers=2)
    np.testing.assert_array_equal(two, MP.pairwise_matrix(9, dist, workers=1))
    assert seen == list(range(1, 37))


@pytest.mark.parametrize("text, message", [("0:1:1e-9", "at most 1000"), ("0:inf:1", "start:stop:step"),
                                           ("1e400:1:1", "start:stop:step"), (",".join(["0.5"] * 1001), "at most")])
def test_alpha_sweeps_are_bounded_and_finite(text, message):
    from sculpt_core.core.maps import parse_alphas

    with pytest.raises(SculptError, match=message):
        parse_alphas(text)
