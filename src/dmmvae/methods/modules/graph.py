"""mmAAVI's guidance graph and hybrid decoders, for any VAE variant (``guidance_graph``).

One node per feature of every modality, an edge per linked feature pair of the preprocessed
file (:mod:`dmmvae.data.links`: a gene and the peaks over its promoter/body, a protein and its
gene) plus self-loops. A one-layer graph encoder turns free node vectors ``E`` into feature
embeddings ``V = D^-1/2 (A + I) D^-1/2 E`` (``n_latent`` dims), so linked features share their
embedding (``graph_norm: target`` weighs an edge by ``1/sqrt`` of its target's degree only, as
scglue's ``normalize_edges(method="keepvar")``; ``graph_init: zero`` starts ``E`` at zero, as
scglue's ``GraphEncoder``). Each decoder becomes hybrid: its MLP's location head plus ``s_m z V_m^T + b_m`` (the
cell's code dotted with the modality's feature embeddings; ``graph_decoder: embedding`` drops
the MLP part; ``graph_decoder: glue`` is GLUE's decoder and graph encoder in full, below). A
latent direction that raises a gene then raises its linked
peaks, so cells of two modalities seen apart must take the same codes to explain linked
features. The graph term (``graph_weight`` x the mean logistic loss of ``v_i . v_j``, linked
pairs as positives and ``graph_negatives`` random pairs per positive as negatives, x the number
of features, so that it is on the scale of a cell's summed reconstruction) keeps linked
embeddings close; ``graph_sampling: glue`` draws its pairs as scglue does (each link both ways
and every self-loop as positives; per positive ``graph_negatives`` negatives with the same
source and a target drawn by its link degree, never a linked pair); ``graph_batches: b`` gives each
training step a ``1/b`` share of those positives (drawn with replacement) with their negatives,
as scglue splits its graph epoch into ``GRAPH_BATCHES = 32`` batches (default 1: every pair in
every step). Without links the graph has self-loops only (plain embedding decoders).

``graph_decoder: glue`` follows scglue 0.4.1 (``GraphEncoder``, ``NBDataDecoder`` and
``SCGLUEModel.compute_losses``): the graph encoder is variational, ``V ~ N(loc(H), softplus(
std(H)))`` with ``H`` the graph convolution above and ``loc`` / ``std`` linear heads shared by
all nodes; training decodes from one draw of ``V`` per step, shared by every decoder and the graph term
(scglue's ``vsamp``; evaluation from its mean), the graph term is
GLUE's ``g_nll + g_kl`` (the KL of ``V`` to N(0, I), summed over dimensions, averaged over
nodes and divided by their number), and each feature has its own scale ``softplus(s_f)``
(GLUE's ``scale_lin``) instead of one per modality.

:class:`GuidanceGraph` is a mixin: ``class MyVAE(GuidanceGraph, MultimodalVAE)`` with
``**GRAPH_DEFAULTS`` in ``DEFAULTS`` and ``self.add_graph_term(out)`` in ``loss``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the parameters the mixin adds to a model's DEFAULTS
GRAPH_DEFAULTS: dict[str, Any] = {
    "guidance_graph": False,  # feature graph of linked features + hybrid decoders
    "graph_weight": 0.1,  # weight of the graph term (x number of features, see module doc)
    "graph_negatives": 1,  # random pairs per linked pair in the graph term
    "graph_sampling": "uniform",  # the graph term's pairs: "uniform" (each link once, negatives
    # uniform node pairs) | "glue" (scglue's: each link both ways and every self-loop as
    # positives, negatives keep the positive's source and draw the target by its link degree,
    # never a linked pair)
    "graph_batches": 1,  # the graph term of a step sees 1/graph_batches of the positive pairs
    # (with their negatives; scglue: 32); 1 = all of them in every step
    "graph_decoder": "hybrid",  # hybrid: MLP + z.V; embedding: z.V only (GLUE's decoder);
    # glue: z.V only with GLUE's variational feature embeddings and per-feature scales
    "graph_norm": "symmetric",  # an edge's weight in the convolution: symmetric (1 / sqrt of
    # both ends' degrees) | target (scglue's "keepvar": 1 / sqrt of the target's in-degree)
    "graph_init": "random",  # the free node vectors at the start: random (N(0, 1 / dim)) |
    # zero (scglue's GraphEncoder: the feature embeddings are learnt from nothing)
}
GRAPH_DECODERS = ("hybrid", "embedding", "glue")
GRAPH_SAMPLINGS = ("uniform", "glue")
GRAPH_NORMS = ("symmetric", "target")
GRAPH_INITS = ("random", "zero")


def links_per_pair(spec) -> dict[str, int]:
    """Linked feature pairs per modality pair ``"a-b"`` of a data spec: the guidance graph's
    edges besides its self-loops."""
    mods = list(spec.modalities)
    return {f"{a}-{b}": len(spec.link(a, b)[0]) for i, a in enumerate(mods) for b in mods[i + 1:]}


def unlinked_modalities(spec) -> list[str]:
    """Modalities with no linked feature to any other one: the guidance graph has self-loops
    only for them, so nothing ties their codes to the other modalities' (the model layer stops
    with ``MissingLinksError``, as GLUE's wrapper does)."""
    mods = list(spec.modalities)
    return [m for m in mods if not any(len(spec.link(m, o)[0]) for o in mods if o != m)]


