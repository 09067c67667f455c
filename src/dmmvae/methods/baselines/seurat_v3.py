"""``seurat_v3``: Seurat v3's anchor-based integration on linked genes, for the diagonal and
mosaic scenarios (PROTOCOL "Controls and reference methods"; Stuart et al. 2019, "Comprehensive
integration of single-cell data", Cell 177:1888). ``linked_cca`` is the CCA-only control of this
workflow; this module adds what Seurat does after the CCA: anchors, their filtering and scores,
and the weighted correction of one dataset onto the other.

The recipe, read from the Seurat R sources (satijalab/seurat, ``R/integration.R`` unless named
otherwise; parameter defaults as there):

1. **Gene space** (PROTOCOL "Linked features"). The partner modality B is expressed in the
   anchor modality A's genes (:func:`~.linked_cca.gene_matrix`: gene activity for ATAC, linked
   proteins for ADT), log-normalised (``NormalizeData``, LogNormalize, scale 1e4). The features
   are the genes both sides share and that vary in the train cells of each side (Seurat's
   ``anchor.features``, ``SelectIntegrationFeatures(nfeatures = 2000)``: here every shared
   linked gene, at most the RNA's 2000 highly variable genes of preprocessing). A = the first RNA
   modality (:func:`~.linked_cca.anchor_modality`), the reference; B is corrected onto it.
2. **CCA** (``FindIntegrationAnchors(reduction = "cca", dims = 1:30, l2.norm = TRUE)`` ->
   ``RunCCA``, R/dimensional_reduction.R ``RunCCA.default``): each side scaled per gene on its
   own train cells (``ScaleData``, clipped at +-10), each cell standardised over genes
   (``standardize = TRUE``), then the ``dims = 30`` leading singular vectors of ``X_A X_B^T``
   (:func:`~.linked_cca.seurat_cca`; fewer when there are fewer genes or cells), and every cell's
   canonical vector L2-normalised (``L2Dim``).
3. **Anchors** (``FindAnchors`` -> ``FindNN`` + ``FindAnchorPairs``, ``k.anchor = 5``): mutual
   5-nearest neighbours between A's and B's train cells in the L2-normalised CCA space
   (:func:`~.anchors.mutual_neighbours`; Seurat searches with annoy, approximate; here exact).
4. **Filtering** (``TopDimFeatures(features.per.dim = 100, max.features = 200)`` +
   ``FilterAnchors(k.filter = 200)``): the CCA feature loadings are the scaled data of both
   sides times the (un-normalised) canonical vectors (``ProjectDim`` in ``RunCCA.Seurat``); per
   dimension the top ``n`` features are taken balanced (``round(n / 2)`` most positive and as
   many most negative loadings, SeuratObject ``Top``), ``n`` the largest count (1 ... 100) whose
   union over the dimensions stays under ``max(2 * dims, max.features)`` = 200 features. In those
   features' log-normalised values, L2-normalised per cell, an anchor (a, b) is kept when b is
   among the ``k.filter = 200`` nearest B cells of a (every anchor is kept when a side has fewer
   than 200 cells, as Seurat does).
5. **Scores** (``ScoreAnchors(k.score = 30)``): shared neighbours of the anchor's two cells,
   each cell's neighbourhood its 30 nearest cells of A and of B in the CCA space, scaled between
   the 1 % and 90 % quantiles over the kept anchors and clipped to [0, 1]
   (:func:`~.anchors.seurat_anchor_scores`).
6. **Correction** (``IntegrateData(dims = 1:30, k.weight = 100, sd.weight = 1)`` ->
   ``PairwiseIntegrateReference`` -> ``RunIntegration`` -> ``FindIntegrationMatrix``,
   ``FindWeights``, C++ ``FindWeightsC`` in src/integration.cpp, ``TransformDataMatrix`` /
   ``IntegrateDataC``):

   - integration matrix: one row per anchor (a, b), ``D = x_b - x_a`` (log-normalised values of
     the features to integrate, = the anchor features);
   - weight space (``weight.reduction = NULL``): the PCA (``dims`` = 30 components) of A's and
     B's train cells merged, each gene scaled over the merged cells (``ScaleData``, clip 10);
     ``weight_reduction: cca`` uses the L2-normalised CCA space instead (``TransferData``'s
     ``weight.reduction = "cca"`` option);
   - for a cell c of B, its ``k.weight = 100`` nearest anchor cells of B (unique cells) at
     Euclidean distances ``d_1 <= ... <= d_k``; ``dist_i = 1 - d_i / d_k``; walking the
     neighbours in order, every anchor of neighbour i gets ``w = 1 - exp(-dist_i * score /
     (2 / sd.weight)^2)`` until ``k`` anchors are counted; the weights are divided by their sum
     (a cell whose weights are all 0, e.g. a single anchor cell, is left uncorrected; Seurat
     would divide by zero);
   - corrected B cell: ``x_c - sum_anchors w * D`` (A's cells are left as they are).

   Seurat's ``IntegrateData`` makes the larger dataset the reference unless
   ``preserve.order = TRUE``; here A (RNA) is always the reference, as in ``FindTransferAnchors``
   / ``TransferData`` (which also name it). ``k.weight`` is lowered to the number of anchor
   cells of B when there are fewer (Seurat lowers it to the number of anchors and then stops
   when the anchor cells are fewer).
7. **Embedding for scoring** (the usual Seurat workflow after ``IntegrateData``: ``ScaleData``
   then ``RunPCA(npcs = 30)``): the integrated train cells (A as measured, B corrected) scaled per
   gene (clip 10), and the 30 leading principal axes (truncated SVD of the scaled matrix, as
   ``RunPCA`` with irlba). Every test cell is placed from ONE modality alone: an A cell from its
   own features; a B cell is corrected first, with the same anchors, scores and weight space
   (its weights are a function of its own features), then placed.

No pairing is used: the train cells of each side are all train cells that show that modality
(so paired and mosaic train cells join both sides, as in ``linked_cca``). With several partners
each is integrated onto A separately and A's embedding is the one of its first partner (the
documented limitation of ``linked_cca``). No linked feature (or fewer than ``min_genes`` that
vary on both sides) stops the run with :class:`~._base.MissingLinksError`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from sklearn.neighbors import NearestNeighbors

from ...constants import SPLIT, TRAIN
from ...data.links import link_matrix
from ...io import Predictions
from .._base import Method, MissingLinksError
from ..anchors import (
    Standardiser,
    anchor_modality,
    gene_matrix,
    l2_rows,
    linked_train_genes,
    mutual_neighbours,
    seurat_anchor_scores,
    seurat_cca,
    standardize_cells,
)
from .linked_cca import anchored_predictions

WEIGHT_REDUCTIONS = ("pca", "cca")


# --------------------------------------------------------------------------------------
# the pieces of Seurat's workflow (pure functions on arrays)
# --------------------------------------------------------------------------------------
def top_features(data: np.ndarray, num: int) -> np.ndarray:
    """SeuratObject's ``Top(balanced = TRUE)`` of one loading vector: the ``round(num / 2)``
    largest and as many smallest (``num = 1``: the largest in absolute value); indices."""
    n = len(data)
    num = min(int(num), n)
    if num == 1:
        return np.array([int(np.argmax(np.abs(data)))])
    half = int(np.round(num / 2))  # R's round: half to even, as numpy's
    order = np.argsort(-data, kind="stable")
    positive, negative = order[:half], order[::-1][:half]
    if positive[-1] == negative[-1]:
        negative = negative[:-1]
    return np.concatenate([positive, negative])


def top_dim_features(loadings: np.ndarray, features_per_dim: int = 100,
                     max_features: int = 200) -> np.ndarray:
    """Seurat's ``TopDimFeatures``: per dimension (column of ``loadings``, genes x dims) the top
    ``n`` balanced features, ``n`` the largest (up to ``features_per_dim``) whose union over the
    dimensions stays under ``max(2 * dims, max_features)``; the union (feature indices)."""
    dims = loadings.shape[1]
    cap = max(2 * dims, int(max_features))

    def union(n):
        return np.unique(np.concatenate([top_features(loadings[:, d], n) for d in range(dims)]))

    counts = np.array([len(union(n)) for n in range(1, int(features_per_dim) + 1)])
    under = counts[counts < cap]
    # R: which.max over the counts under the cap, used as the count per dimension
    per_dim = int(np.argmax(under)) + 1 if len(under) else 1
    return union(per_dim)


def filter_anchors(xa: np.ndarray, xb: np.ndarray, pairs: np.ndarray,
                   k_filter: int = 200) -> np.ndarray:
    """Seurat's ``FilterAnchors``: keep an anchor (i of ``xa``, j of ``xb``) when j is among the
    ``k_filter`` nearest rows of ``xb`` to ``xa[i]``, both L2-normalised per cell (rows of
    zeros stay zero). All anchors are kept when a side has fewer than ``k_filter`` cells.
    Returns the mask over ``pairs``."""
    if min(len(xa), len(xb)) < k_filter or len(pairs) == 0:
        return np.ones(len(pairs), bool)
    na, nb = l2_rows(xa), l2_rows(xb)
    nn = NearestNeighbors(n_neighbors=int(k_filter)).fit(nb)
    idx = nn.kneighbors(na[np.unique(pairs[:, 0])])[1]
    hood = dict(zip(np.unique(pairs[:, 0]).tolist(), (set(r) for r in idx.tolist()),
                    strict=True))
    return np.array([j in hood[i] for i, j in pairs.tolist()], bool)


def anchor_weights(z_query: np.ndarray, z_anchor_cells: np.ndarray, anchor_cell: np.ndarray,
                   scores: np.ndarray, k_weight: int = 100, sd_weight: float = 1.0
                   ) -> sp.csr_matrix:
    """Seurat's integration weights (``FindWeights`` / ``FindWeightsC``): ``(n_query x
    n_anchors)`` rows summing to 1 (or all 0, see below).

    ``z_query``: the query cells in the weight space; ``z_anchor_cells``: the distinct anchor
    cells of the query side in that space; ``anchor_cell``: for each anchor, its row in
    ``z_anchor_cells``; ``scores``: each anchor's score. For a query cell, its ``k`` nearest
    anchor cells at distances ``d_1 <= ... <= d_k`` get ``dist_i = 1 - d_i / d_k``; walking them in
    order, each of their anchors gets ``1 - exp(-dist_i * score / (2 / sd_weight)^2)`` until
    ``k`` anchors are counted; the weights are divided by their sum. A cell whose weights are
    all zero (``d_k`` = 0, or every score 0) keeps a zero row: no correction.
    """
    n_cells = len(z_anchor_cells)
    k = int(min(k_weight, n_cells))
    dist, nbr = NearestNeighbors(n_neighbors=k).fit(z_anchor_cells).kneighbors(z_query)
    dk = dist[:, -1:]
    scaled = np.where(dk > 0, 1.0 - dist / np.where(dk > 0, dk, 1.0), 0.0)
    # the anchors of each anchor cell, in anchor order (Seurat's cell_map)
    order = np.argsort(anchor_cell, kind="stable")
    start = np.searchsorted(anchor_cell[order], np.arange(n_cells + 1))
    rows, cols, vals = [], [], []
    denom = (2.0 / float(sd_weight)) ** 2
    for q in range(len(z_query)):
        used = 0
        for i in range(k):
            for a in order[start[nbr[q, i]]:start[nbr[q, i] + 1]]:
                if used >= k:
                    break
                rows.append(q)
                cols.append(a)
                vals.append(1.0 - np.exp(-scaled[q, i] * scores[a] / denom))
                used += 1
            if used >= k:
                break
    W = sp.csr_matrix((vals, (rows, cols)), shape=(len(z_query), len(anchor_cell)))
    total = np.asarray(W.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0), 0.0)) @ W)


def integrate(x_query: np.ndarray, weights: sp.csr_matrix, integration_matrix: np.ndarray
              ) -> np.ndarray:
    """Seurat's ``IntegrateDataC``: ``x - W D`` (query cells x features)."""
    return np.asarray(x_query - weights @ integration_matrix)


