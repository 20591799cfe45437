"""The fragment environment's fixed action layout and the flat graph batches that graph policies consume.

:class:`ActionLayout` maps a flat action index to (type, row, column) and back (the layout is described in
:mod:`sculpt_core.domains.molecules.env`); :class:`FragGraphBatch` holds a batch of fragment trees as flat node
and directed-edge tensors; :func:`scatter_logits` places per-graph Stop, per-node AddNode and per-edge
SetEdgeAttr logits into the ``[B, n_actions]`` layout, so composition code mixes ``[m, B, A]`` tensors of
any policy unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sculpt_core.domains.molecules.fragments import MAX_STEMS
from sculpt_core.errors import SculptError

#: Columns of one SetEdgeAttr row: MAX_STEMS stems on the first endpoint, then MAX_STEMS on the second.
EDGE_COLS = 2 * MAX_STEMS
ADD_NODE, SET_EDGE_ATTR, STOP = 0, 1, 2


# ----- action layout -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionLayout:
    """Flat action index <-> (type, row, column); see the module docstring for the layout."""

    n_frags: int
    max_frags: int

    @property
    def n_add(self) -> int:
        return self.max_frags * self.n_frags

    @property
    def n_set(self) -> int:
        return (self.max_frags - 1) * EDGE_COLS

    @property
    def n_actions(self) -> int:
        return self.n_add + self.n_set + 1

    @property
    def stop_action(self) -> int:
        return self.n_actions - 1

    def encode(self, kind: int, row: int = 0, col: int = 0) -> int:
        """Flat index of AddNode(row=source node, col=fragment), SetEdgeAttr(row=edge, col=column) or Stop."""
        if kind == STOP:
            return self.stop_action
        if kind == ADD_NODE:
            if not (0 <= row < self.max_frags and 0 <= col < self.n_frags):
                raise SculptError(f"AddNode({row}, {col}) outside the layout "
                                  f"({self.max_frags} nodes, {self.n_frags} fragments)")
            return row * self.n_frags + col
        if kind == SET_EDGE_ATTR:
            if not (0 <= row < self.max_frags - 1 and 0 <= col < EDGE_COLS):
                raise SculptError(f"SetEdgeAttr({row}, {col}) outside the layout "
                                  f"({self.max_frags - 1} edges, {EDGE_COLS} columns)")
            return self.n_add + row * EDGE_COLS + col
        raise SculptError(f"unknown action type {kind!r}")

    def decode(self, index: int) -> tuple[int, int, int]:
        """(type, row, column) of a flat index; Stop decodes to (STOP, 0, 0)."""
        index = int(index)
        if not 0 <= index < self.n_actions:
            raise SculptError(f"action {index} outside [0, {self.n_actions})")
        if index == self.stop_action:
            return STOP, 0, 0
        if index < self.n_add:
            return (ADD_NODE, *divmod(index, self.n_frags))
        return (SET_EDGE_ATTR, *divmod(index - self.n_add, EDGE_COLS))

    def decode_tensor(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vectorised :meth:`decode` of a long tensor: (types, rows, columns)."""
        index = index.long()
        is_add = index < self.n_add
        is_stop = index == self.stop_action
        off = (index - self.n_add).clamp(min=0)
        kind = torch.where(is_add, ADD_NODE, torch.where(is_stop, STOP, SET_EDGE_ATTR))
        row = torch.where(is_add, index // self.n_frags, torch.where(is_stop, 0, off // EDGE_COLS))
        col = torch.where(is_add, index % self.n_frags, torch.where(is_stop, 0, off % EDGE_COLS))
        return kind, row, col

    def describe(self, index: int) -> str:
        kind, row, col = self.decode(index)
        if kind == STOP:
            return "Stop"
        if kind == ADD_NODE:
            return f"AddNode(source={row}, fragment={col})"
        return f"SetEdgeAttr(edge={row}, {'u' if col < MAX_STEMS else 'v'}-stem={col % MAX_STEMS})"


# ----- graph batches for GNN policies ------------------------------------------------------------------------
@dataclass
class FragGraphBatch:
    """A batch of fragment trees as flat tensors (torch_geometric style, no dependency).

    Nodes: ``x[N]`` fragment ids; an empty graph gets ONE placeholder node with id ``n_frags`` (so an
    embedding of size ``n_frags + 1`` reproduces the paper's 73-dim node feature with its empty-graph flag);
    its AddNode logits are the "place the first fragment" row. ``node_graph[N]`` graph of each node,
    ``node_pos[N]`` its index inside the graph (= AddNode row). Per graph: ``node_offset[B]`` (first node
    in the flat arrays), ``n_nodes[B]`` (real nodes, 0 for empty), ``is_empty[B]``.
    Edges: undirected edge k (graph ``edge_graph[k]``, local index ``edge_pos[k]`` = SetEdgeAttr row,
    ``edge_offset[B]``, ``n_edges[B]``) appears twice in ``edge_index[2, 2E]``: column 2k is u->v (first
    endpoint u), column 2k+1 is v->u. ``edge_stems[2E, 2]`` = (stem at the source, stem at the target) of
    each directed column, 6 = unset; :attr:`edge_attr` is its 14-dim one-hot (source endpoint first).
    """

    x: torch.Tensor
    node_graph: torch.Tensor
    node_pos: torch.Tensor
    node_offset: torch.Tensor
    n_nodes: torch.Tensor
    is_empty: torch.Tensor
    edge_index: torch.Tensor
    edge_stems: torch.Tensor
    edge_graph: torch.Tensor
    edge_pos: torch.Tensor
    edge_offset: torch.Tensor
    n_edges: torch.Tensor
    layout: ActionLayout = field(repr=False)

    @property
    def n_graphs(self) -> int:
        return int(self.n_nodes.shape[0])

    @property
    def n_frags(self) -> int:
        return self.layout.n_frags

    @property
    def node_features(self) -> torch.Tensor:
        """One-hot(fragment) + empty-graph flag, ``[N, n_frags + 1]`` float32 (the paper's node feature)."""
        return torch.nn.functional.one_hot(self.x, self.n_frags + 1).float()

    @property
    def edge_attr(self) -> torch.Tensor:
        """``[2E, 14]`` float32: one-hot over (6 stems + unset) at the source, then at the target."""
        return torch.nn.functional.one_hot(self.edge_stems, MAX_STEMS + 1).flatten(1).float()

    @property
    def edge_uv(self) -> torch.Tensor:
        """``[2, E]`` global node indices (u, v) of each undirected edge (the SetEdgeAttr rows)."""
        return self.edge_index[:, 0::2]

    def to(self, device: torch.device | str) -> "FragGraphBatch":
        kw = {k: getattr(self, k).to(device) for k in self.__dataclass_fields__ if k != "layout"}
        return FragGraphBatch(**kw, layout=self.layout)


def scatter_logits(batch: FragGraphBatch, stop: torch.Tensor, add_node: torch.Tensor, set_edge: torch.Tensor,
                   mask: torch.Tensor | None = None, fill: float = float("-inf")) -> torch.Tensor:
    """Place per-graph Stop ``[B]``, per-node AddNode ``[N, F]`` and per-edge SetEdgeAttr ``[E, 12]`` logits
    into the fixed ``[B, n_actions]`` layout (trailing dims after those, shared by all three, are kept). Slots with no node/edge behind them get ``fill``; so do the
    entries where ``mask`` (``[B, A]`` bool, e.g. :meth:`FragmentEnv.forward_mask`) is False. Differentiable."""
    lay = batch.layout
    B, F = batch.n_graphs, lay.n_frags
    N, E = batch.x.shape[0], batch.edge_pos.shape[0]
    tail = tuple(stop.shape[1:])  # optional trailing dims, the same on all three (e.g. one column per label tuple)
    if stop.shape != (B,) + tail or add_node.shape != (N, F) + tail or set_edge.shape != (E, EDGE_COLS) + tail:
        raise SculptError(f"logit shapes must be stop [{B}], add_node [{N}, {F}], set_edge [{E}, {EDGE_COLS}]; "
                          f"got {tuple(stop.shape)}, {tuple(add_node.shape)}, {tuple(set_edge.shape)}")
    dev = add_node.device
    dtype = torch.promote_types(torch.promote_types(stop.dtype, add_node.dtype), set_edge.dtype)
    node_cols = (batch.node_pos * F).unsqueeze(1) + torch.arange(F, device=dev)
    edge_cols = lay.n_add + (batch.edge_pos * EDGE_COLS).unsqueeze(1) + torch.arange(EDGE_COLS, device=dev)
    rows = torch.cat([batch.node_graph.unsqueeze(1).expand_as(node_cols).reshape(-1),
                      batch.edge_graph.unsqueeze(1).expand_as(edge_cols).reshape(-1)])
    cols = torch.cat([node_cols.reshape(-1), edge_cols.reshape(-1)])
    vals = torch.cat([add_node.to(dtype).reshape((-1,) + tail), set_edge.to(dtype).reshape((-1,) + tail)])
    body = torch.full((B, lay.n_actions - 1) + tail, fill, dtype=dtype, device=dev).index_put((rows, cols), vals)
    out = torch.cat([body, stop.to(dtype).unsqueeze(1)], dim=1)
    if mask is not None:
        out = out.masked_fill(~mask.to(dev).reshape(mask.shape + (1,) * len(tail)), fill)
    return out
