"""The molecule training runs kept in ``assets`` (manifest section ``mol_training_runs``) load and continue.

Those checkpoints are long base-model runs that outlast one working session (one CPU core gives 5,500–6,300 steps
of 64 trajectories an hour), kept so the next session resumes them with ``mol train --resume``. They are not
shipped to the pages. What must hold: each listed file loads safely, its recorded step count and reward are the
manifest's, and one more training step from it runs and counts on from there (the lr schedule continues).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sculpt_core.cli import main
from sculpt_core.domains.molecules.model import MolBaseModel

ROOT = Path(__file__).resolve().parents[2]
RUNS = json.loads((ROOT / "assets" / "manifest.json").read_text()).get("mol_training_runs", {})


def test_the_manifest_lists_training_runs():
    assert RUNS, "the manifest's mol_training_runs section is empty"


@pytest.mark.parametrize("name", sorted(RUNS))
def test_training_run_loads_and_matches_its_manifest_entry(name):
    entry = RUNS[name]
    model = MolBaseModel.load(ROOT / "assets" / entry["file"])
    assert int(model.meta["steps"]) == entry["steps"]
    assert model.meta["reward"] == entry["reward"]
    assert entry["steps"] > entry["started_from_steps"]


@pytest.mark.parametrize("name", sorted(RUNS)[:1])
def test_training_run_resumes_and_counts_on(name, tmp_path, capsys):
    entry = RUNS[name]
    out = tmp_path / "next.pt"
    code = main(["mol", "train", "--reward", entry["reward"], "--resume", str(ROOT / "assets" / entry["file"]),
                 "--steps", "1", "--batch-size", "4", "--eval-every", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert int(MolBaseModel.load(out).meta["steps"]) == entry["steps"] + 1
