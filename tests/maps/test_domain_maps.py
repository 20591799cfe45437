"""Each domain's distances for distribution maps and the ``emd`` commands: grid EMD against the full transport
problem and by hand, molecule EMD against Tanimoto costs computed by hand, 2-D point sets by hand, the shipped
Fig. 4 record, and the command-line contract (a (k, k) float64 matrix, one JSON line, exit 2 with one line)."""

from __future__ import annotations

import json

import numpy as np
import ot
import pytest

from sculpt_core.cli import main
from sculpt_core.core.maps import MapItem
from sculpt_core.domains.diffusion import maps as DM
from sculpt_core.domains.grid import maps as GM
from sculpt_core.errors import SculptError

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCNCC1", "CCN(CC)CC"]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


# ----- grid ------------------------------------------------------------------------------------------------
def _delta(shape, *cells_and_mass):
    p = np.zeros(shape)
    for cell, mass in cells_and_mass:
        p[cell] = mass
    return p


def test_grid_emd_by_hand_on_a_tiny_grid():
    # shared mass stays, half the mass moves one cell: 0.5
    p = _delta((3, 3), ((0, 0), 0.5), ((1, 1), 0.5))
    q = _delta((3, 3), ((0, 1), 0.5), ((1, 1), 0.5))
    assert GM.grid_emd(p, q) == pytest.approx(0.5)
    # corner to corner: √8 cell units
    assert GM.grid_emd(_delta((3, 3), ((0, 0), 1.0)), _delta((3, 3), ((2, 2), 1.0))) == pytest.approx(np.sqrt(8))
    # two halves meet in the middle: each moves one cell
    assert GM.grid_emd(_delta((3, 3), ((0, 0), 0.5), ((0, 2), 0.5)), _delta((3, 3), ((0, 1), 1.0))) == pytest.approx(1.0)
    assert GM.grid_emd(p, p) == 0.0


def test_grid_emd_equals_the_full_transport_problem():
    rng = np.random.default_rng(0)
    cost = GM.cell_cost((8, 8))
    for _ in range(3):
        p, q = rng.gamma(0.3, size=(8, 8)), rng.gamma(0.3, size=(8, 8))
        p, q = p / p.sum(), q / q.sum()
        assert GM.grid_emd(p, q) == pytest.approx(ot.emd2(p.ravel(), q.ravel(), cost), rel=1e-9, abs=1e-12)
    assert GM.grid_emd(p, q, solver="sinkhorn") == pytest.approx(GM.grid_emd(p, q), rel=0.05)


def test_grid_emd_equals_the_full_transport_problem_on_32x32_tables():
    # the shape of the map's tables: a ring against a bump and a broad table, so that the difference's positive
    # support is smaller than its negative one and the other way round (grid_emd swaps and reorders them)
    z0, z1 = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    ring = np.exp(-((np.hypot(z0 - 15.5, z1 - 15.5) - 10.0) ** 2) / 4.0) + 1e-6
    bump = np.exp(-((z0 - 8.0) ** 2 + (z1 - 22.0) ** 2) / 18.0) + 1e-6
    broad = np.random.default_rng(2).gamma(2.0, size=(32, 32))
    tables = [t / t.sum() for t in (ring, bump, broad)]
    cost = GM.cell_cost((32, 32))
    for p, q in ((tables[0], tables[1]), (tables[1], tables[0]), (tables[1], tables[2])):
        full = ot.emd2(p.ravel(), q.ravel(), cost, numItermax=10**8)
        assert GM.grid_emd(p, q) == pytest.approx(full, rel=1e-9, abs=0)
    assert GM.grid_emd(tables[2], tables[0]) == pytest.approx(GM.grid_emd(tables[0], tables[2]), rel=1e-12)


def test_grid_emd_matrix_and_errors():
    rng = np.random.default_rng(1)
    dists = [rng.random((5, 5)) for _ in range(4)]
    d = GM.emd_matrix(dists)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    with pytest.raises(SculptError, match="different grids"):
        GM.emd_matrix([np.ones((4, 4)), np.ones((5, 5))])
    with pytest.raises(SculptError, match="non-negative"):
        GM.grid_emd(-np.ones((3, 3)), np.ones((3, 3)))


def test_grid_map_distributions_of_zoo_models(monkeypatch):
    monkeypatch.delenv("SCULPT_ASSETS", raising=False)  # the shipped (trained) grid models
    items = [MapItem("b1", "p1", base=0), MapItem("b2", "p2", base=1),
             MapItem("hm", "hm", labels=(1, 2), method="oracle"),
             MapItem("hm.2", "hm α", labels=(1, 2), alpha=0.2, method="reaching")]
    dists = GM.map_distributions(["circle1", "circle2"], items)
    assert all(p.shape == (32, 32) and abs(p.sum() - 1) < 1e-9 for p in dists)
    d = GM.emd_matrix(dists)
    assert d[0, 2] < d[0, 1] and d[1, 2] < d[0, 1]  # the harmonic mean lies between its bases