class FeatureGraph(nn.Module):
    """The guidance graph over the features of every modality and its one-layer encoder."""

    def __init__(self, spec, dim: int, variational: bool = False, norm: str = "symmetric",
                 init: str = "random") -> None:
        super().__init__()
        if norm not in GRAPH_NORMS or init not in GRAPH_INITS:
            raise ValueError(f"FeatureGraph: norm must be one of {list(GRAPH_NORMS)} (got '{norm}'), "
                             f"init one of {list(GRAPH_INITS)} (got '{init}')")
        self.variational = variational
        self.offsets: dict[str, int] = {}
        n = 0
        for m, ms in spec.modalities.items():
            self.offsets[m] = n
            n += ms.n_features
        self.sizes = {m: ms.n_features for m, ms in spec.modalities.items()}
        mods = list(spec.modalities)
        src, dst = [], []
        for i, a in enumerate(mods):
            for b in mods[i + 1:]:
                la, lb, _ = spec.link(a, b)
                src.append(la + self.offsets[a])
                dst.append(lb + self.offsets[b])
        pos = (np.unique(np.stack([np.concatenate(src), np.concatenate(dst)]), axis=1)
               if src and sum(len(x) for x in src) else np.zeros((2, 0), np.int64))
        self.n_nodes, self.n_links = n, int(pos.shape[1])
        loops = np.arange(n)
        rows = np.concatenate([pos[0], pos[1], loops])
        cols = np.concatenate([pos[1], pos[0], loops])
        deg = np.bincount(rows, minlength=n).astype(np.float32)
        # rows are the targets a message is added to, cols its sources (the graph is symmetric,
        # so a node's in-degree is its degree); self-loops count
        w = 1.0 / np.sqrt(deg[rows] * deg[cols] if norm == "symmetric" else deg[rows])
        self.register_buffer("rows", torch.as_tensor(rows, dtype=torch.long), persistent=False)
        self.register_buffer("cols", torch.as_tensor(cols, dtype=torch.long), persistent=False)
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32), persistent=False)
        self.register_buffer("pos", torch.as_tensor(pos, dtype=torch.long), persistent=False)
        # graph_sampling glue: scglue's positives (links both ways, self-loops), the link degree
        # its negatives' targets are drawn by, and the linked pairs (i * n + j) they must avoid
        linked = np.concatenate([pos[0] * n + pos[1], pos[1] * n + pos[0]])
        self.register_buffer("glue_pos", torch.as_tensor(np.stack([rows, cols]), dtype=torch.long),
                             persistent=False)
        self.register_buffer("link_degree", torch.as_tensor(deg - 1.0), persistent=False)
        self.register_buffer("linked", torch.as_tensor(np.sort(linked), dtype=torch.long),
                             persistent=False)
        self.nodes = nn.Parameter(torch.randn(n, dim) / math.sqrt(dim) if init == "random"
                                  else torch.zeros(n, dim))
        self._shared: tuple[Tensor, Tensor | None, Tensor | None] | None = None
        if variational:  # GLUE's GraphEncoder heads (scglue.models.sc.GraphEncoder)
            self.loc = nn.Linear(dim, dim)
            self.std_lin = nn.Linear(dim, dim)

    def convolved(self) -> Tensor:
        """Each node the normalised mean of itself and its links (all features x dim)."""
        msg = self.nodes.index_select(0, self.cols) * self.w.unsqueeze(1)
        return torch.zeros_like(self.nodes).index_add_(0, self.rows, msg)

    def posterior(self) -> tuple[Tensor, Tensor]:
        """``variational``: the mean and standard deviation of ``V`` (GLUE's ``g2v``)."""
        h = self.convolved()
        return self.loc(h), F.softplus(self.std_lin(h)) + 1e-7

    def draw(self) -> tuple[Tensor, Tensor, Tensor]:
        """``variational``: a draw of ``V`` with the mean and standard deviation it came from."""
        loc, std = self.posterior()
        return loc + std * torch.randn_like(std), loc, std

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Within it every use of ``V`` (each decoder, the graph term) gets the same ``V``,
        computed once: the convolved nodes; ``variational``: one draw in training (scglue's
        ``vsamp``), the mean in evaluation."""
        if self.variational and self.training:
            self._shared = self.draw()
        elif self.variational:
            loc, std = self.posterior()
            self._shared = (loc, loc, std)
        else:
            self._shared = (self.convolved(), None, None)
        try:
            yield
        finally:
            self._shared = None

    def embeddings(self) -> Tensor:
        """``V`` (all features x dim): the convolved nodes; ``variational``: a draw of ``V`` in
        training, its mean in evaluation (inside :meth:`shared`: its one ``V``)."""
        if self._shared is not None:
            return self._shared[0]
        if not self.variational:
            return self.convolved()
        return self.draw()[0] if self.training else self.posterior()[0]

    def of(self, m: str, v: Tensor | None = None) -> Tensor:
        v = self.embeddings() if v is None else v
        return v[self.offsets[m]:self.offsets[m] + self.sizes[m]]

    def pairs(self, negatives: int, sampling: str = "uniform",
              batches: int = 1) -> tuple[Tensor, Tensor]:
        """The graph term's positive pairs ``(2, P)`` and a fresh draw of its negative pairs
        ``(2, N)`` (node numbers; ``sampling`` and ``batches`` as the module doc's
        ``graph_sampling`` and ``graph_batches``)."""
        k = max(int(negatives), 1)
        pos = self.glue_pos if sampling == "glue" else self.pos
        if batches > 1:  # this step's share of the positives, drawn with replacement
            share = math.ceil(pos.shape[1] / int(batches))
            pos = pos[:, torch.randint(pos.shape[1], (share,), device=pos.device)]
        if sampling == "glue":
            ni = pos[0].repeat(k)
            nj = torch.multinomial(self.link_degree, len(ni), replacement=True)
            keep = ~torch.isin(ni * self.n_nodes + nj, self.linked)
            return pos, torch.stack([ni[keep], nj[keep]])
        return pos, torch.randint(self.n_nodes, (2, pos.shape[1] * k), device=pos.device)

    def loss(self, negatives: int, sampling: str = "uniform", batches: int = 1) -> Tensor:
        """Mean logistic loss: linked pairs close (``v_i . v_j`` high), random pairs apart
        (``sampling``, ``batches``: the module doc's ``graph_sampling``, ``graph_batches``);
        inside :meth:`shared`, on its ``V``."""
        if self.n_links == 0:
            return self.nodes.new_zeros(())
        if self._shared is not None:
            v, loc, std = self._shared
        else:
            v, loc, std = self.draw() if self.variational else (self.convolved(), None, None)
        (i, j), (ni, nj) = self.pairs(negatives, sampling, batches)
        pos = F.logsigmoid((v[i] * v[j]).sum(-1))
        neg = F.logsigmoid(-(v[ni] * v[nj]).sum(-1))
        out = -(pos.mean() + neg.mean())
        if self.variational:  # GLUE's g_kl: KL to N(0, I), per node, over the node count
            kl = 0.5 * (loc.pow(2) + std.pow(2) - 1.0 - 2.0 * std.log()).sum(-1)
            out = out + kl.mean() / self.n_nodes
        return out


class HybridDecoder(nn.Module):
    """mmAAVI's hybrid decoder: the MLP decoder's location head plus ``s z V_m^T + b``."""

    def __init__(self, base: nn.Module, graph: FeatureGraph, modality: str,
                 mlp: bool = True, per_feature_scale: bool = False) -> None:
        super().__init__()
        self.mlp, self.per_feature_scale = mlp, per_feature_scale
        self.likelihood = base.likelihood
        self.net = base.net
        self.graph = graph
        self.modality = modality
        n = base.likelihood.n_features
        # one scale exp(s) per modality, or GLUE's softplus(s_f) per feature (scale_lin)
        self.log_scale = nn.Parameter(torch.zeros(n if per_feature_scale else ()))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, z: Tensor, library: Tensor | None = None) -> dict[str, Tensor]:
        raw = self.net(z).float()
        n = self.likelihood.n_features
        v = self.graph.of(self.modality)
        scale = F.softplus(self.log_scale) if self.per_feature_scale else self.log_scale.exp()
        loc = scale * (z.float() @ v.T) + self.bias
        if self.mlp:
            loc = loc + raw[..., :n]
        raw = loc if raw.shape[-1] == n else torch.cat([loc, raw[..., n:]], -1)
        return self.likelihood.params(self.likelihood.split_heads(raw), library)



class GuidanceGraph:
    """Mixin giving a :class:`~.vae.MultimodalVAE` subclass the guidance graph (module doc)."""

    @classmethod
    def check_graph_params(cls, params: dict[str, Any]) -> None:
        """Refuse an unknown ``graph_decoder`` / ``graph_sampling``, naming the valid ones."""
        for key, valid in (("graph_decoder", GRAPH_DECODERS), ("graph_sampling", GRAPH_SAMPLINGS),
                           ("graph_norm", GRAPH_NORMS), ("graph_init", GRAPH_INITS)):
            if params[key] not in valid:
                raise ValueError(f"{cls.__name__.lower()}: unknown {key} '{params[key]}'; "
                                 f"valid: {list(valid)}")
        batches = params["graph_batches"]
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise ValueError(f"{cls.__name__.lower()}: graph_batches must be an integer >= 1 "
                             f"(got {batches!r}); scglue uses 32")

    def build(self, spec) -> None:
        glue = self.params["graph_decoder"] == "glue"
        self.graph = (FeatureGraph(spec, self.latent_dim, variational=glue,
                                   norm=self.params["graph_norm"], init=self.params["graph_init"])
                      if self.params["guidance_graph"] else None)
        super().build(spec)

    def make_decoder(self, ms, n_in: int | None = None) -> nn.Module:
        dec = super().make_decoder(ms, n_in)
        if getattr(self, "graph", None) is None:
            return dec
        return HybridDecoder(dec, self.graph, ms.name,
                             mlp=self.params["graph_decoder"] == "hybrid",
                             per_feature_scale=self.params["graph_decoder"] == "glue")

    def training_loss(self, batch, kl_weight: float = 1.0, state=None):
        """The model's ``training_loss`` with one ``V`` for the whole step
        (:meth:`FeatureGraph.shared`)."""
        graph = getattr(self, "graph", None)
        if graph is None:
            return super().training_loss(batch, kl_weight, state)
        with graph.shared():
            return super().training_loss(batch, kl_weight, state)

    def graph_term_scale(self) -> float:
        """What ``graph_weight`` is multiplied by: the number of features (module doc)."""
        return float(self.graph.n_nodes)

    def add_graph_term(self, out) -> None:
        """Add the graph term to a :class:`~.vae.LossOutput` (training only)."""
        if getattr(self, "graph", None) is not None and self.training and self.graph.n_links:
            g = self.graph.loss(int(self.params["graph_negatives"]), self.params["graph_sampling"],
                                int(self.params["graph_batches"]))
            out.loss = out.loss + float(self.params["graph_weight"]) * self.graph_term_scale() * g
            out.terms["graph"] = g.detach()


__all__ = ["GRAPH_DEFAULTS", "FeatureGraph", "GuidanceGraph", "HybridDecoder", "links_per_pair",
           "unlinked_modalities"]
