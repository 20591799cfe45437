import torch

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError

import pytest


def test_flat_index_is_row_major_and_round_trips():
    env = GridEnv(5, 2)
    states = env.all_states()
    assert states.shape == (25, 2)
    assert torch.equal(env.flat_index(states), torch.arange(25))
    assert env.flat_index(torch.tensor([[2, 3]])).item() == 2 * 5 + 3  # p.reshape(H, H)[z0, z1]
    assert torch.equal(env.from_flat(env.flat_index(states)), states)


def test_masks_steps_and_parents():
    env = GridEnv(4, 2)
    s = torch.tensor([[0, 0], [3, 1], [3, 3], [1, 3]])
    assert env.forward_mask(s).tolist() == [[True, True, True], [False, True, True], [False, False, True], [True, False, True]]
    assert env.backward_mask(s).tolist() == [[False, False], [True, True], [True, True], [True, True]]
    nxt = env.step(s, torch.tensor([0, 1, 2, 0]))
    assert nxt.tolist() == [[1, 0], [3, 2], [3, 3], [2, 3]]
    assert torch.allclose(env.log_n_parents(torch.tensor([[0, 0], [0, 2], [1, 2]])).exp(), torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))


def test_encoding_is_concatenated_one_hots():
    env = GridEnv(4, 3)
    enc = env.encode(torch.tensor([[1, 0, 3]]))
    assert enc.shape == (1, 12)
    assert enc[0].nonzero().squeeze(1).tolist() == [1, 4, 11]


def test_levels_are_topological_and_cover_all_states():
    env = GridEnv(6, 3)
    seen = {0}
    for idx, parents, exists in env.level_tables:
        for i, row in enumerate(parents.tolist()):
            for d, p in enumerate(row):
                if exists[i, d]:
                    assert p in seen
        seen.update(idx.tolist())
    assert seen == set(range(env.n_states))
    assert env.max_trajectory_length == 3 * 5 + 1


def test_bad_grid_sizes_raise_clear_errors():
    with pytest.raises(SculptError, match="height"):
        GridEnv(1, 2)
    with pytest.raises(SculptError, match="too large"):
        GridEnv(512, 3)
