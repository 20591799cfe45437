"""Fixtures shared by the app tests (the tiny zoo and the app environment live in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.delta_generator import DeltaGenerator


@pytest.fixture
def downloads(monkeypatch) -> list[dict]:
    """Every ``download_button`` call of the page runs (label, file name, data), recorded in-process."""
    calls: list[dict] = []
    original = DeltaGenerator.download_button

    def record(self, label, data, file_name=None, *args, **kwargs):
        calls.append({"label": label, "file_name": file_name, "data": data})
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", record)
    monkeypatch.setattr(st, "download_button", lambda *a, **k: record(st._main, *a, **k))  # bound at import
    return calls


@pytest.fixture(autouse=True)
def _no_prefetch(monkeypatch):
    """The molecule page's background prefetch is off in AppTest runs (so no test's neighbours compete with the
    next test); the prefetch tests turn it on themselves."""
    monkeypatch.setenv("SCULPT_PREFETCH", "0")


@pytest.fixture
def mol_env(monkeypatch):
    """The shipped assets (the molecule models live there), not a test zoo."""
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    from sculpt_core.domains.molecules.zoo import mol_model_names

    if not {"seh", "sa", "qed"} <= set(mol_model_names()):
        pytest.skip("the shipped molecule models are missing from assets/")
