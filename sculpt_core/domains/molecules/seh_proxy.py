"""sEH binding proxy (Bengio et al. 2021) reimplemented in plain PyTorch; ``docs/seh_proxy.md`` explains it.

The proxy is a 12-round NNConv + GRU message-passing network with a Set2Set readout over RDKit's atom
graph, loaded from the published GFNOrg/gflownet weights and matching the compositional-sculpting loader.
The doc's sections cover the atom features (71 columns) and bond features (4-wide one-hot, two directed
edges per bond, a zero self-loop for bond-free molecules), the forward pass, and the order of the
positional 22-array weight list. Many molecules run as one concatenated graph with a batch vector
(gathers and ``index_add``), float32, no torch_geometric.

Weights are never shipped with the code. They are looked up in order: the ``SCULPT_SEH_WEIGHTS`` file,
``<repo>/../shared/data/seh_proxy/best_params.pkl.gz``, then ``~/.cache/sculpt/best_params.pkl.gz``;
``download_seh_weights()`` fetches the public file into that cache on request (never implicitly). The file
is a pickle, so it is read by a restricted unpickler that can only rebuild numpy arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sculpt_core.core.io import write_bytes
from sculpt_core.core.limits import MAX_BATCH, check_int
from sculpt_core.errors import SculptError

# ----- where the weights live ----------------------------------------------------------------------
SEH_WEIGHTS_ENV = "SCULPT_SEH_WEIGHTS"
SEH_WEIGHTS_SHA256 = "f76ab480b62e23dda04fd45fefe0e7ae2374b3f8c3f18fb7e00651cad05b9e1f"
SEH_WEIGHTS_SIZE = 2_597_445
#: The public file in GFNOrg/gflownet, pinned to the commit the proxy weights were published at.
SEH_WEIGHTS_URL = ("https://raw.githubusercontent.com/GFNOrg/gflownet/3ba65d243bb2e4fe77b3b93dc5f1634fd3ea5ea6/"
                   "mols/data/pretrained_proxy/best_params.pkl.gz")
_REPO = Path(__file__).resolve().parents[3]
#: Second place looked at (module attributes so tests can point them elsewhere).
SHARED_WEIGHTS = _REPO.parent / "shared" / "data" / "seh_proxy" / "best_params.pkl.gz"
#: Third place looked at, and where ``download_seh_weights`` writes.
CACHE_WEIGHTS = Path.home() / ".cache" / "sculpt" / "best_params.pkl.gz"
#: Refuse weight pickles that unpack to more than this (the real one is about 2.8 MB): no gzip bombs.
MAX_PICKLE_BYTES = 64 * 2**20

# ----- model constants (docs/seh_proxy.md: Atom features, Forward pass, Weight list) ----------------
N_ATOM_FEATURES = 71
HIDDEN = 64
N_CONV_STEPS = 12
N_SET2SET_STEPS = 3
MAX_ATOMIC_NUMBER = 56  # column 13 + Z must fit in the 70 used columns
LEAKY_SLOPE = 0.01
#: Edge types: the index of the one-hot over [SINGLE, DOUBLE, TRIPLE, AROMATIC]; 4 = the all-zero self-loop.
N_EDGE_TYPES = 5
ZERO_EDGE = 4
_ELEMENT_CLASS = {"H": 0, "C": 1, "N": 2, "O": 3, "F": 4}
#: Expected shape of every entry of the positional weight list (docs/seh_proxy.md, "Weight list"); entries
#: 12–15 are the original model's unused stem head.
PARAM_SHAPES: tuple[tuple[int, ...], ...] = (
    (64, 71), (64,), (64, 64), (64,), (128, 4), (128,), (4096, 128), (4096,),
    (192, 64), (192, 64), (192,), (192,), (512, 64), (512,), (105, 512), (105,),
    (256, 128), (256, 64), (256,), (256,), (1, 128), (1,),
)


def _not_found_message(detail: str) -> str:
    return (f"sEH proxy weights not found: set {SEH_WEIGHTS_ENV} to best_params.pkl.gz, put it in "
            f"{SHARED_WEIGHTS} or {CACHE_WEIGHTS}, or call sculpt_core.domains.molecules.seh_proxy.download_seh_weights() "
            f"({detail})")


def find_seh_weights() -> Path:
    """The weight file to use: ``$SCULPT_SEH_WEIGHTS``, else the shared data copy, else the user cache.

    An explicitly set ``SCULPT_SEH_WEIGHTS`` that names no file is an error rather than silently
    falling back, so a typo in the variable never goes unnoticed.
    """
    explicit = os.environ.get(SEH_WEIGHTS_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SculptError(_not_found_message(f"{SEH_WEIGHTS_ENV}={explicit} is not a file"))
        return path
    for path in (Path(SHARED_WEIGHTS), Path(CACHE_WEIGHTS)):
        if path.is_file():
            return path
    raise SculptError(_not_found_message(f"looked in {SHARED_WEIGHTS} and {CACHE_WEIGHTS}"))


def seh_unavailable_reason() -> str | None:
    """None when the proxy can be built, else the one-line reason it cannot (missing or unreadable weights)."""
    try:
        get_seh_proxy()
    except SculptError as exc:
        return str(exc)
    return None


def seh_available() -> bool:
    """Whether the sEH proxy weights can be found and loaded."""
    return seh_unavailable_reason() is None


# ----- restricted unpickling -------------------------------------------------------------------------
def _numpy_reconstruct():
    core = getattr(np, "_core", None)  # numpy 2.x; numpy 1.x only has numpy.core
    if core is not None and hasattr(core, "multiarray"):
        return core.multiarray._reconstruct
    from numpy.core import multiarray  # pragma: no cover - numpy 1.x

    return multiarray._reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the three globals a pickled list of numpy arrays needs.

    Lists, tuples, dicts, strings, bytes and numbers are pickle opcodes, not globals, so they still load.
    Any other global (``os.system``, ``builtins.eval``, …) is refused before it can be called.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        resolve = self._ALLOWED.get((module, name))
        if resolve is None:
            raise SculptError(f"refusing to load {module}.{name} from the sEH weight pickle "
                              "(only numpy arrays are allowed)")
        return resolve()

    def persistent_load(self, pid):  # noqa: D401 - pickle API
        raise SculptError("refusing persistent ids in the sEH weight pickle")


def load_seh_params(path: str | os.PathLike) -> list[np.ndarray]:
    """Read ``best_params.pkl.gz`` safely: a list of 22 float32 arrays, identified by position, shapes checked."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SculptError(f"cannot read sEH proxy weights {path}: {exc.strerror or exc}") from None
    try:
        data = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(MAX_PICKLE_BYTES + 1) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, ValueError) as exc:
        raise SculptError(f"sEH proxy weights {path} are not a valid gzip file: {exc}") from None
    if len(data) > MAX_PICKLE_BYTES:
        raise SculptError(f"sEH proxy weights {path} are too large (over {MAX_PICKLE_BYTES} bytes unpacked)")
    try:
        params = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except SculptError as exc:
        raise SculptError(f"unsafe sEH proxy weights {path}: {exc}") from None
    except Exception as exc:  # corrupt pickle: any of many exception types
        raise SculptError(f"sEH proxy weights {path} are not a readable pickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(params, list) or len(params) != len(PARAM_SHAPES):
        raise SculptError(f"sEH proxy weights {path}: expected a list of {len(PARAM_SHAPES)} arrays")
    for i, (arr, shape) in enumerate(zip(params, PARAM_SHAPES)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != shape:
            got = f"{arr.dtype}{arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise SculptError(f"sEH proxy weights {path}: entry {i} should be float32{shape}, got {got}")
        if not np.isfinite(arr).all():
            raise SculptError(f"sEH proxy weights {path}: entry {i} holds non-finite values")
    return params


def download_seh_weights(dest: str | os.PathLike | None = None, *, url: str = SEH_WEIGHTS_URL,
                         timeout: float = 60.0) -> Path:
    """Fetch the public proxy weights from GFNOrg/gflownet into the cache (or ``dest``), sha256-checked.

    Explicit only: nothing in the package calls this. Raises SculptError when offline or on a
    checksum mismatch; the destination is written atomically, so a failed download leaves nothing behind.
    """
    import urllib.error
    import urllib.request

    dest = Path(dest) if dest is not None else Path(CACHE_WEIGHTS)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(SEH_WEIGHTS_SIZE * 2)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SculptError(f"could not download the sEH proxy weights from {url} (offline?): {reason}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SEH_WEIGHTS_SHA256:
        raise SculptError(f"downloaded sEH proxy weights have sha256 {digest}, expected {SEH_WEIGHTS_SHA256}; "
                          "not saved")
    write_bytes(dest, data)
    return dest


# ----- featurisation (docs/seh_proxy.md: Input molecule, Atom features, Bond features and edges) ---
@dataclass
class MolGraph:
    """One molecule's atom graph: node features (N, 71), directed edges (2, E) and their types (E,)."""

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_type: torch.Tensor

    @property
    def edge_attr(self) -> torch.Tensor:
        """The (E, 4) one-hot over (single, double, triple, aromatic); the zero-bond self-loop is an all-zero row."""
        return F.one_hot(self.edge_type, N_EDGE_TYPES)[:, :4].to(torch.float32)


@dataclass
class GraphBatch:
    """Many molecules as one graph: nodes concatenated, ``batch[i]`` = molecule of node i.

    Edges are grouped by type (``type_slices[t]`` is the slice of edges of type t) so each message
    round is one dense matmul per bond type.
    """

    x: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    type_slices: list[tuple[int, int, int]]  # (type, start, stop)
    inv_degree: torch.Tensor  # (N, 1): 1 / incoming edges, 0 for atoms without any
    batch: torch.Tensor
    n_graphs: int

    def to(self, device: torch.device | str) -> "GraphBatch":
        return GraphBatch(self.x.to(device), self.src.to(device), self.dst.to(device), self.type_slices,
                          self.inv_degree.to(device), self.batch.to(device), self.n_graphs)


_BOND_TYPES: dict | None = None
_HYB_COLUMNS: dict | None = None
#: Element class column by atomic number (H, C, N, O, F; everything else is column 5).
_CLASS_BY_Z = np.full(MAX_ATOMIC_NUMBER + 1, 5, dtype=np.int64)
_CLASS_BY_Z[[1, 6, 7, 8, 9]] = [0, 1, 2, 3, 4]


def _rdkit_tables() -> tuple[dict, dict]:
    """RDKit enum → edge type index and hybridisation → feature column (built on first use: RDKit imports lazily)."""
    global _BOND_TYPES, _HYB_COLUMNS
    if _BOND_TYPES is None or _HYB_COLUMNS is None:
        from rdkit.Chem import BondType, HybridizationType

        _BOND_TYPES = {BondType.SINGLE: 0, BondType.UNSPECIFIED: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2,
                       BondType.AROMATIC: 3}
        _HYB_COLUMNS = {HybridizationType.SP: 10, HybridizationType.SP2: 11, HybridizationType.SP3: 12}
    return _BOND_TYPES, _HYB_COLUMNS


def atom_features(mol) -> np.ndarray:
    """The (N, 71) float32 node features; SculptError for atoms the proxy cannot encode (Z > 56).

    Columns: 0–5 element class (H, C, N, O, F, other), 9 aromatic, 10–12 SP/SP2/SP3, 13 the raw total H
    count, 13 + Z the atomic-number one-hot; 6–8 and 70 stay 0 (docs/seh_proxy.md, "Atom features").
    One RDKit call per atom property, then numpy writes the columns (the per-atom Python loop used to
    dominate sEH scoring in training; tests compare with that loop).
    """
    _, hyb_col = _rdkit_tables()
    n = mol.GetNumAtoms()
    get = mol.GetAtomWithIdx
    atoms = [get(i) for i in range(n)]
    z = np.fromiter((a.GetAtomicNum() for a in atoms), dtype=np.int64, count=n)
    if n and z.max() > MAX_ATOMIC_NUMBER:
        bad = atoms[int(np.argmax(z > MAX_ATOMIC_NUMBER))]
        raise SculptError(f"the sEH proxy cannot featurise {bad.GetSymbol()} (atomic number {bad.GetAtomicNum()} > 56)")
    rows = np.arange(n)
    x = np.zeros((n, N_ATOM_FEATURES), dtype=np.float32)
    cls = _CLASS_BY_Z[z]
    dummy = np.flatnonzero(z == 0)  # class from the symbol, as for every atom in the reference
    if dummy.size:
        cls[dummy] = [_ELEMENT_CLASS.get(atoms[i].GetSymbol(), 5) for i in dummy]
    x[rows, cls] = 1.0
    x[rows, 9] = np.fromiter((a.GetIsAromatic() for a in atoms), dtype=bool, count=n)
    hyb = np.fromiter((hyb_col.get(a.GetHybridization(), -1) for a in atoms), dtype=np.int64, count=n)
    has = hyb >= 0
    x[rows[has], hyb[has]] = 1.0
    real = z > 0  # a dummy atom's bit would land in column 13, which the H count overwrites
    x[rows[real], 13 + z[real]] = 1.0
    x[rows, 13] = np.fromiter((a.GetTotalNumHs(includeNeighbors=True) for a in atoms), dtype=np.float32, count=n)
    return x


def mol_to_graph(mol) -> MolGraph:
    """Featurise a sanitized RDKit Mol (implicit Hs kept implicit, no kekulization): atoms, two directed edges per bond.

    A molecule without bonds gets one all-zero self-loop on atom 0, as the reference does; an empty edge list
    would change the output a lot (methane ≈ 3.6 instead of −0.42).
    Raises SculptError for None, an empty molecule, atomic numbers > 56, or dative/other bonds.
    """
    if mol is None:
        raise SculptError("no molecule (None) to featurise")
    if mol.GetNumAtoms() == 0:
        raise SculptError("cannot featurise a molecule with no atoms")
    x = atom_features(mol)
    bond_types, _ = _rdkit_tables()
    get = mol.GetBondWithIdx
    bonds = [get(k) for k in range(mol.GetNumBonds())]
    if bonds:
        try:
            kinds = [bond_types[b.GetBondType()] for b in bonds]
        except KeyError as exc:
            raise SculptError(f"the sEH proxy cannot featurise a {exc.args[0]} bond") from None
        ij = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in bonds], dtype=np.int64)
        t = np.asarray(kinds, dtype=np.int64)
        e = np.concatenate([np.stack([ij[:, 0], ij[:, 1], t], 1), np.stack([ij[:, 1], ij[:, 0], t], 1)])
        e = e[np.lexsort((e[:, 2], e[:, 1], e[:, 0]))]  # sorted as tuples (i, j, type)
    else:
        e = np.array([[0, 0, ZERO_EDGE]], dtype=np.int64)
    et = torch.from_numpy(e)
    return MolGraph(torch.from_numpy(x), et[:, :2].T.contiguous(), et[:, 2].contiguous())


def batch_graphs(graphs: Sequence[MolGraph]) -> GraphBatch:
    """Concatenate molecule graphs into one, with node offsets, a batch vector and edges grouped by type."""
    if not graphs:
        raise SculptError("no molecules to batch")
    sizes = torch.tensor([g.x.shape[0] for g in graphs], dtype=torch.long)
    offsets = torch.cumsum(sizes, 0) - sizes
    x = torch.cat([g.x for g in graphs])
    edge_index = torch.cat([g.edge_index + off for g, off in zip(graphs, offsets.tolist())], dim=1)
    edge_type = torch.cat([g.edge_type for g in graphs])
    order = torch.argsort(edge_type, stable=True)
    src, dst, edge_type = edge_index[0, order], edge_index[1, order], edge_type[order]
    counts = torch.bincount(edge_type, minlength=N_EDGE_TYPES).tolist()
    slices, start = [], 0
    for t, c in enumerate(counts):
        if c:
            slices.append((t, start, start + c))
        start += c
    degree = torch.bincount(dst, minlength=x.shape[0]).to(torch.float32)
    inv_degree = torch.where(degree > 0, 1.0 / degree.clamp(min=1.0), torch.zeros_like(degree)).unsqueeze(1)
    batch = torch.repeat_interleave(torch.arange(len(graphs)), sizes)
    return GraphBatch(x, src.contiguous(), dst.contiguous(), slices, inv_degree, batch, len(graphs))


# ----- the network (docs/seh_proxy.md: Forward pass) ---------------------------------------------------
class SEHProxy(nn.Module):
    """The sEH proxy MPNN: input embedding, 12 shared NNConv(mean)+GRU rounds, Set2Set(3), linear head.

    ``from_params`` copies the positional weight list in as stored, with no transposes: the root weight is
    applied as ``out @ Wr.T`` like the compositional-sculpting loader, not ``out @ Wr`` as in the original
    torch_geometric 1.x training (docs/seh_proxy.md, "Root-weight orientation").
    """

    def __init__(self) -> None:
        super().__init__()
        d = HIDDEN
        self.lin0 = nn.Linear(N_ATOM_FEATURES, d)
        self.conv_root = nn.Linear(d, d, bias=False)
        self.conv_bias = nn.Parameter(torch.zeros(d))
        self.edge_nn1 = nn.Linear(4, 128)
        self.edge_nn2 = nn.Linear(128, d * d)
        self.gru = nn.GRUCell(d, d)
        self.lstm = nn.LSTMCell(2 * d, d)
        self.lin3 = nn.Linear(2 * d, 1)

    @classmethod
    def from_params(cls, params: Sequence[np.ndarray]) -> "SEHProxy":
        """Build the model from the 22-array list of ``best_params.pkl.gz`` (entries 12–15 unused)."""
        model = cls()
        targets = {
            0: model.lin0.weight, 1: model.lin0.bias, 2: model.conv_root.weight, 3: model.conv_bias,
            4: model.edge_nn1.weight, 5: model.edge_nn1.bias, 6: model.edge_nn2.weight, 7: model.edge_nn2.bias,
            8: model.gru.weight_ih, 9: model.gru.weight_hh, 10: model.gru.bias_ih, 11: model.gru.bias_hh,
            16: model.lstm.weight_ih, 17: model.lstm.weight_hh, 18: model.lstm.bias_ih, 19: model.lstm.bias_hh,
            20: model.lin3.weight, 21: model.lin3.bias,
        }
        with torch.no_grad():
            for i, param in targets.items():
                param.copy_(torch.from_numpy(np.asarray(params[i], dtype=np.float32)))
        return model.eval().requires_grad_(False)

    def edge_kernels(self) -> torch.Tensor:
        """(5, 64, 64) NNConv kernels K_t for the 4 bond one-hots and the zero vector (row = input channel).

        The edge network sees only these 5 distinct inputs, so computing it once per type is exactly the
        per-edge computation of the reference.
        """
        attrs = torch.eye(N_EDGE_TYPES, 4, device=self.lin0.weight.device)
        k = self.edge_nn2(F.leaky_relu(self.edge_nn1(attrs), LEAKY_SLOPE))
        return k.view(N_EDGE_TYPES, HIDDEN, HIDDEN)

    def forward(self, g: GraphBatch) -> torch.Tensor:
        """proxy_raw for every molecule of the batch, shape (n_graphs,)."""
        kernels = self.edge_kernels()
        out = F.leaky_relu(self.lin0(g.x), LEAKY_SLOPE)
        for _ in range(N_CONV_STEPS):
            msgs = torch.cat([out[g.src[a:b]] @ kernels[t] for t, a, b in g.type_slices])
            agg = torch.zeros_like(out).index_add_(0, g.dst, msgs) * g.inv_degree
            m = F.leaky_relu(agg + self.conv_root(out) + self.conv_bias, LEAKY_SLOPE)
            out = self.gru(m, out)  # the new GRU hidden state is also the next node state
        return self.lin3(self._set2set(out, g.batch, g.n_graphs)).squeeze(1)

    def _set2set(self, out: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        """Set2Set readout (LSTM first, softmax attention per molecule, ``q_star = [q, r]``)."""
        h = out.new_zeros(n_graphs, HIDDEN)
        c = out.new_zeros(n_graphs, HIDDEN)
        q_star = out.new_zeros(n_graphs, 2 * HIDDEN)
        for _ in range(N_SET2SET_STEPS):
            h, c = self.lstm(q_star, (h, c))
            e = (out * h[batch]).sum(dim=1)
            e_max = e.new_full((n_graphs,), -torch.inf).scatter_reduce_(0, batch, e, "amax", include_self=True)
            a = (e - e_max[batch]).exp()
            denom = a.new_zeros(n_graphs).index_add_(0, batch, a) + 1e-16
            a = a / denom[batch]
            r = out.new_zeros(n_graphs, HIDDEN).index_add_(0, batch, a.unsqueeze(1) * out)
            q_star = torch.cat([h, r], dim=1)
        return q_star

    @torch.no_grad()
    def predict_mols(self, mols: Sequence, batch_size: int = 256) -> np.ndarray:
        """float32 proxy_raw per molecule; NaN for molecules the proxy cannot featurise (None, Z > 56, …)."""
        check_int(batch_size, "batch size", 1, MAX_BATCH, "batch sizes")
        device = self.lin0.weight.device
        result = np.full(len(mols), np.nan, dtype=np.float32)
        graphs: list[MolGraph] = []
        where: list[int] = []
        for i, mol in enumerate(mols):
            try:
                graphs.append(mol_to_graph(mol))
                where.append(i)
            except SculptError:
                continue
        for start in range(0, len(graphs), batch_size):
            chunk = batch_graphs(graphs[start:start + batch_size]).to(device)
            result[where[start:start + batch_size]] = self(chunk).float().cpu().numpy()
        return result


# ----- one model per process ---------------------------------------------------------------------------
_CACHE: dict[tuple, SEHProxy] = {}
_CACHE_LOCK = threading.Lock()


def seh_weights_identity() -> tuple[str, int, int]:
    """(file, mtime ns, size) of the weights ``find_seh_weights()`` names: new weights, new identity (the proxy's
    cache key, and the key of sEH values cached elsewhere)."""
    path = find_seh_weights().resolve()
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def get_seh_proxy(device: torch.device | str | None = None) -> SEHProxy:
    """The proxy built from ``find_seh_weights()``, cached per process (keyed by file, mtime and device)."""
    identity = seh_weights_identity()
    path = Path(identity[0])
    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = (*identity, str(dev))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = SEHProxy.from_params(load_seh_params(path)).to(dev)
            _CACHE[key] = model
    return model


def seh_proxy_raw(mols: Sequence, device: torch.device | str | None = None, batch_size: int = 256) -> np.ndarray:
    """Batched proxy_raw (float32, NaN where a molecule cannot be featurised); SculptError without weights."""
    return get_seh_proxy(device).predict_mols(mols, batch_size=batch_size)
