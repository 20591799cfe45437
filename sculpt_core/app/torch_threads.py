"""Small torch work of the pages on one intra-op thread.

The pages compute on small tensors (a 32×32 grid DP, a few thousand diffusion particles): on two shared cores,
torch's default two OpenMP threads wait on each other while the browser and the server's other threads hold the
other core. Measured in a real server during browser α moves on the grid page: the exact DP's 134 logsumexp calls
took 48 ms per move on the default threads against 5 ms in a quiet process; a 2000-particle, 100-step diffusion
run of two learned models took 22 s instead of 0.7 s.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the enclosed torch work on one intra-op thread; the previous setting is restored after."""
    import torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


__all__ = ["one_torch_thread"]
