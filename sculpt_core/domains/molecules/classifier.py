"""The label classifier of classifier guidance on fragment molecules, in plain PyTorch.

A smaller counterpart of the paper's graph-transformer classifier: the same conditioning, non-terminal and
terminal heads; the action head is Sculpt's addition.

Trunk: the message-passing layer of the base policy (:class:`~sculpt_core.domains.molecules.policy.MessagePassingLayer`, virtual
node per graph), width ~64, 3 layers. The virtual node starts from the graph conditioning
``[logit α · (1 − terminal), terminal]``: a terminal graph sees α-input 0, so the terminal head cannot depend
on α (α enters the terminal joint only through label y2's likelihood); the flag lets one trunk serve both
roles. Graph embedding = ``[mean-pool(nodes) ‖ virtual node]``.

Heads (K = m^n label tuples, row-major over (y_1..y_n)):

- non-terminal: the JOINT log Q_N(y_1..y_n | s) = log-softmax of ``Linear([emb ‖ logit α])`` (K−1 logits + a
  constant 0; not factorised, since the labels are dependent given a non-terminal state);
- terminal: log Q_T(y = i | x), m-way (m−1 logits + 0); the terminal joint factorises and label y_2 takes the
  α-likelihood of eq. 7 (:func:`~sculpt_core.core.labels.terminal_joint`);
- mixture head (optional, trained by the "chain" objective): log P(i | s), the posterior of the generating model
  given that its trajectory passes through s, the weights guidance mixes the bases with;
- action head (optional, the *fast* guidance path): log Q(y_1..y_n | s, a) ≈ log Q_N(y | s'_a) for EVERY
  action a of s from s's own embedding, so guidance needs no successor graphs:
  AddNode(i, f) rank-r bilinear in an MLP of ``[h_i ‖ g ‖ logit α]`` and a learned vector of fragment f
  (all N × F AddNode actions of a batch cost one small einsum), SetEdgeAttr(e, c) an MLP of the directed edge
  ``[h_end ‖ h_other ‖ e ‖ g ‖ logit α]`` plus an embedding of the stem; the K−1 outputs are added to the
  state's non-terminal logits (a residual: an action that tells nothing new leaves Q unchanged). The Stop
  column is the terminal head (guidance at ⊤ is log Q_T(y | x) − log Q_N(y | x), never 0).

Every operation is equivariant to node numbering, so the class-level DP over enumerated states is exact for
guided policies built on it (as for the base policy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from sculpt_core.core.checkpoint import check_meta_numbers, load_checkpoint, load_state_dict_checked, network_payload, save_checkpoint, stored_config
from sculpt_core.domains.molecules.fragments import MAX_STEMS
from sculpt_core.domains.molecules.env import FragmentEnv, FragState
from sculpt_core.domains.molecules.graphs import EDGE_COLS, FragGraphBatch, scatter_logits
from sculpt_core.domains.molecules.model import library_from_dict, library_to_dict
from sculpt_core.errors import SculptError
from sculpt_core.core.nets import mlp
from sculpt_core.domains.molecules.policy import MessagePassingLayer

CLASSIFIER_KIND = "sculpt.mol_classifier"
#: Manifest section listing the shipped molecule classifiers.
MANIFEST_SECTION = "mol_classifiers"

#: Maps a joint ``[R, m, ..., m]`` (n label axes) to one log-value per row ``[R]`` (e.g. the observed labels).
Reducer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MolClassifierConfig:
    """Shape of a :class:`MolClassifier` (``n_frags``/``max_frags`` must match the base models' library)."""

    n_frags: int = 72
    max_frags: int = 9
    n_models: int = 2
    n_labels: int = 2
    alpha_cond: bool = False
    hidden: int = 64
    n_layers: int = 3
    action_head: bool = True
    action_rank: int = 16
    mixture_head: bool = False  # log P(i | s), the mixture weights of guidance (trained by the "chain" objective)

    def __post_init__(self) -> None:
        for name in ("n_frags", "max_frags", "hidden", "n_layers", "action_rank"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise SculptError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.n_models, int) and self.n_models >= 2):
            raise SculptError(f"a classifier needs at least two base models, got {self.n_models!r}")
        if not (isinstance(self.n_labels, int) and self.n_labels >= 1):
            raise SculptError(f"n_labels must be a positive integer, got {self.n_labels!r}")
        if self.alpha_cond and (self.n_models != 2 or self.n_labels != 2):
            raise SculptError("α-conditioning is defined for two models and two labels (eq. 7)")
        if self.n_models ** self.n_labels > 1024:
            raise SculptError("too many label combinations (m^n > 1024)")

    @property
    def n_joint(self) -> int:
        return self.n_models ** self.n_labels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClassifierEmbedding:
    """Trunk outputs of one batch: node states ``h [N, H]``, virtual nodes ``g [B, H]``, graph embedding
    ``[B, 2H]``, directed edge embeddings ``e [2E, H]``, the α input ``la [B, 1]`` (0 for terminal graphs)."""

    batch: FragGraphBatch
    h: torch.Tensor
    g: torch.Tensor
    graph: torch.Tensor
    e: torch.Tensor
    la: torch.Tensor


