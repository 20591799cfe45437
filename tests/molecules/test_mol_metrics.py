"""Molecule evaluation: Table 1 bins, top-k, uniqueness, diversity, Tanimoto EMD."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from rdkit import DataStructs
from scipy.optimize import linear_sum_assignment

from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules import metrics as mm

SMILES = [
    "CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "O=C(O)c1ccccc1", "CCN(CC)CC",
    "c1ccc2ccccc2c1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "O=C1CCCCC1", "Cc1ncc[nH]1", "FC(F)(F)c1ccccc1",
    "OCC1OC(O)C(O)C(O)C1O", "CN1CCC[C@H]1c1cccnc1", "NC(=O)c1cccnc1", "CC(=O)OC1=CC=CC=C1C(=O)O",
]


def fp(bits: list[int], n_bits: int = 2048) -> DataStructs.ExplicitBitVect:
    """A hand-made fingerprint with the given on-bits."""
    v = DataStructs.ExplicitBitVect(n_bits)
    for b in bits:
        v.SetBit(int(b))
    return v


def cost(sim: float) -> float:
    return min(max(1.0 / (sim + 1e-8) - 1.0, 0.0), 100.0)


# ------------------------------------------------------------------------------------------ Table 1 bins
def test_table1_bins_order_boundary_and_fractions():
    # one sample per bin, in product order (sEH, SA, QED), low before high; "high" values sit exactly on t
    lo, hi = (0.1, 0.2, 0.1), (0.5, 0.6, 0.25)
    rows = [[(lo, hi)[c][i] for i, c in enumerate(combo)]
            for combo in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]]
    rows += [[0.5, 0.6, 0.25]] * 2  # two more all-high, on the boundary
    out = mm.table1_bins(np.array(rows))
    assert out["codes"] == ["LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH"]
    assert out["labels"][1] == "low seh, low sa, high qed"
    assert out["counts"] == [1, 1, 1, 1, 1, 1, 1, 3]
    assert out["fraction"][-1] == pytest.approx(0.3) and out["fraction_all_high"] == pytest.approx(0.3)
    assert out["percent"] == [10] * 7 + [30]
    assert out["total"] == 10 and out["thresholds"] == [0.5, 0.6, 0.25]
    # just below the threshold is low
    below = mm.table1_bins(np.array([[np.nextafter(0.5, 0), 0.6, 0.25]]))
    assert below["codes"][below["counts"].index(1)] == "LHH"


def test_table1_float32_boundary_is_high():
    out = mm.table1_bins(np.array([[0.5, 0.6, 0.25]], dtype=np.float32))
    assert out["fraction_all_high"] == 1.0 and out["percent"][-1] == 100


def test_table1_truncation_rule_last_bin_absorbs_remainder():
    # three samples in the first three bins: 33 + 33 + 33 truncated, the empty last bin gets 100 - 99 = 1
    r = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = mm.table1_bins(r)
    assert out["percent"] == [33, 33, 33, 0, 0, 0, 0, 1]
    assert sum(out["percent"]) == 100
    assert out["counts"][-1] == 0 and out["fraction_all_high"] == 0.0
    # truncation, not rounding: 2/3 → 66
    out = mm.table1_bins(np.array([[0.0, 0.0, 0.0]] * 2 + [[1.0, 1.0, 1.0]]))
    assert out["percent"][0] == 66 and out["percent"][-1] == 34


def test_table1_random_sums_to_100():
    rng = np.random.default_rng(0)
    for n in (1, 7, 997):
        out = mm.table1_bins(rng.random((n, 3)))
        assert sum(out["percent"]) == 100 and sum(out["counts"]) == n
        assert sum(out["fraction"]) == pytest.approx(1.0)


def test_threshold_bins_two_objectives():
    r = np.array([[0.1, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.9], [0.5, 0.5]])
    out = mm.threshold_bins(r, (0.5, 0.5), names=("seh", "sa"))
    assert out["codes"] == ["LL", "LH", "HL", "HH"]
    assert out["counts"] == [1, 1, 1, 2]
    assert out["percent"] == [20, 20, 20, 40]


def test_bins_bad_input():
    with pytest.raises(SculptError):
        mm.table1_bins(np.zeros((0, 3)))
    with pytest.raises(SculptError):
        mm.table1_bins(np.zeros((4, 2)))
    with pytest.raises(SculptError):
        mm.table1_bins(np.array([[np.nan, 0.5, 0.5]]))
    with pytest.raises(SculptError):
        mm.table1_bins(np.zeros((4, 3)), thresholds=(0.5, 0.5))


def _readme_paper_table1() -> dict[str, tuple[int, ...]]:
    """The paper column of the README's Table 1 (a second, independent transcription of the paper's rows)."""
    keys = {"p_SEH": "p_seh", "p_SA": "p_sa", "p_QED": "p_qed"}
    rows = {}
    column = None  # the index of the column headed "paper" in the current table
    for line in (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            column = None
            continue
        if cells[0] == "row":
            column = cells.index("paper") if "paper" in cells else None
            continue
        label = cells[0]
        key = keys.get(label) or (label[1] if re.fullmatch(r"\([a-g]\) y = .*", label) else None)
        if key is not None and column is not None and re.fullmatch(r"[0-9]+( [0-9]+){7}", cells[column]):
            rows[key] = tuple(int(v) for v in cells[column].split())
    return rows


def test_paper_table1_constant():
    assert set(mm.PAPER_TABLE1) == {"p_seh", "p_sa", "p_qed", "a", "b", "c", "d", "e", "f", "g"}
    assert set(mm.PAPER_TABLE1_LABELS) == set(mm.PAPER_TABLE1)
    for row in mm.PAPER_TABLE1.values():
        assert len(row) == 8 and sum(row) == 100
    assert _readme_paper_table1() == mm.PAPER_TABLE1  # the code's constant and the README's table agree
    # side by side: hand-made rewards with known bins (thresholds 0.5 / 0.6 / 0.25; columns LLL..HHH, first letter
    # sEH): two molecules high in sEH only (HLL, column 4), one high in all three (HHH), one low in all (LLL)
    rewards = np.array([[0.9, 0.1, 0.1], [0.7, 0.5, 0.2], [0.6, 0.7, 0.3], [0.1, 0.1, 0.1]])
    rows = mm.table1_side_by_side({"d": mm.table1_bins(rewards), "custom": mm.table1_bins(np.zeros((4, 3)))})
    assert rows[0]["ours"] == [25, 0, 0, 0, 50, 0, 0, 25] and rows[0]["ours_all_high"] == pytest.approx(0.25)
    assert rows[0]["paper"] == list(mm.PAPER_TABLE1["d"]) and rows[0]["paper_all_high"] == pytest.approx(0.49)
    assert rows[0]["label"] == mm.PAPER_TABLE1_LABELS["d"]
    assert rows[1]["paper"] is None and rows[1]["paper_all_high"] is None and rows[1]["ours"][0] == 100


# ------------------------------------------------------------------------------------------ reward stats
def test_top_k_mean():
    assert mm.top_k_mean([1.0, 5.0, 3.0, 2.0], 2) == pytest.approx(4.0)
    assert mm.top_k_mean([1.0, 5.0, np.nan], 10) == pytest.approx(3.0)  # k > N: all finite values
    cols = mm.top_k_mean(np.array([[1.0, 9.0], [2.0, 8.0], [3.0, 7.0]]), 2)
    np.testing.assert_allclose(cols, [2.5, 8.5])
    with pytest.raises(SculptError):
        mm.top_k_mean([1.0], 0)
    with pytest.raises(SculptError):
        mm.top_k_mean([], 1)


def test_reward_summary():
    r = np.column_stack([np.arange(20, dtype=float), np.full(20, np.nan), np.linspace(0, 1, 20)])
    out = mm.reward_summary(r, ["seh", "sa", "qed"])
    assert out["seh"]["n"] == 20 and out["seh"]["mean"] == pytest.approx(9.5)
    assert out["seh"]["median"] == pytest.approx(9.5) and out["seh"]["top10_mean"] == pytest.approx(14.5)
    assert out["sa"]["n"] == 0 and out["sa"]["mean"] is None
    assert out["qed"]["max"] == pytest.approx(1.0)
    with pytest.raises(SculptError):
        mm.reward_summary(r, ["seh", "sa"])


# ------------------------------------------------------------------------------------------ molecules
def test_morgan_fingerprints_current_api_and_invalid():
    fps = mm.morgan_fingerprints(["CCO", "not a smiles", "", None, "c1ccccc1O"])
    assert fps[1] is None and fps[2] is None and fps[3] is None
    assert fps[0].GetNumBits() == 2048 and fps[0].GetNumOnBits() > 0
    assert mm.morgan_fingerprints(["CCO"], radius=2, n_bits=1024)[0].GetNumBits() == 1024


def test_morgan_matches_legacy_paper_fingerprint():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    legacy = getattr(AllChem, "GetMorganFingerprintAsBitVect", None)
    if legacy is None:
        pytest.skip("legacy Morgan API removed from this RDKit")
    for smi, new in zip(SMILES, mm.morgan_fingerprints(SMILES)):
        assert new == legacy(Chem.MolFromSmiles(smi), 3, nBits=2048), smi


def test_uniqueness_inchi_smiles_and_invalid():
    smiles = ["CCO", "OCC", "C(O)C", "c1ccccc1", "C1=CC=CC=C1", "CC"]  # 3 distinct molecules
    assert mm.uniqueness(smiles) == pytest.approx(3 / 6)
    assert mm.uniqueness(smiles, key="smiles") == pytest.approx(3 / 6)
    assert mm.uniqueness(SMILES) == 1.0
    with_bad = ["CCO", "OCC", "xyz", ""]
    assert mm.uniqueness(with_bad) == pytest.approx(1 / 4)  # invalid entries count as not unique
    assert mm.uniqueness(with_bad, exclude_invalid=True) == pytest.approx(1 / 2)
    # standard InChI merges mobile-H tautomers; canonical SMILES does not
    taut = ["Oc1ccccn1", "O=c1cccc[nH]1"]
    assert mm.uniqueness(taut, key="inchi") == 0.5 and mm.uniqueness(taut, key="smiles") == 1.0
    with pytest.raises(SculptError):
        mm.uniqueness([])
    assert mm.uniqueness(["xyz", "C1CC"]) == 0.0  # all invalid: nothing unique
    with pytest.raises(SculptError):
        mm.uniqueness(["xyz", "C1CC"], exclude_invalid=True)
    with pytest.raises(SculptError):
        mm.uniqueness(["CCO"], key="name")


def test_diversity():
    assert mm.diversity(["CCO"] * 5) == pytest.approx(0.0, abs=1e-12)
    assert mm.diversity([fp([0, 1]), fp([2, 3])]) == pytest.approx(1.0)
    # sims: (a,b)=0.5, (a,c)=0, (b,c)=0 → mean distance 1 - 0.5/3
    assert mm.diversity([fp([0, 1, 2, 3]), fp([0, 1]), fp([10])]) == pytest.approx(1 - 0.5 / 3)
    # invalid entries are dropped
    assert mm.diversity(["CCO", "xyz", "CCO"]) == pytest.approx(0.0, abs=1e-12)
    d = mm.diversity(SMILES)
    assert 0.7 < d < 1.0
    with pytest.raises(SculptError):
        mm.diversity([])
    with pytest.raises(SculptError):
        mm.diversity(["CCO", "xyz"])  # one valid molecule


# ------------------------------------------------------------------------------------------ EMD
def test_tanimoto_cost():
    c = mm.tanimoto_cost(np.array([[1.0, 0.5, 0.0, 0.25]]))
    np.testing.assert_allclose(c, [[0.0, 1.0, 100.0, 3.0]], atol=1e-6)
    assert c[0, 0] == 0.0  # identical fingerprints: clipped to exactly 0


def test_emd_identical_sets_is_zero():
    assert mm.emd_between(SMILES, SMILES) == pytest.approx(0.0, abs=1e-9)
    assert mm.emd_between(SMILES, SMILES[::-1]) == pytest.approx(0.0, abs=1e-9)
    assert mm.emd_between(["CCO"], ["OCC"]) == pytest.approx(0.0, abs=1e-9)  # same molecule, other SMILES


def test_emd_two_vs_two_by_hand():
    a = [fp([0, 1, 2, 3]), fp(list(range(8)))]
    b = [fp([0, 1]), fp(list(range(6)))]
    # sims: a1-b1 2/4, a1-b2 4/6, a2-b1 2/8, a2-b2 6/8 → costs 1, 1/2, 3, 1/3
    # uniform 2×2 plan is a permutation: diagonal (1 + 1/3)/2 = 2/3 beats crossed (1/2 + 3)/2 = 7/4
    expected = 0.5 * (cost(2 / 4) + cost(6 / 8))
    assert expected == pytest.approx(2 / 3, abs=1e-6)
    assert mm.emd_between(a, b) == pytest.approx(expected, abs=1e-12)
    # unequal sizes: one point against two gets the mean cost
    assert mm.emd_between(a[:1], b) == pytest.approx(0.5 * (cost(0.5) + cost(4 / 6)), abs=1e-12)
    # disjoint fingerprints cost the clip value
    assert mm.emd_between([fp([0])], [fp([1])]) == pytest.approx(100.0)


def test_emd_matches_assignment_reference():
    # equal-size uniform EMD = optimal assignment / n; cost built the paper's way on dense bit arrays
    a, b = SMILES[:8], SMILES[7:]
    fa, fb = mm.morgan_fingerprints(a), mm.morgan_fingerprints(b)
    xa = np.array([list(f) for f in fa], dtype=float)
    xb = np.array([list(f) for f in fb], dtype=float)
    inter = xa @ xb.T
    union = xa.sum(1)[:, None] + xb.sum(1)[None, :] - inter
    c = np.clip(1.0 / (inter / union + 1e-8) - 1.0, 0.0, 100.0)
    rows, cols = linear_sum_assignment(c)
    assert mm.emd_between(a, b) == pytest.approx(c[rows, cols].mean(), abs=1e-9)
    np.testing.assert_allclose(mm.emd_cost_matrix(a, b), c, atol=1e-9)


def test_emd_invalid_dropped_and_empty_errors():
    assert mm.emd_between(["CCO", "xyz"], ["CCO"]) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(SculptError):
        mm.emd_between([], ["CCO"])
    with pytest.raises(SculptError):
        mm.emd_between(["CCO"], ["xyz", ""])
    with pytest.raises(SculptError):
        mm.emd_between(SMILES, SMILES, max_entries=10)  # size guard
    with pytest.raises(SculptError):
        mm.emd_between([fp([0], n_bits=1024)], ["CCO"])  # wrong fingerprint length
    with pytest.raises(SculptError):
        mm.pairwise_emd({})


def test_emd_iteration_cap():
    rng = np.random.default_rng(1)
    a = [fp(list(rng.choice(64, 8, replace=False))) for _ in range(30)]
    b = [fp(list(rng.choice(64, 8, replace=False))) for _ in range(30)]
    exact = mm.emd_between(a, b)
    with pytest.raises(SculptError):
        mm.emd_between(a, b, num_iter_max=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        capped = mm.emd_between(a, b, num_iter_max=2, strict=False)
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)
    assert np.isfinite(capped) and capped != pytest.approx(exact)  # a truncated plan: not the EMD


def test_pairwise_emd():
    sets = {"x": SMILES[:5], "y": SMILES[5:10], "z": SMILES[:5] + ["xyz"]}
    calls = []
    names, d = mm.pairwise_emd(sets, progress=lambda *args: calls.append(args))
    assert names == ["x", "y", "z"] and d.shape == (3, 3) and len(calls) == 3
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_allclose(np.diag(d), 0.0)
    assert d[0, 2] == pytest.approx(0.0, abs=1e-9)  # invalid entry dropped → same set
    assert d[0, 1] == pytest.approx(mm.emd_between(SMILES[:5], SMILES[5:10]), abs=1e-12)
    assert d[0, 1] > 0