def truncated_pca(X: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """Principal axes (features x k) of an already centred and scaled matrix, as Seurat's
    ``RunPCA`` (irlba on ``scale.data``, no further centring): the ``k`` leading right singular
    vectors, with a deterministic sign (largest loading positive)."""
    k = int(min(n_components, min(X.shape) - 1))
    if k < 1:
        return np.eye(X.shape[1])[:, :1]
    v0 = np.random.default_rng(seed).normal(size=min(X.shape))
    _, d, vt = svds(X, k=k, v0=v0, random_state=seed)
    v = vt[np.argsort(d)[::-1]].T
    return v * np.sign(v[np.abs(v).argmax(axis=0), np.arange(k)])


# --------------------------------------------------------------------------------------
# the method
# --------------------------------------------------------------------------------------
class SeuratV3(Method):
    """Seurat v3 anchors + weighted correction on linked genes (see the module docstring)."""

    needs_unpaired = True  # a diagonal reference (PROTOCOL: diagonal and mosaic)

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "dims": 30,  # FindIntegrationAnchors / IntegrateData dims = 1:30 (CCA and weight PCA)
        "k_anchor": 5,  # FindIntegrationAnchors k.anchor
        "k_filter": 200,  # FindIntegrationAnchors k.filter
        "max_features": 200,  # FindIntegrationAnchors max.features (TopDimFeatures)
        "features_per_dim": 100,  # TopDimFeatures features.per.dim (FindAnchors passes 100)
        "k_score": 30,  # FindIntegrationAnchors k.score
        "k_weight": 100,  # IntegrateData k.weight
        "sd_weight": 1.0,  # IntegrateData sd.weight
        "weight_reduction": "pca",  # IntegrateData weight.reduction NULL: PCA of merged data
        "n_pcs": 30,  # RunPCA npcs of the integrated data (the embedding scored)
        "clip": 10.0,  # ScaleData scale.max
        "min_genes": 5,  # fewer shared linked genes than this: MissingLinksError
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["weight_reduction"] not in WEIGHT_REDUCTIONS:
            raise ValueError(f"seurat_v3: unknown weight_reduction "
                             f"'{self.params['weight_reduction']}'; valid: {list(WEIGHT_REDUCTIONS)}")

    # ------------------------------------------------------------------ fitting
    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        anchor = anchor_modality(mdata)
        partners = [m for m in mdata.mod if m != anchor]
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        self._anchor = anchor
        self._pairs: dict[str, dict[str, Any]] = {}
        info: dict[str, Any] = {}
        linked = [p for p in partners if link_matrix(mdata, anchor, p).nnz > 0]
        if not linked:
            raise MissingLinksError(
                f"seurat_v3: '{anchor}' has no linked features with {partners}; fix: give gene "
                "coordinates (10x 'interval' or gene_annotation) or protein->gene links"
            )
        for partner in linked:
            A, B, ia, keep = linked_train_genes(mdata, anchor, partner, train)
            if keep.sum() < int(self.params["min_genes"]):
                raise MissingLinksError(
                    f"seurat_v3: only {int(keep.sum())} linked genes vary in both '{anchor}' and "
                    f"'{partner}' train cells (min_genes {self.params['min_genes']}); fix: give "
                    "gene coordinates / a protein table so more features link"
                )
            pair = self._fit_pair(A, B, seed)
            pair.update({"ia": ia[keep], "ib": np.flatnonzero(keep)})
            self._pairs[partner] = pair
            info[partner] = pair["info"]
        self.train_info = {"linked_genes": {p: v["info"]["genes"] for p, v in self._pairs.items()},
                           "seurat_v3": info}
        return pd.DataFrame()

    def _fit_pair(self, A: np.ndarray, B: np.ndarray, seed: int) -> dict[str, Any]:
        """Anchors, scores, integration matrix, weight space and scoring PCA of one pair from
        the log-normalised train cells of A and B on their shared features."""
        p = self.params
        clip = float(p["clip"])
        # 2. CCA on each side's scaled data, cells standardised; L2-normalised canonical vectors
        sa, sb = Standardiser(A, clip), Standardiser(B, clip)
        za, zb = sa(A), sb(B)
        wa, wb = seurat_cca(standardize_cells(za), standardize_cells(zb), int(p["dims"]), seed)
        u, v = standardize_cells(za) @ wa, standardize_cells(zb) @ wb
        ua, ub = l2_rows(u), l2_rows(v)
        # 3. anchors: mutual nearest neighbours
        pairs = mutual_neighbours(ua, ub, int(p["k_anchor"]))
        n_found = len(pairs)
        # 4. filtering in the top features of the CCA loadings (scaled data x canonical vectors)
        loadings = za.T @ u + zb.T @ v
        top = top_dim_features(loadings, int(p["features_per_dim"]), int(p["max_features"]))
        kept = filter_anchors(A[:, top], B[:, top], pairs, int(p["k_filter"]))
        pairs = pairs[kept]
        if len(pairs) == 0:
            raise MissingLinksError(
                "seurat_v3: no anchor survived (mutual neighbours and filtering) between the two "
                "modalities' train cells; their linked genes carry no shared structure"
            )
        # 5. scores
        scores = seurat_anchor_scores(ua, ub, pairs, int(p["k_score"]))
        # 6. integration matrix, weight space, correction of B's train cells
        D = B[pairs[:, 1]] - A[pairs[:, 0]]
        anchor_cells, anchor_cell = np.unique(pairs[:, 1], return_inverse=True)
        pair: dict[str, Any] = {"sb": sb, "wb": wb, "D": D, "scores": scores,
                                "anchor_cell": anchor_cell.ravel()}
        if p["weight_reduction"] == "pca":
            merged = np.vstack([A, B])
            sm = Standardiser(merged, clip)
            pcs = truncated_pca(sm(merged), int(p["dims"]), seed)
            pair.update({"sm": sm, "pcs": pcs})
        pair["z_anchor_cells"] = self._weight_space(pair, B[anchor_cells])
        k_weight = int(min(int(p["k_weight"]), len(anchor_cells)))
        B_int = self._correct(pair, B)
        # 7. the scoring embedding: PCA of the integrated train cells, scaled per gene
        integrated = np.vstack([A, B_int])
        si = Standardiser(integrated, clip)
        pair.update({"si": si, "pcs_out": truncated_pca(si(integrated), int(p["n_pcs"]), seed)})
        pair["info"] = {
            "genes": int(A.shape[1]), "cca_dims": int(wa.shape[1]),
            "anchors_found": int(n_found), "anchors_kept": int(len(pairs)),
            "filter_features": int(len(top)), "anchor_cells_b": int(len(anchor_cells)),
            "mean_score": float(scores.mean()), "k_weight": k_weight,
            "pcs": int(pair["pcs_out"].shape[1]),
        }
        return pair

    def _weight_space(self, pair: dict[str, Any], Xb: np.ndarray) -> np.ndarray:
        """B cells (log-normalised, pair features) in the space the weights are computed in."""
        if self.params["weight_reduction"] == "pca":
            return pair["sm"](Xb) @ pair["pcs"]
        return l2_rows(standardize_cells(pair["sb"](Xb)) @ pair["wb"])

    def _correct(self, pair: dict[str, Any], Xb: np.ndarray) -> np.ndarray:
        """Seurat's correction of B cells onto A: ``x - W D``."""
        W = anchor_weights(self._weight_space(pair, Xb), pair["z_anchor_cells"],
                           pair["anchor_cell"], pair["scores"], int(self.params["k_weight"]),
                           float(self.params["sd_weight"]))
        return integrate(Xb, W, pair["D"])

    # ------------------------------------------------------------------ prediction
    def cell_embeddings(self, mdata, rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Integrated-PCA embeddings of the cells ``rows`` (bool mask over ``mdata``), each from
        its own modality alone: ``{partner: {anchor: (n_rows, k), partner: (n_rows, k)}}``."""
        anchor = self._anchor
        Xa, _ = gene_matrix(mdata, anchor, anchor)
        out: dict[str, dict[str, np.ndarray]] = {}
        for partner, p in self._pairs.items():
            Xb, _ = gene_matrix(mdata, partner, anchor)
            xa = Xa[rows][:, p["ia"]].toarray()
            xb = self._correct(p, Xb[rows][:, p["ib"]].toarray())
            out[partner] = {anchor: p["si"](xa) @ p["pcs_out"], partner: p["si"](xb) @ p["pcs_out"]}
        return out

    def predict(self, mdata) -> Predictions:
        return anchored_predictions(mdata, self.cell_embeddings,
                                    info={"seurat_v3": self.train_info.get("seurat_v3", {})})


__all__ = [
    "SeuratV3",
    "anchor_weights",
    "filter_anchors",
    "integrate",
    "top_dim_features",
    "top_features",
    "truncated_pca",
]
