"""The vectorised exact t-SNE (``sculpt_core.core.tsne``) against scikit-learn's ``TSNE(method="exact")``: the
same coordinates, iterations run and KL divergence on random distance matrices (n = 5 … 40, several seeds,
perplexities and exaggerations), through every stopping rule and option it mirrors; and ``tsne_embedding`` using
it (the same map as with scikit-learn), deterministically."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.manifold import TSNE

from sculpt_core.core import maps as MP
from sculpt_core.core import tsne as T
from sculpt_core.errors import SculptError


def _euclidean(n: int, seed: int, dim: int = 3) -> np.ndarray:
    rng = np.random.RandomState(seed)
    x = rng.randn(n, dim) * rng.uniform(0.2, 5.0)
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def _non_euclidean(n: int, seed: int) -> np.ndarray:
    a = np.random.RandomState(seed).gamma(1.0, size=(n, n))
    d = a + a.T
    np.fill_diagonal(d, 0.0)
    return d


def _sklearn(d: np.ndarray, seed: int, **kw) -> tuple[np.ndarray, int, float]:
    model = TSNE(metric="precomputed", init="random", method="exact", random_state=seed, **kw)
    coords = model.fit_transform(d.copy())
    return coords, int(model.n_iter_), float(model.kl_divergence_)


def _assert_same(d: np.ndarray, seed: int, **kw) -> T.TSNEResult:
    ref, n_iter, kl = _sklearn(d, seed, **kw)
    ours = T.tsne_exact(d, random_state=seed, **kw)
    assert ours.coords.shape == ref.shape and ours.coords.dtype == ref.dtype
    scale = float(np.abs(ref).max())
    assert float(np.abs(ours.coords - ref).max()) <= 1e-6 * scale
    assert ours.n_iter == n_iter
    assert ours.kl_divergence == pytest.approx(kl, rel=1e-9)
    return ours


@pytest.mark.parametrize("n, seed, perplexity, exaggeration, max_iter", [
    (5, 0, 2.0, 12.0, 400),
    (13, 1, 4.0, 100.0, 500),
    (20, 2, 4.0, 100.0, 1500),  # the paper's settings, fewer iterations
    (31, 3, 7.5, 12.0, 400),
    (40, 4, 10.0, 24.0, 400),
])
def test_matches_sklearn_on_random_matrices(n, seed, perplexity, exaggeration, max_iter):
    _assert_same(_euclidean(n, seed), 10 + seed, perplexity=perplexity, early_exaggeration=exaggeration,
                 max_iter=max_iter)


def test_matches_sklearn_on_a_non_euclidean_matrix_and_float32_input():
    d = _non_euclidean(9, 5)
    _assert_same(d, 3, perplexity=3.0, early_exaggeration=100.0, max_iter=600)
    _assert_same(d.astype(np.float32), 3, perplexity=3.0, early_exaggeration=12.0, max_iter=300)


def test_matches_sklearn_through_the_stopping_rules_and_options():
    # only the exaggerated phase: no evaluation in the second, KL left at the largest float (as scikit-learn)
    ours = _assert_same(_euclidean(10, 6), 1, perplexity=3.0, early_exaggeration=12.0, max_iter=250)
    assert ours.n_iter == 250 and ours.kl_divergence == np.finfo(float).max
    # stopped by the gradient norm, in the first phase and after it
    assert _assert_same(_euclidean(6, 7), 2, perplexity=2.0, early_exaggeration=100.0, max_iter=800,
                        min_grad_norm=0.5).n_iter < 250
    assert _assert_same(_euclidean(12, 8), 3, perplexity=4.0, early_exaggeration=12.0, max_iter=3000,
                        min_grad_norm=1e-4).n_iter < 2999
    # stopped for lack of progress (a learning rate far too large)
    rng = np.random.RandomState(0)
    x = rng.randn(12, 2)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    assert _assert_same(d, 0, perplexity=3.0, early_exaggeration=12.0, max_iter=3000, n_iter_without_progress=50,
                        learning_rate=1e4).n_iter < 2999
    # a fixed learning rate (float32 updates) and three components
    _assert_same(_euclidean(15, 9), 4, perplexity=5.0, early_exaggeration=12.0, max_iter=500, learning_rate=100.0)
    _assert_same(_euclidean(15, 9), 4, perplexity=5.0, early_exaggeration=12.0, max_iter=500, n_components=3)


def test_joint_probabilities_match_sklearn():
    from sklearn.manifold import _t_sne

    if not hasattr(_t_sne, "_joint_probabilities"):
        pytest.skip("this scikit-learn has no _joint_probabilities")
    for n, seed, perplexity in ((5, 0, 2.0), (17, 1, 4.0), (40, 2, 30.0)):
        d = _euclidean(n, seed)
        np.testing.assert_allclose(T.joint_probabilities(d, perplexity),
                                   _t_sne._joint_probabilities(d ** 2, perplexity, 0), rtol=1e-12, atol=0)


def test_deterministic_and_refuses_what_sklearn_refuses():
    d = _euclidean(12, 11)
    a = T.tsne_exact(d, perplexity=4.0, max_iter=300, random_state=5)
    b = T.tsne_exact(d, perplexity=4.0, max_iter=300, random_state=5)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.kl_divergence == b.kl_divergence and a.n_iter == b.n_iter
    assert not np.array_equal(T.tsne_exact(d, perplexity=4.0, max_iter=300, random_state=6).coords, a.coords)
    with pytest.raises(ValueError, match="perplexity"):
        T.tsne_exact(d, perplexity=12.0)
    with pytest.raises(ValueError, match="max_iter"):
        T.tsne_exact(d, perplexity=4.0, max_iter=249)
    with pytest.raises(ValueError, match="square"):
        T.tsne_exact(np.zeros((3, 4)))


def test_tsne_embedding_uses_it_and_gives_sklearns_map(monkeypatch):
    d = _euclidean(20, 12)
    fast = MP.embed(d, "tsne", seed=2, max_iter=1000)
    slow = MP.embed(d, "tsne", seed=2, max_iter=1000, engine="sklearn")
    np.testing.assert_allclose(fast.coords, slow.coords, rtol=0, atol=1e-6)
    assert fast.params == slow.params
    np.testing.assert_array_equal(MP.embed(d, "tsne", seed=2, max_iter=1000).coords, fast.coords)
    # above MAX_EXACT_N scikit-learn itself runs
    monkeypatch.setattr(T, "MAX_EXACT_N", 10)
    assert MP.embed(d, "tsne", seed=2, max_iter=1000).params == slow.params
    with pytest.raises(SculptError, match="engine"):
        MP.tsne_embedding(d, engine="fast")
