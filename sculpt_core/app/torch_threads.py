"""The app's torch work runs on one intra-op thread, and numpy/scipy's BLAS on one thread.

The pages compute on small tensors (a 32×32 grid DP, 16-128 molecule graphs, a few thousand diffusion particles).
On two shared cores torch's default two OpenMP threads wait on each other while chromium and the server's other
threads hold the other core. Measured in a real server: the grid's exact DP (134 ``logsumexp`` calls) took 48 ms
per α move on two threads against 5 ms on one; a first batch of 16 molecules 0.5-1.3 s instead of 0.2 s; a
2000-particle, 100-step diffusion run of two learned models 22 s instead of 0.7 s.

Set process-wide and never restored: ``torch.set_num_threads`` sets the calling thread's count and the default of
every thread started after it (each Streamlit rerun, fragment reruns included, runs in a new thread), so a
context manager restoring "the previous value" from one thread would put later threads of every page back on two.

numpy and scipy's OpenBLAS keeps its own pool (two threads here), process-wide, whose idle worker spins on the
other core after each call. In the server, on the Molecule page with its view prefetched, the reward KDE figure
took 150-300 ms on that pool against 57-92 ms with it on one thread (the whole script 480-650 ms against
230-330 ms; ``OPENBLAS_NUM_THREADS=1`` in the same bench), so the BLAS pools are limited to one thread too
(``threadpoolctl``, which scikit-learn installs; without it this part is skipped).
"""

from __future__ import annotations


def use_one_torch_thread() -> None:
    """Put the calling thread, and every thread started from now on, on one torch intra-op thread (idempotent)."""
    import torch

    torch.set_num_threads(1)
    _one_blas_thread()


_BLAS_LIMITED = False


def _one_blas_thread() -> None:
    """Limit the loaded BLAS pools (OpenBLAS of numpy/scipy) to one thread, once per process."""
    global _BLAS_LIMITED
    if _BLAS_LIMITED:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return
    import numpy  # noqa: F401  (and scipy.linalg, whose pools the KDE uses) loaded first, so their pools are seen
    import scipy.linalg  # noqa: F401

    threadpool_limits(limits=1, user_api="blas")  # kept: the limit stays until restored, which we never do
    _BLAS_LIMITED = True


__all__ = ["use_one_torch_thread"]
