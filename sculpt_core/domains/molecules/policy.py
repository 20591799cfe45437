"""β-conditioned graph policy for the fragment environment, in plain PyTorch (no torch_geometric).

Architecture (a CPU-sized cousin of the paper's GraphTransformerGFN):

* node embedding of the fragment id (``n_frags + 1`` rows: the last one is the empty-graph placeholder),
  directed-edge embedding of (stem at the source, stem at the target) (7 values each: 6 stems + unset);
* a *virtual node* per graph that starts as the embedding of the conditioning vector (thermometer of β) and talks to every node in every layer;
* ``n_layers`` rounds of message passing: ``m_{j→i} = act(W [h_j ‖ e_ji])`` summed with ``index_add``,
  ``h_i ← LN(h_i + MLP([h_i ‖ Σ m ‖ g]))``, ``g ← LN(g + MLP([g ‖ mean_i h_i]))``;
* heads: Stop per graph on ``[mean h ‖ g]``; AddNode per node ``[N, F]`` on ``[h_i ‖ g]``; SetEdgeAttr per
  edge ``[E, 12]`` where columns ``c < 6`` (a stem on the edge's first endpoint u) come from the directed
  column u→v, ``[h_u ‖ h_v ‖ e_uv ‖ g]``, and columns ``c ≥ 6`` from v→u with the SAME head; a state log-flow
  head per graph; log Z(cond) as an MLP of the conditioning vector alone.

Every operation is equivariant to the numbering of the nodes, and each stem logit comes from its own
endpoint's point of view, so the policy is invariant to node numbering: the class-level dynamic programme
of :func:`~sculpt_core.domains.molecules.exact.enumerate_states` is exact for it.

Masking: invalid actions are masked BEFORE the log-softmax, which runs jointly over all
action types of a graph (Stop, AddNode, SetEdgeAttr share one normaliser). Masked entries are ``-inf``
after normalisation, i.e. exactly zero probability. The paper fills masked logits with −1000 instead; after
normalisation the two differ by at most e^−1000 per action, so the only behavioural difference is in
composition code that mixes *unmasked* policies, which this project never does (it masks each base policy
first: mixing unmasked logits would let a model's mass on an action that is invalid leak into the
mixture), and masked logsumexp guards keep all-``-inf`` rows from turning into NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import nn

from sculpt_core.domains.molecules.fragments import MAX_STEMS
from sculpt_core.domains.molecules.graphs import EDGE_COLS, FragGraphBatch, scatter_logits
from sculpt_core.errors import SculptError
from sculpt_core.core.nets import mlp, thermometer


@dataclass(frozen=True)
class MolPolicyConfig:
    """Shape of a :class:`MolPolicyNet`. ``beta_low``/``beta_high``/``cond_bins`` define the thermometer
    encoding (32 bins over [0, 96], as the paper); the trained β range lives in the model metadata."""

    n_frags: int = 72
    max_frags: int = 9
    hidden: int = 64
    n_layers: int = 4
    cond_bins: int = 32
    beta_low: float = 0.0
    beta_high: float = 96.0
    #: state-flow head: ``flow_hidden`` units (0 = ``hidden``) × ``flow_layers``; ``flow_depth`` adds a one-hot of
    #: the state's depth (nodes + set stems) to its input, which the mean-pooled embedding does not carry and
    #: log u(s) mostly grows with (a refitted head, :mod:`~sculpt_core.domains.molecules.flow_fit`)
    flow_hidden: int = 0
    flow_layers: int = 2
    flow_depth: bool = False

    def __post_init__(self) -> None:
        for name in ("n_frags", "max_frags", "hidden", "n_layers", "cond_bins", "flow_layers"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise SculptError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.flow_hidden, int) and self.flow_hidden >= 0 and isinstance(self.flow_depth, bool)):
            raise SculptError(f"flow_hidden must be an integer ≥ 0 and flow_depth a boolean, got {self}")
        if self.cond_bins < 2 or not self.beta_low < self.beta_high:
            raise SculptError(f"thermometer needs ≥ 2 bins and beta_low < beta_high, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def max_depth(self) -> int:
        """Deepest state: every node placed and both stems of every edge set."""
        return self.max_frags + 2 * (self.max_frags - 1)


@dataclass
class MolPolicyOutput:
    """Raw per-element outputs of one forward pass (before masking / scattering into the action layout)."""

    stop: torch.Tensor      # [B]
    add_node: torch.Tensor  # [N, F]
    set_edge: torch.Tensor  # [E, 12]
    log_flow: torch.Tensor  # [B] (already includes the log Z(cond) offset, see MolPolicyNet.forward)


class MessagePassingLayer(nn.Module):
    """One message-passing round with the virtual node (pre-activation residual blocks, LayerNorm after)."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.msg = nn.Linear(2 * h, h)
        self.upd = mlp(3 * h, h, 1, h)
        self.glob = mlp(2 * h, h, 1, h)
        self.norm_h = nn.LayerNorm(h)
        self.norm_g = nn.LayerNorm(h)
        self.act = nn.LeakyReLU()

    def forward(self, h: torch.Tensor, e: torch.Tensor, g: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                node_graph: torch.Tensor, inv_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.act(self.msg(torch.cat([h[src], e], dim=1)))
        agg = torch.zeros_like(h).index_add_(0, dst, m)
        h = self.norm_h(h + self.upd(torch.cat([h, agg, g[node_graph]], dim=1)))
        pooled = torch.zeros_like(g).index_add_(0, node_graph, h) * inv_count
        g = self.norm_g(g + self.glob(torch.cat([g, pooled], dim=1)))
        return h, g

    def forward_factored(self, h: torch.Tensor, e_tab: torch.Tensor, stem_pair: torch.Tensor, g: torch.Tensor,
                         src: torch.Tensor, dst: torch.Tensor, node_graph: torch.Tensor,
                         inv_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with each first linear map split by input block (same weights, same maths).

        ``W [h_src ‖ e] = (W_h h)[src] + W_e e``: the node block runs on the N nodes instead of the 2E directed
        edges, and the edge embeddings take only the 49 values ``e_tab`` (stem pair ``stem_pair`` = 7·s_src +
        s_dst); the graph block of the update runs once per graph. About half the multiply-adds of
        :meth:`forward`; results agree to float rounding (the sums are grouped differently)."""
        H = h.shape[1]
        w, b = self.msg.weight, self.msg.bias
        m = self.act(nnf.linear(h, w[:, :H]).index_select(0, src) + nnf.linear(e_tab, w[:, H:], b).index_select(0, stem_pair))
        agg = torch.zeros_like(h).index_add_(0, dst, m)
        lin = self.upd[0]
        pre = nnf.linear(torch.cat([h, agg], dim=1), lin.weight[:, :2 * H]) + \
            nnf.linear(g, lin.weight[:, 2 * H:], lin.bias).index_select(0, node_graph)
        h = self.norm_h(h + self.upd[1:](pre))
        pooled = torch.zeros_like(g).index_add_(0, node_graph, h) * inv_count
        g = self.norm_g(g + self.glob(torch.cat([g, pooled], dim=1)))
        return h, g


class MolPolicyNet(nn.Module):
    """Graph network with Stop / AddNode / SetEdgeAttr / log-flow heads and a log Z(cond) MLP."""

    def __init__(self, cfg: MolPolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, F = cfg.hidden, cfg.n_frags
        self.node_emb = nn.Embedding(F + 1, h)
        self.stem_src = nn.Embedding(MAX_STEMS + 1, h)
        self.stem_dst = nn.Embedding(MAX_STEMS + 1, h)
        self.cond2h = mlp(cfg.cond_bins, h, 1, h)
        self.layers = nn.ModuleList(MessagePassingLayer(h) for _ in range(cfg.n_layers))
        self.stop_head = mlp(2 * h, h, 1, 1)
        self.add_head = mlp(2 * h, h, 1, F)
        self.edge_head = mlp(4 * h, h, 1, MAX_STEMS)
        # the flow head reads the trunk DETACHED (see forward) so DB gradients never move the policy
        depth_dim = cfg.max_depth + 1 if cfg.flow_depth else 0
        self.flow_head = mlp(2 * h + depth_dim, cfg.flow_hidden or h, cfg.flow_layers, 1)
        self.log_z_net = mlp(cfg.cond_bins, h, 2, 1)

    # ----- conditioning ----------------------------------------------------------------------------------
    def encode_beta(self, beta: torch.Tensor) -> torch.Tensor:
        """Thermometer encoding ``[..., cond_bins]`` of β (β = beta_high → all ones)."""
        return thermometer(beta, self.cfg.cond_bins, self.cfg.beta_low, self.cfg.beta_high)

    def log_z(self, cond: torch.Tensor) -> torch.Tensor:
        """log Z(cond) ``[B]`` from the conditioning vectors ``[B, cond_bins]``."""
        return self.log_z_net(cond).squeeze(-1)

    # ----- forward -----------------------------------------------------------------------------------------
    def flow_input(self, batch: FragGraphBatch, graph_emb: torch.Tensor) -> torch.Tensor:
        """What the flow head reads: the detached graph embedding, plus the depth one-hot when configured."""
        x = graph_emb.detach()
        if not self.cfg.flow_depth:
            return x
        set_stems = (batch.edge_stems[0::2] != MAX_STEMS).sum(1)  # column 2k holds both stems of edge k
        depth = batch.n_nodes.to(x.device).clone().index_add_(0, batch.edge_graph, set_stems)
        return torch.cat([x, nnf.one_hot(depth.clamp(max=self.cfg.max_depth), self.cfg.max_depth + 1).to(x.dtype)], 1)

    def _check(self, batch: FragGraphBatch, cond: torch.Tensor) -> None:
        B = batch.n_graphs
        if cond.shape != (B, self.cfg.cond_bins):
            raise SculptError(f"cond must be [{B}, {self.cfg.cond_bins}], got {tuple(cond.shape)}")
        if batch.n_frags != self.cfg.n_frags:
            raise SculptError(f"the network was built for {self.cfg.n_frags} fragments, the batch has {batch.n_frags}")

    def forward(self, batch: FragGraphBatch, cond: torch.Tensor) -> MolPolicyOutput:
        """Raw outputs for a graph batch; ``cond`` is ``[B, cond_bins]`` (one row per graph).

        The log-flow is parameterised as ``log Z(cond).detach() + head(...)`` so the head learns
        log u(s) = log F(s) − log Z, which is O(10) instead of O(β·log R) and starts near its s0 value.

        Computed with every first linear map split by input block (node, edge-stem, graph parts; see
        :meth:`MessagePassingLayer.forward_factored`): the same function as :meth:`forward_reference`, the
        direct transcription, with about half the multiply-adds; the two agree to float rounding (tested)."""
        self._check(batch, cond)
        B, H = batch.n_graphs, self.cfg.hidden
        src, dst, node_graph = batch.edge_index[0], batch.edge_index[1], batch.node_graph
        h = self.node_emb(batch.x)
        n_st = self.stem_src.weight.shape[0]
        e_tab = (self.stem_src.weight.unsqueeze(1) + self.stem_dst.weight.unsqueeze(0)).reshape(n_st * n_st, H)
        stem_pair = batch.edge_stems[:, 0] * n_st + batch.edge_stems[:, 1]
        g = self.cond2h(cond)
        count = torch.zeros(B, 1, device=h.device, dtype=h.dtype).index_add_(
            0, node_graph, torch.ones(h.shape[0], 1, device=h.device, dtype=h.dtype))
        inv_count = 1.0 / count.clamp(min=1.0)
        for layer in self.layers:
            h, g = layer.forward_factored(h, e_tab, stem_pair, g, src, dst, node_graph, inv_count)
        pooled = torch.zeros_like(g).index_add_(0, node_graph, h) * inv_count
        graph_emb = torch.cat([pooled, g], dim=1)
        stop = self.stop_head(graph_emb).squeeze(1)
        w, b = self.add_head[0].weight, self.add_head[0].bias
        add_node = self.add_head[1:](nnf.linear(h, w[:, :H]) + nnf.linear(g, w[:, H:], b).index_select(0, node_graph))
        # edge head on [h_src ‖ h_dst ‖ e ‖ g]: node blocks on the N nodes, stems on the 49 pairs, g per graph
        w, b = self.edge_head[0].weight, self.edge_head[0].bias
        pre = nnf.linear(h, w[:, :H]).index_select(0, src) + nnf.linear(h, w[:, H:2 * H]).index_select(0, dst) + \
            nnf.linear(e_tab, w[:, 2 * H:3 * H]).index_select(0, stem_pair) + \
            nnf.linear(g, w[:, 3 * H:], b).index_select(0, node_graph.index_select(0, src))
        set_edge = self.edge_head[1:](pre).reshape(-1, EDGE_COLS)  # rows (u→v, v→u) concatenated = [E, 12]
        log_flow = self.log_z(cond).detach() + self.flow_head(self.flow_input(batch, graph_emb)).squeeze(1)
        return MolPolicyOutput(stop, add_node, set_edge, log_flow)

    def forward_reference(self, batch: FragGraphBatch, cond: torch.Tensor) -> MolPolicyOutput:
        """:meth:`forward` written directly from the architecture (concatenate, then one linear map): the
        reference the factored pass is tested against."""
        self._check(batch, cond)
        B = batch.n_graphs
        src, dst = batch.edge_index[0], batch.edge_index[1]
        h = self.node_emb(batch.x)
        e = self.stem_src(batch.edge_stems[:, 0]) + self.stem_dst(batch.edge_stems[:, 1])
        g = self.cond2h(cond)
        count = torch.zeros(B, 1, device=h.device, dtype=h.dtype).index_add_(
            0, batch.node_graph, torch.ones(h.shape[0], 1, device=h.device, dtype=h.dtype))
        inv_count = 1.0 / count.clamp(min=1.0)
        for layer in self.layers:
            h, g = layer(h, e, g, src, dst, batch.node_graph, inv_count)
        pooled = torch.zeros_like(g).index_add_(0, batch.node_graph, h) * inv_count
        graph_emb = torch.cat([pooled, g], dim=1)
        stop = self.stop_head(graph_emb).squeeze(1)
        add_node = self.add_head(torch.cat([h, g[batch.node_graph]], dim=1))
        # directed columns: 2k is u→v (stems of u: columns 0..5), 2k+1 is v→u (stems of v: columns 6..11)
        edge_g = g[batch.node_graph[src]]
        per_dir = self.edge_head(torch.cat([h[src], h[dst], e, edge_g], dim=1))  # [2E, 6]
        set_edge = per_dir.reshape(-1, EDGE_COLS)  # rows (u→v, v→u) concatenated = [E, 12]
        log_flow = self.log_z(cond).detach() + self.flow_head(self.flow_input(batch, graph_emb)).squeeze(1)
        return MolPolicyOutput(stop, add_node, set_edge, log_flow)

    def masked_log_probs(self, batch: FragGraphBatch, out: MolPolicyOutput, mask: torch.Tensor) -> torch.Tensor:
        """Normalised log-probs ``[B, n_actions]`` over the VALID actions (joint over all action types);
        ``-inf`` where ``mask`` is False. Differentiable."""
        logits = scatter_logits(batch, out.stop, out.add_node, out.set_edge, mask=mask, fill=float("-inf"))
        return torch.log_softmax(logits, dim=-1)


__all__ = ["MessagePassingLayer", "MolPolicyConfig", "MolPolicyNet", "MolPolicyOutput"]
