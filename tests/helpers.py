"""Small shared builders for tests: random (untrained) grid models are valid policies with arbitrary
distributions, which is all the exactness theorems need."""

from __future__ import annotations

import pytest
import torch

from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.domains.grid.policy import GridPolicyConfig, GridPolicyNet


def random_model(height: int = 8, seed: int = 0, scale: float = 3.0, name: str | None = None,
                 log_reward: torch.Tensor | None = None) -> GridBaseModel:
    """An untrained grid policy with sharpened random logits (distinct, uneven distributions)."""
    torch.manual_seed(seed)
    net = GridPolicyNet(GridPolicyConfig(height=height, ndim=2, hidden=32, n_hidden=1))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    net.eval()
    return GridBaseModel(net, {"reward": "random", "temperature": 1.0, "has_flow": True}, log_reward, name or f"rand{seed}")


@pytest.fixture(scope="module", name="lib")
def full_fragment_library():
    """Fixture ``lib``: the 72-fragment library (import it into modules that skip without the shared table)."""
    from sculpt_core.domains.molecules.fragments import FragmentLibrary

    return FragmentLibrary.load()


@pytest.fixture(scope="module", name="env")
def full_fragment_env(lib):
    """Fixture ``env``: the fragment environment on the full library, trees of at most 9 fragments."""
    from sculpt_core.domains.molecules.env import FragmentEnv

    return FragmentEnv(lib, max_frags=9)


#: Invented 2-D Gaussian-mixture specs for the diffusion tests (a tilted full-covariance pair, three isotropic
#: components, an uneven isotropic pair).
TILT = {"weights": [0.6, 0.4], "means": [[-1.0, 0.5], [1.2, -0.3]],
        "covs": [[[0.5, 0.2], [0.2, 0.3]], [[0.25, -0.1], [-0.1, 0.6]]]}
TRIO = {"weights": [1, 1, 1], "means": [[0.0, 1.5], [0.5, -1.0], [-1.5, -1.0]], "stds": [0.45, 0.6, 0.4]}
PAIR = {"weights": [2, 1], "means": [[1.0, 1.0], [-1.0, -0.5]], "stds": [0.7, 0.5]}


def tiny_fragment_env():
    """The tiny exact library (fragments 1, 15, 27; trees of at most 3 fragments), skipping the calling test when
    RDKit or the shared fragment table is unavailable."""
    pytest.importorskip("rdkit", reason="RDKit is needed for the fragment environment")
    from sculpt_core.domains.molecules.env import FragmentEnv
    from sculpt_core.domains.molecules.fragments import FragmentLibrary, resolve_fragments_path
    from sculpt_core.errors import SculptError

    try:
        resolve_fragments_path()
    except SculptError as exc:
        pytest.skip(f"fragment table unavailable: {exc}")
    return FragmentEnv(FragmentLibrary.load().subset([1, 15, 27]), max_frags=3)


def relabel_tree(state, rng):
    """The same fragment tree renumbered from a random root in random breadth-first order (stems follow their
    ends); returns (state, new id of each old node)."""
    from sculpt_core.domains.molecules.env import FragState

    adj: dict[int, list[tuple[int, int, int]]] = {i: [] for i in range(state.n_nodes)}
    for u, v, su, sv in state.edges:
        adj[u].append((v, su, sv))
        adj[v].append((u, sv, su))
    root = rng.randrange(state.n_nodes)
    order, new_id, edges, queue = [root], {root: 0}, [], [root]
    while queue:
        x = queue.pop(0)
        nbrs = [t for t in adj[x] if t[0] not in new_id]
        rng.shuffle(nbrs)
        for y, s_x, s_y in nbrs:
            new_id[y] = len(order)
            order.append(y)
            edges.append((new_id[x], new_id[y], s_x, s_y))
            queue.append(y)
    return FragState(tuple(state.frags[i] for i in order), tuple(edges)), [new_id[i] for i in range(state.n_nodes)]


def molecule_page(query: dict | None = None, timeout: float = 90, **state):
    """An AppTest of the Molecule Sculpting page at 32 molecules a view, ``query`` as its URL and ``state`` as
    session state, after its first run (which must not raise)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=timeout)
    at.session_state["m_n"] = 32
    if query:
        at.query_params.update(query)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page("pages/molecule_sculpting.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at