def test_grid_emd_command(tmp_path, capsys):
    rng = np.random.default_rng(2)
    paths = []
    for i in range(3):
        path = tmp_path / f"p{i}.npy"
        np.save(path, rng.random((6, 6)))
        paths.append(str(path))
    np.savetxt(tmp_path / "p3.csv", rng.random((6, 6)), delimiter=",")
    paths.append(str(tmp_path / "p3.csv"))
    code, out, _ = run(["grid", "emd", "--dists", ",".join(paths), "--out", str(tmp_path / "d.npy")], capsys)
    assert code == 0
    record = json.loads(out)
    d = np.load(tmp_path / "d.npy")
    assert d.shape == (4, 4) and d.dtype == np.float64 and record["k"] == 4
    np.testing.assert_allclose(d, np.array(record["matrix"]), atol=1e-4)
    np.save(tmp_path / "neg.npy", -np.ones((6, 6)))
    np.save(tmp_path / "small.npy", np.ones((5, 5)))
    for dists, msg in ((paths[0], "at least two"), (f"{paths[0]},{tmp_path / 'nope.npy'}", "not found"),
                       (f"{paths[0]},{tmp_path / 'neg.npy'}", "non-negative"),
                       (f"{paths[0]},{tmp_path / 'small.npy'}", "different grids")):
        code, out, err = run(["grid", "emd", "--dists", dists, "--out", str(tmp_path / "e.npy")], capsys)
        assert code == 2 and out == "" and err.startswith("error:") and msg in err and err.count("\n") == 1
    assert not (tmp_path / "e.npy").exists()


# ----- molecules -------------------------------------------------------------------------------------------
def _tanimoto_cost_by_hand(a: str, b: str) -> float:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=3, fpSize=2048)
    on_a = set(gen.GetFingerprint(Chem.MolFromSmiles(a)).GetOnBits())
    on_b = set(gen.GetFingerprint(Chem.MolFromSmiles(b)).GetOnBits())
    sim = len(on_a & on_b) / len(on_a | on_b)
    return float(np.clip(1.0 / (sim + 1e-8) - 1.0, 0.0, 100.0))


def test_molecule_emd_by_hand():
    pytest.importorskip("rdkit")
    from sculpt_core.domains.molecules.maps import emd_matrix

    d = emd_matrix([SMILES[:1], SMILES[1:2], SMILES[:2], SMILES[1::-1], [SMILES[0], SMILES[0]]])
    cost = _tanimoto_cost_by_hand(SMILES[0], SMILES[1])
    assert d[0, 1] == pytest.approx(cost)  # one molecule each: the ground cost itself
    assert d[2, 3] == pytest.approx(0.0)  # the same set in another order
    assert d[2, 4] == pytest.approx(0.5 * cost)  # half the mass moves from SMILES[0] to SMILES[1]
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)


def test_molecule_emd_command(tmp_path, capsys):
    pytest.importorskip("rdkit")
    (tmp_path / "a.csv").write_text("smiles,qed\n" + "\n".join(f"{s},0.5" for s in SMILES[:3]) + "\n")
    (tmp_path / "b.smi").write_text("\n".join(SMILES[2:]) + "\n")
    (tmp_path / "c.csv").write_text("name\nCCO\n")
    (tmp_path / "bad.smi").write_text("not_a_smiles\n")
    ins = f"{tmp_path / 'a.csv'},{tmp_path / 'b.smi'},{tmp_path / 'a.csv'}"
    code, out, _ = run(["mol", "emd", "--in", ins, "--out", str(tmp_path / "d.npy")], capsys)
    assert code == 0
    record = json.loads(out)
    d = np.load(tmp_path / "d.npy")
    assert d.shape == (3, 3) and d.dtype == np.float64 and d[0, 2] == 0.0 and d[0, 1] > 0
    assert record["n"] == [3, 3, 3] and record["solver"] == "exact"
    code, out, _ = run(["mol", "emd", "--in", ins, "--out", str(tmp_path / "s.npy"), "--solver", "sinkhorn"], capsys)
    assert code == 0 and np.load(tmp_path / "s.npy")[0, 1] >= d[0, 1] - 1e-6
    check = json.loads(out)["sinkhorn_check"]  # the approximation's error against the exact first pair
    assert check["exact"] == pytest.approx(d[0, 1], abs=1e-6) and check["relative_error"] >= -1e-6
    for files, msg in ((str(tmp_path / "a.csv"), "at least two"), (f"{tmp_path / 'a.csv'},{tmp_path / 'c.csv'}", "smiles"),
                       (f"{tmp_path / 'a.csv'},{tmp_path / 'bad.smi'}", "no valid molecule"),
                       (f"{tmp_path / 'a.csv'},{tmp_path / 'x.smi'}", "not found")):
        code, out, err = run(["mol", "emd", "--in", files, "--out", str(tmp_path / "e.npy")], capsys)
        assert code == 2 and out == "" and err.startswith("error:") and msg in err and err.count("\n") == 1
    assert not (tmp_path / "e.npy").exists()


