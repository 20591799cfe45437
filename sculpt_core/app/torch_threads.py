"""The app's torch work runs on one intra-op thread.

The pages compute on small tensors (a 32×32 grid DP, 16-128 molecule graphs, a few thousand diffusion particles).
On two shared cores torch's default two OpenMP threads wait on each other while chromium and the server's other
threads hold the other core. Measured in a real server: the grid's exact DP (134 ``logsumexp`` calls) took 48 ms
per α move on two threads against 5 ms on one; a first batch of 16 molecules 0.5-1.3 s instead of 0.2 s; a
2000-particle, 100-step diffusion run of two learned models 22 s instead of 0.7 s.

Set process-wide and never restored: ``torch.set_num_threads`` sets the calling thread's count and the default of
every thread started after it (each Streamlit rerun, fragment reruns included, runs in a new thread), so a
context manager restoring "the previous value" from one thread would put later threads of every page back on two.
"""

from __future__ import annotations


def use_one_torch_thread() -> None:
    """Put the calling thread, and every thread started from now on, on one torch intra-op thread (idempotent)."""
    import torch

    torch.set_num_threads(1)


__all__ = ["use_one_torch_thread"]
