"""Shared setup of the diffusion tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread per diffusion test module: the quadrature is many small products, which two threads on
    two shared cores slow down several-fold when anything else runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