def test_fig4_definition_and_paper_matrix():
    from sculpt_core.domains.molecules.maps import FIG4_DISTRIBUTIONS, paper_fig4_matrix
    from sculpt_core.domains.molecules.metrics import PAPER_EMD

    keys = [d.key for d in FIG4_DISTRIBUTIONS]
    assert len(keys) == 13 and keys[:3] == ["SEH", "SA", "QED"] and keys[6] == "SEH,SA,QED"
    assert [d.labels for d in FIG4_DISTRIBUTIONS[7:]] == [(1, 1), (2, 2), (3, 3), (1, 1, 1), (2, 2, 2), (3, 3, 3)]
    paper = paper_fig4_matrix()
    np.testing.assert_array_equal(paper, paper.T)
    np.testing.assert_array_equal(np.diag(paper), 0.0)
    index = {k: i for i, k in enumerate(keys)}
    for (a, b), value in PAPER_EMD.items():  # the selected entries the molecule metrics quote agree
        assert paper[index[a], index[b]] == pytest.approx(value, abs=0.006)


def test_shipped_fig4_record(monkeypatch):
    from sculpt_core.domains.molecules.maps import fig4_path, load_fig4

    monkeypatch.delenv("SCULPT_ASSETS", raising=False)
    if not fig4_path().is_file():
        pytest.skip("assets/maps/mol_fig4.json is not built")
    record = load_fig4()
    d = np.asarray(record["matrix"])
    assert d.shape == (13, 13) and len(record["labels"]) == 13
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert (d[np.triu_indices(13, 1)] > 0).all()
    assert {"n_per_set", "seed", "method", "beta"} <= set(record["settings"])
    assert all(r["n"] == record["settings"]["n_per_set"] for r in record["distributions"])
    tsne = record["embeddings"]["ours"]["tsne"]
    assert np.asarray(tsne["coords"]).shape == (13, 2) and tsne["perplexity"] == 4.0


# ----- diffusion (2-D point sets) ----------------------------------------------------------------------------
def test_point_set_emd_by_hand():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    d = DM.emd_matrix([x, x + [1.0, 0.0], x + [0.0, 1.0], x[::-1]])
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(1.0) and d[0, 3] == pytest.approx(0.0)
    assert d[1, 2] == pytest.approx(np.sqrt(2))
    with pytest.raises(SculptError, match=r"\(N, 2\)"):
        DM.check_points(np.zeros((3, 3)))


def test_diffusion_map_samples_are_seeded():
    items = [MapItem("b", "ring", base=0), MapItem("hm", "hm", labels=(1, 2), method="exact")]
    a = DM.map_samples(["ring", "band"], items, n=100, seed=1)
    b = DM.map_samples(["ring", "band"], items[:1], n=100, seed=1)
    assert all(x.shape == (100, 2) for x in a)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], DM.map_samples(["ring", "band"], items[:1], n=100, seed=2)[0])


def test_diffusion_emd_command(tmp_path, capsys):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "a.npy", rng.normal(size=(80, 2)))
    np.save(tmp_path / "b.npy", rng.normal(size=(60, 2)) + [2.0, 0.0])
    np.save(tmp_path / "c.npy", rng.normal(size=(10, 3)))
    ins = f"{tmp_path / 'a.npy'},{tmp_path / 'b.npy'}"
    code, out, _ = run(["diffusion", "emd", "--in", ins, "--out", str(tmp_path / "d.csv")], capsys)
    assert code == 0 and json.loads(out)["k"] == 2
    d = np.loadtxt(tmp_path / "d.csv", delimiter=",")
    assert d.shape == (2, 2) and 1.5 < d[0, 1] < 2.5
    code, out, err = run(["diffusion", "emd", "--in", f"{tmp_path / 'a.npy'},{tmp_path / 'c.npy'}",
                          "--out", str(tmp_path / "e.npy")], capsys)
    assert code == 2 and err.startswith("error:") and "(N, 2)" in err and not (tmp_path / "e.npy").exists()
