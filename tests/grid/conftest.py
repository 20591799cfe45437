"""Shared grid fixtures: three random, unbalanced 9×9 base models (and the first two of them), built once."""

import pytest

from sculpt_core.domains.grid.compose import prepare_bases

from helpers import random_model


@pytest.fixture(scope="session")
def bases3():
    return prepare_bases([random_model(9, seed=s, name=f"m{s}") for s in (11, 12, 13)])


@pytest.fixture(scope="session")
def bases2(bases3):
    return prepare_bases(bases3.models[:2])