class MolClassifier(nn.Module):
    """Joint non-terminal / factorised terminal label classifier with an optional action-level head."""

    def __init__(self, cfg: MolClassifierConfig, env: FragmentEnv) -> None:
        super().__init__()
        if env.n_frags != cfg.n_frags or env.max_frags != cfg.max_frags:
            raise SculptError(f"classifier built for {cfg.n_frags} fragments / {cfg.max_frags} nodes, the environment "
                              f"has {env.n_frags} / {env.max_frags}")
        self.cfg = cfg
        self.env = env
        h, F, K, m = cfg.hidden, cfg.n_frags, cfg.n_joint, cfg.n_models
        self.node_emb = nn.Embedding(F + 1, h)
        self.stem_src = nn.Embedding(MAX_STEMS + 1, h)
        self.stem_dst = nn.Embedding(MAX_STEMS + 1, h)
        self.cond2h = mlp(2, h, 1, h)
        self.layers = nn.ModuleList(MessagePassingLayer(h) for _ in range(cfg.n_layers))
        self.nonterminal_head = nn.Linear(2 * h + 1, K - 1)
        self.terminal_head = nn.Linear(2 * h, m - 1)
        if cfg.mixture_head:
            self.mixture_head = nn.Linear(2 * h, m - 1)
        if cfg.action_head:
            r = cfg.action_rank
            self.add_pre = mlp(2 * h + 1, h, 1, (K - 1) * (r + 1))
            self.frag_emb = nn.Embedding(F, r)
            self.frag_bias = nn.Embedding(F, K - 1)
            self.edge_pre = nn.Linear(4 * h + 1, h)
            self.stem_emb = nn.Embedding(MAX_STEMS, h)
            self.edge_out = mlp(h, h, 1, K - 1)
        self.act = nn.LeakyReLU()

    # ----- shapes ----------------------------------------------------------------------------------------
    @property
    def joint_shape(self) -> tuple[int, ...]:
        return (self.cfg.n_models,) * self.cfg.n_labels

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _joint(self, logits: torch.Tensor) -> torch.Tensor:
        """K−1 logits + constant 0 → normalised log joint ``[R, m, ..., m]``."""
        full = torch.cat([logits, torch.zeros_like(logits[:, :1])], 1)
        return torch.log_softmax(full, 1).reshape((len(full),) + self.joint_shape)

    def _logit_alpha(self, logit_alpha: torch.Tensor | float | None, n: int) -> torch.Tensor:
        if logit_alpha is None or not self.cfg.alpha_cond:
            return torch.zeros(n, device=self.device)
        return torch.as_tensor(logit_alpha, dtype=torch.float32, device=self.device).reshape(-1).expand(n)

    # ----- trunk -----------------------------------------------------------------------------------------
    def embed(self, batch: FragGraphBatch, logit_alpha: torch.Tensor, terminal: torch.Tensor) -> ClassifierEmbedding:
        """Trunk on a graph batch; ``logit_alpha`` ``[B]`` (ignored where ``terminal`` ``[B]`` is True)."""
        B = batch.n_graphs
        if batch.n_frags != self.cfg.n_frags:
            raise SculptError(f"the classifier was built for {self.cfg.n_frags} fragments, the batch has {batch.n_frags}")
        t = terminal.to(self.device).float().reshape(B)
        la = (logit_alpha.to(self.device).float().reshape(B) * (1.0 - t)).unsqueeze(1)
        src, dst = batch.edge_index[0], batch.edge_index[1]
        h = self.node_emb(batch.x)
        e = self.stem_src(batch.edge_stems[:, 0]) + self.stem_dst(batch.edge_stems[:, 1])
        g = self.cond2h(torch.cat([la, t.unsqueeze(1)], 1))
        count = torch.zeros(B, 1, device=h.device).index_add_(0, batch.node_graph, torch.ones(h.shape[0], 1, device=h.device))
        inv_count = 1.0 / count.clamp(min=1.0)
        for layer in self.layers:
            h, g = layer(h, e, g, src, dst, batch.node_graph, inv_count)
        pooled = torch.zeros_like(g).index_add_(0, batch.node_graph, h) * inv_count
        return ClassifierEmbedding(batch, h, g, torch.cat([pooled, g], 1), e, la)

    def embed_states(self, states: Sequence[FragState], logit_alpha: torch.Tensor | float | None,
                     terminal: bool | torch.Tensor) -> ClassifierEmbedding:
        n = len(states)
        if n == 0:
            raise SculptError("no states given")
        batch = self.env.batch_graphs(states).to(self.device)
        term = torch.as_tensor(terminal, dtype=torch.bool, device=self.device).reshape(-1).expand(n)
        return self.embed(batch, self._logit_alpha(logit_alpha, n), term)

    # ----- heads -----------------------------------------------------------------------------------------
    def nonterminal_logits(self, emb: ClassifierEmbedding) -> torch.Tensor:
        return self.nonterminal_head(torch.cat([emb.graph, emb.la], 1))

    def joint_from_embedding(self, emb: ClassifierEmbedding) -> torch.Tensor:
        """log Q_N(y_1..y_n | s) ``[B, m, ..., m]``."""
        return self._joint(self.nonterminal_logits(emb))

    def terminal_from_embedding(self, emb: ClassifierEmbedding) -> torch.Tensor:
        """log Q_T(y = i | x) ``[B, m]``."""
        logits = self.terminal_head(emb.graph)
        return torch.log_softmax(torch.cat([logits, torch.zeros_like(logits[:, :1])], 1), 1)

    def mixture_from_embedding(self, emb: ClassifierEmbedding) -> torch.Tensor | None:
        """log P(i | s) ``[B, m]``: which base model's trajectory passes through s (None without the head)."""
        if not self.cfg.mixture_head:
            return None
        logits = self.mixture_head(emb.graph)
        return torch.log_softmax(torch.cat([logits, torch.zeros_like(logits[:, :1])], 1), 1)

    def log_mixture_weights(self, states: Sequence[FragState], logit_alpha: torch.Tensor | float | None = None
                            ) -> torch.Tensor | None:
        """log P(i | s) ``[B, m]`` of non-terminal states (None without a mixture head: use the y1-marginal)."""
        if not self.cfg.mixture_head:
            return None
        return self.mixture_from_embedding(self.embed_states(states, logit_alpha, False))

    def log_q_nonterminal(self, states: Sequence[FragState], logit_alpha: torch.Tensor | float | None = None) -> torch.Tensor:
        """log Q_N(y_1..y_n | s): ``[B, m, ..., m]``, normalised over all tuples."""
        return self.joint_from_embedding(self.embed_states(states, logit_alpha, False))

    def log_q_terminal_single(self, states: Sequence[FragState]) -> torch.Tensor:
        """log Q_T(y = i | x): ``[B, m]``."""
        return self.terminal_from_embedding(self.embed_states(states, None, True))

    # ----- action head (fast guidance) ---------------------------------------------------------------------
    def _require_action_head(self) -> None:
        if not self.cfg.action_head:
            raise SculptError("this classifier has no action head; use exact successor scoring")

    def _add_rows(self, emb: ClassifierEmbedding, nodes: torch.Tensor, frags: torch.Tensor | None) -> torch.Tensor:
        """Residual K−1 logits of AddNode at global ``nodes``: for the given ``frags`` ``[R]`` → ``[R, K−1]``,
        or for every fragment (``frags`` None) → ``[R, F, K−1]``.

        Rank-r bilinear in (node context, fragment): Σ_r A_kr(node) B_r(f) + a_k(node) + c_k(f), with A, a from
        an MLP of ``[h_i ‖ g ‖ logit α]`` and B, c learned per fragment: cheap enough to score all
        N × F AddNode actions of a batch in one pass."""
        graph = emb.batch.node_graph[nodes]
        K1, r = self.cfg.n_joint - 1, self.cfg.action_rank
        pre = self.add_pre(torch.cat([emb.h[nodes], emb.g[graph], emb.la[graph]], 1)).reshape(-1, K1, r + 1)
        coef, bias = pre[:, :, :r], pre[:, :, r]
        if frags is None:
            return torch.einsum("nkr,fr->nfk", coef, self.frag_emb.weight) + bias.unsqueeze(1) \
                + self.frag_bias.weight.unsqueeze(0)
        return torch.einsum("nkr,nr->nk", coef, self.frag_emb(frags)) + bias + self.frag_bias(frags)

    def _edge_rows(self, emb: ClassifierEmbedding, cols: torch.Tensor, stems: torch.Tensor | None) -> torch.Tensor:
        """Residual logits of SetEdgeAttr on directed edge columns ``cols`` (stem chosen at the column's
        source node) for the given ``stems`` ``[R]`` → ``[R, K−1]`` or every stem → ``[R, 6, K−1]``."""
        src, dst = emb.batch.edge_index[0, cols], emb.batch.edge_index[1, cols]
        graph = emb.batch.node_graph[src]
        pre = self.edge_pre(torch.cat([emb.h[src], emb.h[dst], emb.e[cols], emb.g[graph], emb.la[graph]], 1))
        if stems is None:
            z = self.act(pre.unsqueeze(1) + self.stem_emb.weight.unsqueeze(0))
        else:
            z = self.act(pre + self.stem_emb(stems))
        return self.edge_out(z)

    def action_joint(self, emb: ClassifierEmbedding, actions: torch.Tensor, graphs: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """log Q(y_1..y_n | s, a) ``[P, m, ..., m]`` for non-stop ``actions`` ``[P]`` taken in graphs ``graphs``
        ``[P]`` of the batch (default: one action per graph). Used for training on observed transitions."""
        self._require_action_head()
        batch = emb.batch
        b = torch.arange(batch.n_graphs, device=self.device) if graphs is None else graphs.to(self.device)
        kind, row, col = self.env.layout.decode_tensor(actions.to(self.device))
        if kind.shape != b.shape:
            raise SculptError(f"{b.numel()} graphs but {kind.numel()} actions")
        if (kind == 2).any():
            raise SculptError("the action head scores moves; Stop uses the terminal head")
        base = self.nonterminal_logits(emb)[b]
        is_add = kind == 0
        out = base.clone()
        if is_add.any():
            nodes = batch.node_offset[b[is_add]] + row[is_add]
            out[is_add] = base[is_add] + self._add_rows(emb, nodes, col[is_add])
        if (~is_add).any():
            sel = ~is_add
            cols = 2 * (batch.edge_offset[b[sel]] + row[sel]) + torch.div(col[sel], MAX_STEMS, rounding_mode="floor")
            out[sel] = base[sel] + self._edge_rows(emb, cols, col[sel] % MAX_STEMS)
        return self._joint(out)

    def action_joint_table(self, emb: ClassifierEmbedding) -> torch.Tensor:
        """log Q(y_1..y_n | s, a) flattened over label tuples for every move ``[B, A, K]`` (Stop column and slots
        without a node/edge: −inf; no mask applied): the successors' joints the chain objective backs up."""
        return self.action_values(emb, lambda joint: joint.flatten(1))

    def action_values(self, emb: ClassifierEmbedding, reduce: Reducer) -> torch.Tensor:
        """``reduce(log Q(y | s, a))`` for every move of every graph in the fixed layout ``[B, A]`` (Stop column
        and slots without a node/edge: −inf; no mask applied)."""
        self._require_action_head()
        batch = emb.batch
        K1 = self.cfg.n_joint - 1
        base = self.nonterminal_logits(emb)  # [B, K-1]
        nodes = torch.arange(batch.x.shape[0], device=self.device)
        add = base[batch.node_graph].unsqueeze(1) + self._add_rows(emb, nodes, None)  # [N, F, K-1]
        add_r = reduce(self._joint(add.reshape(-1, K1)))
        tail = tuple(add_r.shape[1:])  # () for one value per move, (K,) for the whole joint
        add_v = add_r.reshape((add.shape[0], -1) + tail)
        n_dir = batch.edge_index.shape[1]
        if n_dir:
            cols = torch.arange(n_dir, device=self.device)
            edge = base[batch.node_graph[batch.edge_index[0]]].unsqueeze(1) + self._edge_rows(emb, cols, None)  # [2E, 6, K-1]
            edge_v = reduce(self._joint(edge.reshape(-1, K1))).reshape((-1, EDGE_COLS) + tail)  # [E, 12]: u-stems then v-stems
        else:
            edge_v = torch.zeros((0, EDGE_COLS) + tail, device=self.device)
        stop = torch.full((batch.n_graphs,) + tail, float("-inf"), device=self.device)
        return scatter_logits(batch, stop, add_v, edge_v)


# ----- persistence ---------------------------------------------------------------------------------------------------
def save_mol_classifier(path: str | Path, net: MolClassifier, base_names: Sequence[str], meta: dict[str, Any]) -> Path:
    """Weights + config + fragment library + base names + metadata (β, steps, seconds, …), written atomically."""
    return save_checkpoint(path, CLASSIFIER_KIND, {
        **network_payload(net),
        "library": library_to_dict(net.env.library),
        "bases": [str(b) for b in base_names],
        "meta": dict(meta),
    })


def load_mol_classifier(path: str | Path, device: torch.device | str | None = None
                        ) -> tuple[MolClassifier, list[str], dict[str, Any]]:
    """(classifier, base names, metadata) from a checkpoint (``weights_only``; SculptError when bad)."""
    data = load_checkpoint(path, CLASSIFIER_KIND, required=("config", "state_dict", "library", "bases"))
    cfg = stored_config(path, data, lambda c: MolClassifierConfig(**c), "classifier")
    lib = library_from_dict(data["library"], str(path))
    if lib.n_frags != cfg.n_frags:
        raise SculptError(f"{path}: library has {lib.n_frags} fragments, the classifier {cfg.n_frags}")
    net = MolClassifier(cfg, FragmentEnv(lib, max_frags=cfg.max_frags))
    load_state_dict_checked(net, data["state_dict"], path)
    if not isinstance(data.get("meta", {}), dict):
        raise SculptError(f"{path}: metadata is not a dictionary")
    meta = data.get("meta", {})
    check_meta_numbers(path, meta, {"beta": "nonnegative", "steps": "count", "seconds": "nonnegative"})
    fps = meta.get("base_fingerprints")
    if fps is not None and not (isinstance(fps, (list, tuple)) and all(isinstance(f, str) for f in fps)):
        raise SculptError(f"{path}: 'base_fingerprints' must be a list of strings")
    net.eval()
    if device is not None:
        net.to(device)
    return net, [str(b) for b in data["bases"]], dict(data.get("meta", {}))


__all__ = ["CLASSIFIER_KIND", "MANIFEST_SECTION", "ClassifierEmbedding", "MolClassifier", "MolClassifierConfig",
           "Reducer", "load_mol_classifier", "save_mol_classifier"]
