"""Fragment-based molecule environment (Bengio et al. 2021 fragments, compositional-sculpting ``frag_mol_env``).

A molecule is a tree of at most ``max_frags`` fragments joined by single bonds between attachment atoms
("stems"). Assembly and attachment rules follow ``shared/data/fragments/README.md``.

States (:class:`FragState`, immutable, hashable)
    ``frags[i]`` is the fragment id of node i; nodes are numbered in insertion order. ``edges[e] =
    (u, v, stem_u, stem_v)`` is the junction created when node ``v = e + 1`` was added from node ``u < v``;
    a stem is an index into the fragment's attachment list, ``-1`` = not chosen yet. The first endpoint of an
    edge is always the older node u. Equality of FragState is *labelled* equality; :func:`canonical_key`
    identifies states up to tree isomorphism preserving fragment ids and stems (the paper's notion of a
    graph state, where removing a node relabels the rest). Different states may still give the same molecule.

Fixed action layout (:class:`~sculpt_core.domains.molecules.graphs.ActionLayout`, ``F`` fragments, ``M = max_frags``)
    ``[0, M*F)``                AddNode(source node i, fragment f) at ``i*F + f``; the empty graph uses row 0
                                ("place the first fragment").
    ``[M*F, M*F + (M-1)*12)``   SetEdgeAttr(edge e, column c) at ``M*F + e*12 + c``; ``c < 6`` sets the stem
                                ``c`` of the edge's first endpoint u, ``c >= 6`` sets stem ``c-6`` of v.
    ``n_actions - 1``           Stop (``stop_action``), valid iff the graph is non-empty and every stem is set.
    With the 72 fragments and M = 9: 648 + 96 + 1 = 745 actions. Every policy produces ``[B, n_actions]``
    logits through :func:`~sculpt_core.domains.molecules.graphs.scatter_logits`, so composition code mixes ``[m, B, A]`` tensors unchanged.

Backward policy (paper's ``count_backward_transitions``)
    Uniform over backward actions of the graph: remove a leaf whose edge has no stem set, unset one set stem,
    or empty a single-node graph. :meth:`FragmentEnv.parents` lists them (node removal relabels the remaining
    nodes in order) and :meth:`FragmentEnv.log_n_parents` counts them. Like the paper, the count does not
    correct for automorphisms: on a state with a non-trivial automorphism group, several backward actions
    lead to the same (parent class, forward-action class) pair, so the count exceeds the number of distinct
    class-level transitions (tests check equality on asymmetric states and the orbit relation on all).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.fragments import MAX_STEMS, FragmentLibrary
from sculpt_core.domains.molecules.graphs import (ADD_NODE, EDGE_COLS, SET_EDGE_ATTR, STOP, ActionLayout, FragGraphBatch,
                                                  scatter_logits)

if TYPE_CHECKING:
    from rdkit import Chem

UNSET = -1


# ----- states ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FragState:
    """A (possibly partial) fragment tree; see the module docstring for the conventions."""

    frags: tuple[int, ...] = ()
    edges: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def n_nodes(self) -> int:
        return len(self.frags)

    @property
    def n_set_stems(self) -> int:
        return sum((e[2] >= 0) + (e[3] >= 0) for e in self.edges)

    @property
    def complete(self) -> bool:
        """Non-empty with every stem chosen: the states where Stop is allowed."""
        return bool(self.frags) and all(e[2] >= 0 and e[3] >= 0 for e in self.edges)


def _adjacency(state: FragState, side_mark: tuple[int, int] | None = None) -> list[list[tuple]]:
    """adj[v] = [(w, (stem_v, mark_v, stem_w, mark_w)), ...] for canonical encodings."""
    adj: list[list[tuple]] = [[] for _ in state.frags]
    for e, (u, v, su, sv) in enumerate(state.edges):
        mu, mv = side_mark == (e, 0), side_mark == (e, 1)
        adj[u].append((v, (su, mu, sv, mv)))
        adj[v].append((u, (sv, mv, su, mu)))
    return adj


def _tree_centers(adj: list[list[tuple]]) -> list[int]:
    """The 1 or 2 centres of a tree (leaf peeling); isomorphisms map centres to centres."""
    n = len(adj)
    if n <= 2:
        return list(range(n))
    deg = [len(a) for a in adj]
    layer = [v for v in range(n) if deg[v] <= 1]
    remaining = n
    while remaining > 2:
        remaining -= len(layer)
        nxt = []
        for v in layer:
            for w, _ in adj[v]:
                deg[w] -= 1
                if deg[w] == 1:
                    nxt.append(w)
        layer = nxt
    return layer


def canonical_key(state: FragState, node_mark: int | None = None, side_mark: tuple[int, int] | None = None) -> tuple:
    """A hashable key equal for two states iff they are isomorphic trees (same fragment ids on matched nodes,
    same stems on matched edge ends). AHU encoding rooted at the tree centre(s).

    ``node_mark`` / ``side_mark`` = ``(edge, 0 or 1)`` distinguish one node / one edge end, so keys of marked
    states are equal iff an isomorphism maps the marked element onto the marked element."""
    if not state.frags:
        return ()
    adj = _adjacency(state, side_mark)
    labels = [(f, i == node_mark) for i, f in enumerate(state.frags)]

    def enc(v: int, parent: int) -> tuple:
        return (labels[v], tuple(sorted(lab + (enc(w, v),) for w, lab in adj[v] if w != parent)))

    return min(enc(c, -1) for c in _tree_centers(adj))


def has_trivial_automorphisms(state: FragState) -> bool:
    """True iff the only isomorphism of the state onto itself is the identity (all node orbits singletons;
    in a tree an automorphism fixing every node fixes every edge end too)."""
    keys = [canonical_key(state, node_mark=i) for i in range(len(state.frags))]
    return len(set(keys)) == len(keys)


# ----- the environment ---------------------------------------------------------------------------------------
@dataclass
class _Flat:
    """Batch of states flattened into numpy arrays (the one Python loop every batched method shares)."""

    n: np.ndarray          # [B] nodes per state
    ne: np.ndarray         # [B] edges per state
    frags: np.ndarray      # [N] fragment ids, state after state
    node_off: np.ndarray   # [B] first node of each state in ``frags``
    edges: np.ndarray      # [E, 4] (u, v, stem_u, stem_v), local node ids
    edge_b: np.ndarray     # [E] state of each edge
    edge_pos: np.ndarray   # [E] edge index inside its state


class FragmentEnv:
    """The fragment-tree MDP with a fixed action layout; batched methods take ``list[FragState]``.

    Implements the :class:`~sculpt_core.envs.base.Env` protocol except that states are lists of FragState and
    :meth:`encode` returns a :class:`FragGraphBatch` (graph policies need the graph, not a flat vector).
    """

    def __init__(self, library: FragmentLibrary | None = None, max_frags: int = 9,
                 device: torch.device | str = "cpu") -> None:
        if not (isinstance(max_frags, int) and 1 <= max_frags <= 64):
            raise SculptError(f"max_frags must be an integer in [1, 64], got {max_frags!r}")
        self.library = FragmentLibrary.load() if library is None else library
        self.max_frags = max_frags
        self.device = torch.device(device)
        self.layout = ActionLayout(self.library.n_frags, max_frags)
        self._nstems = np.asarray(self.library.n_stems, dtype=np.int64)
        self._nstems_list = list(self.library.n_stems)
        self._stem_ar = np.arange(MAX_STEMS)
        # plain ints for the per-state Python paths (layout properties are recomputed on every access)
        self._F, self._n_add, self._stop = self.layout.n_frags, self.layout.n_add, self.layout.stop_action
        # the last forward_mask call: (the states, the mask); a roll-out step asks twice for the same states
        self._last_mask: tuple[tuple[FragState, ...], torch.Tensor] | None = None

    # ----- sizes -----------------------------------------------------------------------------------------
    @property
    def n_frags(self) -> int:
        return self.library.n_frags

    @property
    def n_actions(self) -> int:
        return self.layout.n_actions

    @property
    def stop_action(self) -> int:
        return self.layout.stop_action

    @property
    def max_trajectory_length(self) -> int:
        """Actions in the longest trajectory: every node, both stems of every edge, then Stop."""
        return self.max_frags + 2 * (self.max_frags - 1) + 1

    # ----- states ----------------------------------------------------------------------------------------
    def initial_states(self, n: int) -> list[FragState]:
        return [FragState()] * n

    def check_state(self, state: FragState) -> None:
        """Raise SculptError unless ``state`` obeys the conventions (insertion-ordered tree, valid stems)."""
        n = len(state.frags)
        if n > self.max_frags or any(not 0 <= f < self.n_frags for f in state.frags):
            raise SculptError(f"bad fragments {state.frags} (≤ {self.max_frags} ids in [0, {self.n_frags}))")
        if len(state.edges) != max(n - 1, 0):
            raise SculptError(f"a tree of {n} nodes needs {max(n - 1, 0)} edges, got {len(state.edges)}")
        used: set[tuple[int, int]] = set()
        deg = [0] * n
        for e, (u, v, su, sv) in enumerate(state.edges):
            if v != e + 1 or not 0 <= u < v:
                raise SculptError(f"edge {e} must be (u, {e + 1}, ·, ·) with u < {e + 1}, got {(u, v, su, sv)}")
            deg[u] += 1
            deg[v] += 1
            for node, stem in ((u, su), (v, sv)):
                if stem == UNSET:
                    continue
                if not 0 <= stem < self._nstems[state.frags[node]] or (node, stem) in used:
                    raise SculptError(f"edge {e}: stem {stem} invalid or reused on node {node}")
                used.add((node, stem))
        for i in range(n):
            if deg[i] > self._nstems[state.frags[i]]:
                raise SculptError(f"node {i} has degree {deg[i]} > {self._nstems[state.frags[i]]} stems")

    def _flatten(self, states: Sequence[FragState]) -> _Flat:
        B = len(states)
        n = np.fromiter((len(s.frags) for s in states), dtype=np.int64, count=B)
        ne = np.maximum(n - 1, 0)
        frags = np.fromiter(chain.from_iterable(s.frags for s in states), dtype=np.int64, count=int(n.sum()))
        n_e = int(ne.sum())
        edges = np.fromiter(chain.from_iterable(chain.from_iterable(s.edges for s in states)), dtype=np.int64,
                            count=4 * n_e).reshape(n_e, 4)
        node_off = np.zeros(B, dtype=np.int64)
        np.cumsum(n[:-1], out=node_off[1:])
        edge_b = np.repeat(np.arange(B), ne)
        edge_off = np.zeros(B, dtype=np.int64)
        np.cumsum(ne[:-1], out=edge_off[1:])
        edge_pos = np.arange(n_e) - edge_off[edge_b]
        return _Flat(n, ne, frags, node_off, edges, edge_b, edge_pos)

    # ----- dynamics --------------------------------------------------------------------------------------
    def forward_mask(self, states: Sequence[FragState]) -> torch.Tensor:
        """Bool ``[B, n_actions]`` (the fragment environment's rules):
        AddNode(i, ·) iff node i exists, degree(i) < #stems(i) and fewer than max_frags nodes (empty graph:
        row 0 only); SetEdgeAttr(e, c) iff that edge end is unset and stem c is a stem of its fragment not
        used by another edge of the node; Stop iff non-empty and every stem is set.

        A call with the very same state objects as the previous call (FragState is immutable, so the same
        objects have the same mask) returns a copy of that mask instead of recomputing it: a roll-out step
        needs the mask of its states in the policy and again for ε-exploration."""
        last = self._last_mask
        if last is not None and len(last[0]) == len(states) and all(a is b for a, b in zip(last[0], states)):
            return last[1].clone()
        mask = self._forward_mask(states)
        self._last_mask = (tuple(states), mask.clone())
        return mask

    def _forward_mask(self, states: Sequence[FragState]) -> torch.Tensor:
        """:meth:`forward_mask` computed from scratch."""
        fl = self._flatten(states)
        B, M, F, E = len(states), self.max_frags, self.n_frags, self.max_frags - 1
        N = fl.frags.shape[0]
        u, v, su, sv = (fl.edges[:, k] for k in range(4))
        gu, gv = fl.node_off[fl.edge_b] + u, fl.node_off[fl.edge_b] + v  # global node ids
        deg = np.bincount(gu, minlength=N) + np.bincount(gv, minlength=N)
        nst = self._nstems[fl.frags]
        used = np.zeros((N, MAX_STEMS), dtype=bool)
        set_u, set_v = su >= 0, sv >= 0
        used[gu[set_u], su[set_u]] = True
        used[gv[set_v], sv[set_v]] = True

        n_add, n_set = self._n_add, self.layout.n_set
        mask = np.zeros((B, n_add + n_set + 1), dtype=bool)
        # AddNode rows
        node_b = np.repeat(np.arange(B), fl.n)
        node_pos = np.arange(N) - fl.node_off[node_b]
        row_ok = (deg < nst) & (fl.n[node_b] < M)
        add = np.zeros((B, M), dtype=bool)
        add[node_b, node_pos] = row_ok
        add[fl.n == 0, 0] = True
        mask[:, :n_add] = np.repeat(add, F, axis=1)
        # SetEdgeAttr rows
        free_u = (self._stem_ar < nst[gu, None]) & ~used[gu] & ~set_u[:, None]
        free_v = (self._stem_ar < nst[gv, None]) & ~used[gv] & ~set_v[:, None]
        sea = np.zeros((B, E, EDGE_COLS), dtype=bool)
        sea[fl.edge_b, fl.edge_pos] = np.concatenate([free_u, free_v], axis=1)
        mask[:, n_add: n_add + n_set] = sea.reshape(B, E * EDGE_COLS)
        # Stop
        unset = np.bincount(fl.edge_b, weights=(~set_u) | (~set_v), minlength=B)
        mask[:, -1] = (fl.n > 0) & (unset == 0)
        return torch.from_numpy(mask).to(self.device)

    def step(self, states: Sequence[FragState], actions: torch.Tensor | Sequence[int]) -> list[FragState]:
        """Successor of each state; Stop returns the state itself. Invalid actions raise SculptError."""
        acts = actions.tolist() if isinstance(actions, torch.Tensor) else [int(a) for a in actions]
        if len(acts) != len(states):
            raise SculptError(f"{len(states)} states but {len(acts)} actions")
        return [self._step_one(s, a) for s, a in zip(states, acts)]

    def _step_one(self, s: FragState, a: int) -> FragState:
        if a == self._stop:
            if not s.complete:
                raise SculptError(f"Stop is invalid in {s} (empty graph or unset stems)")
            return s
        n = len(s.frags)
        if 0 <= a < self._n_add:
            i, f = divmod(a, self._F)
            if n == 0:
                if i != 0:
                    raise SculptError(f"the first fragment is placed with row 0, got {self.layout.describe(a)}")
                return FragState((f,), ())
            if i >= n or n >= self.max_frags:
                raise SculptError(f"{self.layout.describe(a)} invalid in a graph of {n} nodes (max {self.max_frags})")
            deg = 0
            for e in s.edges:
                deg += (e[0] == i) + (e[1] == i)
            if deg >= self._nstems_list[s.frags[i]]:
                raise SculptError(f"{self.layout.describe(a)}: node {i} has no free stem")
            return FragState(s.frags + (f,), s.edges + ((i, n, UNSET, UNSET),))
        if self._n_add <= a < self._stop:
            e, c = divmod(a - self._n_add, EDGE_COLS)
            side, stem = divmod(c, MAX_STEMS)
            if e >= len(s.edges) or s.edges[e][2 + side] != UNSET:
                raise SculptError(f"{self.layout.describe(a)} invalid in {s} (no such edge, or that end is set)")
            node = s.edges[e][side]
            ok = stem < self._nstems_list[s.frags[node]]
            for x in s.edges:
                if (x[0] == node and x[2] == stem) or (x[1] == node and x[3] == stem):
                    ok = False
            if not ok:
                raise SculptError(f"{self.layout.describe(a)}: stem {stem} is not a free stem of node {node}")
            old = s.edges[e]
            edge = (old[0], old[1], stem, old[3]) if side == 0 else (old[0], old[1], old[2], stem)
            return FragState(s.frags, s.edges[:e] + (edge,) + s.edges[e + 1:])
        raise SculptError(f"action {a} outside [0, {self.layout.n_actions})")

    def build_actions(self, state: FragState) -> list[int]:
        """A forward trajectory (without Stop) that builds exactly ``state``: the nodes in order, then the
        set stems edge by edge (u end first). Useful to replay stored molecules."""
        if not state.frags:
            return []
        lay = self.layout
        acts = [lay.encode(ADD_NODE, 0, state.frags[0])]
        acts += [lay.encode(ADD_NODE, u, state.frags[v]) for u, v, _, _ in state.edges]
        for e, (_, _, su, sv) in enumerate(state.edges):
            acts += [lay.encode(SET_EDGE_ATTR, e, side * MAX_STEMS + stem)
                     for side, stem in ((0, su), (1, sv)) if stem >= 0]
        return acts

    # ----- backward policy -------------------------------------------------------------------------------
    def n_parents(self, states: Sequence[FragState]) -> torch.Tensor:
        """Number of backward actions of each state (long ``[B]``; 0 for s0): set stems, plus leaves whose
        edge has no stem set, plus 1 for a single-node graph."""
        fl = self._flatten(states)
        N = fl.frags.shape[0]
        u, v, su, sv = (fl.edges[:, k] for k in range(4))
        gu, gv = fl.node_off[fl.edge_b] + u, fl.node_off[fl.edge_b] + v
        deg = np.bincount(gu, minlength=N) + np.bincount(gv, minlength=N)
        bare = (su < 0) & (sv < 0)
        per_edge = (su >= 0).astype(np.int64) + (sv >= 0) + bare * ((deg[gu] == 1).astype(np.int64) + (deg[gv] == 1))
        count = np.bincount(fl.edge_b, weights=per_edge, minlength=len(states)).astype(np.int64) + (fl.n == 1)
        return torch.from_numpy(count).to(self.device)

    def log_n_parents(self, states: Sequence[FragState]) -> torch.Tensor:
        """log(#backward actions), float64 ``[B]``; 0 at s0 (no parents) so the value is harmless there.
        The uniform backward policy is its negative."""
        return self.n_parents(states).clamp(min=1).double().log()

    def parents(self, state: FragState) -> list[tuple[FragState, int]]:
        """Every backward action as (parent, forward action with ``step(parent, action) ≅ state``).

        Removing leaf k relabels the other nodes in order (node k's edge is dropped; the result is again an
        insertion-ordered tree), so ``step(parent, action)`` is ``state`` with node k moved last: isomorphic,
        equal to ``state`` exactly when k is the last node. Unsetting a stem is an exact inverse."""
        n = len(state.frags)
        out: list[tuple[FragState, int]] = []
        lay = self.layout
        if n == 1:
            return [(FragState(), lay.encode(ADD_NODE, 0, state.frags[0]))]
        for e, (u, v, su, sv) in enumerate(state.edges):
            for side, stem in ((0, su), (1, sv)):
                if stem != UNSET:
                    edge = list(state.edges[e])
                    edge[2 + side] = UNSET
                    parent = FragState(state.frags, state.edges[:e] + (tuple(edge),) + state.edges[e + 1:])
                    out.append((parent, lay.encode(SET_EDGE_ATTR, e, side * MAX_STEMS + stem)))
        deg = [0] * n
        for u, v, _, _ in state.edges:
            deg[u] += 1
            deg[v] += 1
        for e, (u, v, su, sv) in enumerate(state.edges):
            if su != UNSET or sv != UNSET:
                continue
            for leaf, other in ((u, v), (v, u)):
                if deg[leaf] != 1:
                    continue
                relabel = lambda x: x - (x > leaf)  # noqa: E731
                frags = state.frags[:leaf] + state.frags[leaf + 1:]
                edges = tuple(sorted(((relabel(a), relabel(b), sa, sb)
                                      for j, (a, b, sa, sb) in enumerate(state.edges) if j != e), key=lambda t: t[1]))
                out.append((FragState(frags, edges), lay.encode(ADD_NODE, relabel(other), state.frags[leaf])))
        return out

    # ----- encoding --------------------------------------------------------------------------------------
    def batch_graphs(self, states: Sequence[FragState]) -> FragGraphBatch:
        """Flat graph tensors for a GNN policy (see :class:`FragGraphBatch`); no RDKit."""
        fl = self._flatten(states)
        B = len(states)
        is_empty = fl.n == 0
        nb = np.maximum(fl.n, 1)  # one placeholder node per empty graph
        node_off = np.zeros(B, dtype=np.int64)
        np.cumsum(nb[:-1], out=node_off[1:])
        x = np.full(int(nb.sum()), self.n_frags, dtype=np.int64)
        node_graph = np.repeat(np.arange(B), nb)
        node_pos = np.arange(x.shape[0]) - node_off[node_graph]
        real = ~is_empty[node_graph]
        x[real] = fl.frags
        base = node_off[fl.edge_b]
        gu, gv = base + fl.edges[:, 0], base + fl.edges[:, 1]
        n_e = gu.shape[0]
        edge_index = np.empty((2, 2 * n_e), dtype=np.int64)
        edge_index[0, 0::2], edge_index[1, 0::2] = gu, gv
        edge_index[0, 1::2], edge_index[1, 1::2] = gv, gu
        stems = np.where(fl.edges[:, 2:] < 0, MAX_STEMS, fl.edges[:, 2:])
        edge_stems = np.empty((2 * n_e, 2), dtype=np.int64)
        edge_stems[0::2] = stems
        edge_stems[1::2] = stems[:, ::-1]
        edge_off = np.zeros(B, dtype=np.int64)
        np.cumsum(fl.ne[:-1], out=edge_off[1:])
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        return FragGraphBatch(
            x=t(x), node_graph=t(node_graph), node_pos=t(node_pos), node_offset=t(node_off), n_nodes=t(fl.n),
            is_empty=t(is_empty), edge_index=t(edge_index), edge_stems=t(edge_stems), edge_graph=t(fl.edge_b),
            edge_pos=t(fl.edge_pos), edge_offset=t(edge_off), n_edges=t(fl.ne), layout=self.layout)

    def encode(self, states: Sequence[FragState]) -> FragGraphBatch:
        """Policy input: the graph batch (graph networks consume it; see :func:`scatter_logits`)."""
        return self.batch_graphs(states)

    def scatter_logits(self, batch: FragGraphBatch, stop: torch.Tensor, add_node: torch.Tensor,
                       set_edge: torch.Tensor, mask: torch.Tensor | None = None,
                       fill: float = float("-inf")) -> torch.Tensor:
        """See :func:`scatter_logits`."""
        return scatter_logits(batch, stop, add_node, set_edge, mask, fill)

    # ----- molecules -------------------------------------------------------------------------------------
    def to_mol(self, state: FragState) -> Chem.Mol | None:
        """The sanitized RDKit molecule (README assembly rules), or None if invalid, empty or incomplete.

        Atoms are concatenated in node order (offsets = atom counts of earlier nodes); one single bond per
        junction between the chosen attachment atoms; an atom that gains a bond and carries explicit H
        (bracket atoms: [nH], [NH3+], [SH]...) loses one; then SanitizeMol. Valid only if sanitization and
        the SMILES round trip succeed."""
        out = self._assemble(state, with_smiles=False)
        return None if out is None else out[0]

    def to_mols(self, states: Sequence[FragState]) -> list[Chem.Mol | None]:
        """:meth:`to_mol` of each state, assembling each distinct state once (equal states share one Mol
        object: treat the molecules as read-only)."""
        done: dict[FragState, Chem.Mol | None] = {}
        out = []
        for s in states:
            if s not in done:
                done[s] = self.to_mol(s)
            out.append(done[s])
        return out

    def to_smiles(self, state: FragState) -> str | None:
        """Canonical SMILES of the round-tripped molecule (what any consumer re-parsing it sees), or None."""
        out = self._assemble(state)
        return None if out is None else out[1]

    def _assemble(self, state: FragState, with_smiles: bool = True) -> tuple[Chem.Mol, str | None] | None:
        from rdkit import Chem
        from rdkit.rdBase import BlockLogs

        if not state.complete:
            return None
        lib = self.library
        _block = BlockLogs()  # noqa: F841 (silences RDKit while alive)
        mol = lib.mols[state.frags[0]]
        offsets = [0]
        for f in state.frags[1:]:
            offsets.append(mol.GetNumAtoms())  # atoms placed so far
            mol = Chem.CombineMols(mol, lib.mols[f])
        rw = Chem.RWMol(mol)
        bonded = []
        for u, v, su, sv in state.edges:
            a = offsets[u] + lib.attachments[state.frags[u]][su]
            b = offsets[v] + lib.attachments[state.frags[v]][sv]
            rw.AddBond(a, b, Chem.BondType.SINGLE)
            bonded += (a, b)
        for idx in bonded:
            atom = rw.GetAtomWithIdx(idx)
            nh = atom.GetNumExplicitHs()
            if nh > 0:
                atom.SetNumExplicitHs(nh - 1)
        out = rw.GetMol()
        try:
            Chem.SanitizeMol(out)
            again = Chem.MolFromSmiles(Chem.MolToSmiles(out))
        except Exception:  # RDKit raises several exception types on bad valences/aromaticity
            return None
        if again is None:
            return None
        return out, (Chem.MolToSmiles(again) if with_smiles else None)

    # ----- orbit keys (state identity) -------------------------------------------------------------------
    def canonical_key(self, state: FragState) -> tuple:
        return canonical_key(state)

    def action_orbit_key(self, state: FragState, action: int) -> tuple:
        """Key of ``step(state, action)`` with the element the action created marked (the new node, or the
        edge end whose stem it set). Two (state, action) pairs have equal keys iff an isomorphism of the
        states maps one action onto the other, i.e. they are the same class-level transition."""
        child = self._step_one(state, action)
        kind, row, col = self.layout.decode(action)
        if kind == ADD_NODE:
            return canonical_key(child, node_mark=len(child.frags) - 1)
        if kind == SET_EDGE_ATTR:
            return canonical_key(child, side_mark=(row, col // MAX_STEMS))
        raise SculptError("Stop creates no element; it has no orbit key")


__all__ = ["ADD_NODE", "SET_EDGE_ATTR", "STOP", "UNSET", "FragState", "FragmentEnv", "canonical_key",
           "has_trivial_automorphisms"]
