"""Anchors between cells of two modalities seen apart (Seurat v3's anchor algorithms, and a
structure-only Gromov-Wasserstein counterpart), shared by D-MMVAE's model
(:class:`~._model.DMMVAEModel`) and the ``seurat_v3`` reference (:mod:`.seurat_v3`).

- :func:`cca_anchor_space`: each train cell's canonical coordinates (Seurat-v3 CCA on the linked
  genes, :class:`~.linked_cca.LinkedCCA`), per (anchor, partner) modality pair;
- :func:`mutual_neighbours`: Seurat's anchor pairs (mutual ``k``-nearest neighbours between two
  sets of cells);
- :func:`seurat_anchor_scores`: Seurat's anchor scores (shared neighbours, quantile-scaled);
- :func:`global_anchor_pairs`: mutual neighbours among ALL train cells of two modalities in the
  coordinates of :func:`cca_anchor_space`, optionally scored;
- :func:`gw_anchor_pairs`: structure-only anchors for modalities with no linked feature (exact
  GW between the two modalities' train cells).

Every function sees train cells only (``obs["split"] == "train"``) and, for each, only the
modalities its scenario mask (``obs["visible_<mod>"]``) allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize

from ..constants import COUNTS, LSI, MODALITY_KIND, SPLIT, TRAIN, visible_key
from ..data.links import gene_space, link_matrix
from ..io import InputError
from ._base import MissingDependencyError, MissingLinksError, NotApplicableError

# ---- cell views (CCA on linked genes; per-modality PCA / LSI) and POT

def log_normalise(X: sp.csr_matrix, target_sum: float = 1e4) -> sp.csr_matrix:
    """``log1p(target_sum * x / total)`` per cell (sparse in, sparse out)."""
    X = sp.csr_matrix(X, dtype=np.float64)
    tot = np.asarray(X.sum(axis=1)).ravel()
    scale = np.where(tot > 0, target_sum / np.maximum(tot, 1e-12), 0.0)
    out = sp.diags(scale) @ X
    out.data = np.log1p(out.data)
    return sp.csr_matrix(out)


class Standardiser:
    """Per-gene z-score fitted on one set of cells, clipped at +-``clip``."""

    def __init__(self, X_fit: np.ndarray, clip: float = 10.0) -> None:
        self.mean = X_fit.mean(axis=0)
        self.sd = X_fit.std(axis=0)
        self.clip = clip

    def __call__(self, X: np.ndarray) -> np.ndarray:
        z = (X - self.mean) / np.where(self.sd > 0, self.sd, 1.0)
        return np.clip(z, -self.clip, self.clip)


def seurat_cca(
    Xa: np.ndarray, Xb: np.ndarray, n_components: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gene loadings ``(W_a, W_b)`` of Seurat's CCA between two standardised matrices with
    the same genes (cells x genes each): SVD of ``Xa Xb^T`` through a linear operator."""
    k = int(min(n_components, Xa.shape[0] - 1, Xb.shape[0] - 1, Xa.shape[1] - 1))
    if k < 1:
        raise InputError(
            f"linked_cca: too few cells or linked genes for CCA ({Xa.shape[0]} and {Xb.shape[0]} "
            f"cells, {Xa.shape[1]} genes); fix: give more cells or more linked features"
        )
    op = LinearOperator(
        (Xa.shape[0], Xb.shape[0]),
        matvec=lambda v: Xa @ (Xb.T @ v),
        rmatvec=lambda u: Xb @ (Xa.T @ u),
        dtype=np.float64,
    )
    v0 = np.random.default_rng(seed).normal(size=min(op.shape))
    u, d, vt = svds(op, k=k, v0=v0, random_state=seed)
    order = np.argsort(d)[::-1]
    u, d, v = u[:, order], d[order], vt[order].T
    # a deterministic sign: the largest loading of each component of u is positive
    sign = np.sign(u[np.abs(u).argmax(axis=0), np.arange(k)])
    u, v = u * sign, v * sign
    return Xb.T @ v / d, Xa.T @ u / d


def standardize_cells(Z: np.ndarray) -> np.ndarray:
    """Seurat's ``Standardize`` in ``RunCCA``: each cell centred and scaled over its genes."""
    sd = Z.std(axis=1, ddof=1, keepdims=True)
    return (Z - Z.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def l2_rows(Z: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norm > 0, norm, 1.0)


def anchor_modality(mdata: md.MuData) -> str:
    """The modality the others are aligned to: the first RNA modality (the gene space), else
    the first modality."""
    mods = list(mdata.mod)
    kinds = [mdata.mod[m].uns.get(MODALITY_KIND) for m in mods]
    return mods[kinds.index("rna")] if "rna" in kinds else mods[0]


def gene_matrix(mdata: md.MuData, mod: str, anchor: str) -> tuple[sp.csr_matrix, list]:
    """``mod`` in the genes of ``anchor`` (:func:`~dmmvae.data.links.gene_space`),
    log-normalised when it holds counts: ``(cells x genes sparse, gene names)``."""
    X, genes = gene_space(mdata, mod, rna=anchor)
    a = mdata.mod[mod]
    counts = COUNTS in a.layers or a.uns.get(MODALITY_KIND) in ("rna", "adt", "atac")
    X = log_normalise(X) if counts else sp.csr_matrix(X, dtype=np.float64)
    return X, genes


def linked_train_genes(mdata: md.MuData, anchor: str, partner: str, train: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The train cells that show ``anchor`` and those that show ``partner`` in the genes linked
    between them (:func:`gene_matrix`), keeping the genes that vary in both sets of cells:
    ``(A, B, ia, keep)`` with ``A`` (anchor cells x kept genes), ``B`` (partner cells x kept
    genes), ``ia`` the anchor column of each of the partner's genes and ``keep`` the kept-gene
    mask over the partner's genes."""
    Xa, genes_a = gene_matrix(mdata, anchor, anchor)
    Xb, genes_b = gene_matrix(mdata, partner, anchor)
    ia = pd.Index(genes_a).get_indexer(genes_b)
    rows_a = train & mdata.obs[visible_key(anchor)].to_numpy(bool)
    rows_b = train & mdata.obs[visible_key(partner)].to_numpy(bool)
    A, B = Xa[rows_a][:, ia].toarray(), Xb[rows_b].toarray()
    keep = (A.std(axis=0) > 0) & (B.std(axis=0) > 0)
    return A[:, keep], B[:, keep], ia, keep


class LinkedGeneCCA:
    """Seurat-v3 CCA on the genes linked between the anchor modality (:func:`anchor_modality`)
    and each partner, fitted on train cells (the algorithm of ``linked_cca``, shared by the
    ``linked_cca`` control and D-MMVAE's CCA anchor space). ``name`` prefixes its errors."""

    def __init__(self, n_components: int = 20, clip: float = 10.0, min_genes: int = 5,
                 standardize: bool = True, name: str = "linked_cca") -> None:
        self.n_components, self.clip, self.min_genes = int(n_components), float(clip), int(min_genes)
        self.standardize, self.name = bool(standardize), name
        self.anchor: str | None = None
        self.pairs: dict[str, dict[str, Any]] = {}
        self.train_info: dict[str, Any] = {}

    def _cells(self, Z: np.ndarray) -> np.ndarray:
        return standardize_cells(Z) if self.standardize else Z

    def fit(self, mdata, seed: int = 0) -> LinkedGeneCCA:
        anchor = anchor_modality(mdata)
        mods = [anchor] + [m for m in mdata.mod if m != anchor]
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        self.anchor, self.pairs = anchor, {}
        for partner in mods[1:]:
            if link_matrix(mdata, anchor, partner).nnz == 0:
                continue
            A, B, ia, keep = linked_train_genes(mdata, anchor, partner, train)
            if keep.sum() < self.min_genes:
                raise InputError(
                    f"{self.name}: only {int(keep.sum())} linked genes vary in both '{anchor}' "
                    f"and '{partner}' train cells; fix: give gene coordinates / a protein table so "
                    f"more features link, or leave {self.name} out for this dataset"
                )
            sa, sb = Standardiser(A, self.clip), Standardiser(B, self.clip)
            wa, wb = seurat_cca(self._cells(sa(A)), self._cells(sb(B)), self.n_components, seed)
            self.pairs[partner] = {"ia": ia[keep], "keep": keep, "sa": sa, "sb": sb,
                                   "wa": wa, "wb": wb, "n_genes": int(keep.sum())}
        if not self.pairs:
            raise MissingLinksError(
                f"{self.name}: '{anchor}' has no linked features with {mods[1:]}; fix: give gene "
                "coordinates (10x 'interval' or gene_annotation) or protein->gene links"
            )
        self.train_info = {"linked_genes": {p: v["n_genes"] for p, v in self.pairs.items()}}
        return self

    def cell_embeddings(self, mdata, rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Canonical embeddings of the cells ``rows`` (bool mask over ``mdata``), each from its
        own modality alone: ``{partner: {anchor: (n_rows, k), partner: (n_rows, k)}}``."""
        anchor = self.anchor
        Xa, _ = gene_matrix(mdata, anchor, anchor)
        out: dict[str, dict[str, np.ndarray]] = {}
        for partner, p in self.pairs.items():
            Xb, _ = gene_matrix(mdata, partner, anchor)
            zb = self._cells(p["sb"](Xb[rows][:, np.flatnonzero(p["keep"])].toarray()))
            za = self._cells(p["sa"](Xa[rows][:, p["ia"]].toarray()))
            out[partner] = {partner: l2_rows(zb @ p["wb"]), anchor: l2_rows(za @ p["wa"])}
        return out


POT_HINT = "pip install pot==0.9.7.post1"


def import_ot():
    try:
        import ot  # POT: Python Optimal Transport
    except ImportError as err:  # pragma: no cover - pinned dependency
        raise MissingDependencyError(
            f"gw_ot needs POT, which is not installed; fix: {POT_HINT} (pinned in pyproject)"
        ) from err
    return ot


def as_list(v) -> list[int]:
    """A number or a list of numbers as a list of ints (``20`` -> ``[20]``)."""
    return [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


def place_by_neighbours(Z_train: np.ndarray, positions: np.ndarray, Z_new: np.ndarray,
                        k: int) -> np.ndarray:
    """Mean position of each new cell's ``k`` nearest train cells (in their own view)."""
    nn = NearestNeighbors(n_neighbors=int(min(k, len(Z_train)))).fit(Z_train)
    _, idx = nn.kneighbors(Z_new)
    return positions[idx].mean(axis=1)


Embed = Callable[[np.ndarray], np.ndarray]


def modality_views(mdata: md.MuData, mod: str, rows: np.ndarray, n_pcs: list[int],
                   seed: int) -> dict[int, Embed]:
    """One embedding function per ``n_pcs`` (cells of ``mdata`` by index -> L2-normed view):
    the stored LSI of ATAC (first component dropped), else a PCA of ``X`` fitted on ``rows``."""
    a = mdata.mod[mod]
    out: dict[int, Embed] = {}
    for n in n_pcs:
        if LSI in a.obsm and a.obsm[LSI].shape[1] > 2:
            lsi = np.asarray(a.obsm[LSI])[:, 1 : n + 1]
            out[n] = lambda idx, lsi=lsi: normalize(lsi[idx])
            continue
        X_fit = a.X[rows]
        X_fit = X_fit.toarray() if sp.issparse(X_fit) else np.asarray(X_fit)
        m = max(1, min(n, X_fit.shape[0] - 1, X_fit.shape[1] - 1))
        pca = PCA(m, random_state=seed).fit(X_fit)

        def embed(idx, a=a, pca=pca):
            X = a.X[idx]
            return normalize(pca.transform(X.toarray() if sp.issparse(X) else np.asarray(X)))

        out[n] = embed
    return out



#: Seurat v3's ``k.score``: neighbours per cell and dataset when anchors are scored
#: (``FindIntegrationAnchors(k.score = 30)``, R/integration.R)
SEURAT_K_SCORE = 30


def cca_anchor_space(mdata, seed: int = 0, n_components: int = 20) -> tuple[dict, str]:
    """Canonical embeddings (Seurat-v3 CCA on linked genes, :class:`~.linked_cca.LinkedCCA`,
    ``n_components`` of them) of every TRAIN cell from its own modality: ``({(anchor, partner):
    (coords_a, coords_b)}, note)``, rows = cells of ``mdata`` (zeros outside the train split).
    Empty, with the reason in the note, when the CCA cannot be fitted (no or too few linked
    genes): the caller decides whether that stops it (D-MMVAE's model raises
    :class:`~._base.MissingLinksError`)."""
    cca = LinkedGeneCCA(n_components=int(n_components))
    try:
        cca.fit(mdata, seed=seed)
    except (NotApplicableError, InputError) as err:
        return {}, f"no CCA anchor space ({str(err).split(';')[0]})"
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    out = {}
    for partner, emb in cca.cell_embeddings(mdata, train).items():
        anchor = cca.anchor
        coords = {}
        for m in (anchor, partner):
            full = np.zeros((mdata.n_obs, emb[m].shape[1]), np.float32)
            full[train] = emb[m]
            coords[m] = full
        out[(anchor, partner)] = (coords[anchor], coords[partner])
    genes = cca.train_info["linked_genes"]
    return out, f"CCA on {genes} linked genes fitted on the train cells"


def seurat_anchor_scores(ua: np.ndarray, ub: np.ndarray, ij: np.ndarray,
                         k_score: int = SEURAT_K_SCORE) -> np.ndarray:
    """Seurat v3's anchor scores (Stuart et al. 2019, "scoring anchors"; ``ScoreAnchors`` in
    R/integration.R): for an anchor (i of ``ua``, j of ``ub``), the shared neighbours of its two
    cells, each cell's neighbourhood being its ``k_score`` nearest cells of ``ua`` and of ``ub``
    (a cell's own set includes itself); the counts are divided by ``2 k_score``, then scaled
    between their 1 % and 90 % quantiles and clipped to [0, 1]. ``ij``: local row numbers
    (into ``ua``, ``ub``)."""
    from sklearn.neighbors import NearestNeighbors

    if len(ij) == 0:
        return np.zeros(0)
    nn_a = NearestNeighbors(n_neighbors=min(k_score, len(ua))).fit(ua)
    nn_b = NearestNeighbors(n_neighbors=min(k_score, len(ub))).fit(ub)

    def hood(x):  # neighbours in a (ids 0..) and in b (ids offset by len(ua))
        return np.hstack([nn_a.kneighbors(x)[1], nn_b.kneighbors(x)[1] + len(ua)])

    hi, hj = hood(ua[ij[:, 0]]), hood(ub[ij[:, 1]])
    shared = np.array([len(np.intersect1d(x, y)) for x, y in zip(hi, hj, strict=True)], float)
    score = shared / (2 * k_score)
    lo, hi_q = np.quantile(score, [0.01, 0.9])
    return np.clip((score - lo) / max(hi_q - lo, 1e-12), 0.0, 1.0)


def mutual_neighbours(ua: np.ndarray, ub: np.ndarray, k: int) -> np.ndarray:
    """Seurat's anchor pairs (``FindAnchorPairs``): ``(i, j)`` with ``j`` among the ``k``
    nearest cells of ``ub`` to ``ua[i]`` and ``i`` among the ``k`` nearest cells of ``ua`` to
    ``ub[j]`` (Euclidean; on L2-normalised rows, cosine). Local row numbers, sorted,
    ``int (n_pairs, 2)``."""
    from sklearn.neighbors import NearestNeighbors

    nab = NearestNeighbors(n_neighbors=min(k, len(ub))).fit(ub).kneighbors(ua)[1]
    nba = NearestNeighbors(n_neighbors=min(k, len(ua))).fit(ua).kneighbors(ub)[1]
    ab = {(i, j) for i, row in enumerate(nab) for j in row}
    mutual = sorted((i, j) for j, row in enumerate(nba) for i in row if (i, j) in ab)
    return np.array(mutual, dtype=np.int64).reshape(-1, 2)


def global_anchor_pairs(mdata, spaces: dict, k: int, k_score: int = 0
                        ) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """Seurat's anchors: mutual ``k``-nearest neighbours between the TRAIN cells that show
    ``a`` but not ``b`` and those that show ``b`` but not ``a``, in the per-cell coordinates
    ``spaces`` of :func:`cca_anchor_space` (canonical vectors it already L2-normalises, so
    Euclidean neighbours are cosine neighbours). Returns ``(pairs, scores)``: pairs
    ``{(a, b): int array (n_pairs, 2)}`` of row numbers; with ``k_score`` > 0 Seurat's score of
    every pair (:func:`seurat_anchor_scores`) ``{(a, b): float array (n_pairs,)}``, else ``{}``."""
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    out, scores = {}, {}
    for (a, b), (ca, cb) in spaces.items():
        va = train & mdata.obs[visible_key(a)].to_numpy(bool)
        vb = train & mdata.obs[visible_key(b)].to_numpy(bool)
        ra, rb = np.flatnonzero(va & ~vb), np.flatnonzero(vb & ~va)
        if len(ra) < 2 or len(rb) < 2:
            continue
        ua, ub = ca[ra], cb[rb]
        local = mutual_neighbours(ua, ub, k)
        out[(a, b)] = np.c_[ra[local[:, 0]], rb[local[:, 1]]].astype(np.int64).reshape(-1, 2)
        if k_score:
            scores[(a, b)] = seurat_anchor_scores(ua, ub, local, k_score)
    return out, scores


def gw_anchor_pairs(mdata, n_pcs: list[int], seed: int = 0, max_cells: int = 1500,
                    ) -> tuple[dict[tuple[str, str], np.ndarray], str]:
    """Structure-only anchors, for modalities with NO linked feature: per pair of modalities
    (a, b), exact Gromov-Wasserstein (POT's conditional gradient from the product coupling,
    uniform marginals) between the TRAIN cells that show ``a`` but not ``b`` and those that
    show ``b`` but not ``a``, on cosine distances of each modality's own view
    (:func:`~.gw_ot.modality_views`: PCA, or LSI for ATAC); ``n_pcs`` is self-tuned by the
    lowest GW distance, as ``gw_ot`` does. Each cell's partner is its largest coupling entry,
    both directions kept. At most ``max_cells`` cells per side (a seeded subsample).
    ``({(a, b): int array (n_pairs, 2)}, note)`` of row numbers."""
    ot = import_ot()
    rng = np.random.default_rng(seed)
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    mods = list(mdata.mod)
    out, notes = {}, []
    for i, a in enumerate(mods):
        for b in mods[i + 1:]:
            va = train & mdata.obs[visible_key(a)].to_numpy(bool)
            vb = train & mdata.obs[visible_key(b)].to_numpy(bool)
            rows = {a: np.flatnonzero(va & ~vb), b: np.flatnonzero(vb & ~va)}
            if min(len(r) for r in rows.values()) < 10:
                continue
            for m, r in rows.items():
                if len(r) > max_cells:
                    rows[m] = np.sort(rng.choice(r, max_cells, replace=False))
            ra, rb = rows[a], rows[b]
            views = {m: modality_views(mdata, m, rows[m], list(n_pcs), seed) for m in (a, b)}
            p, q = np.full(len(ra), 1 / len(ra)), np.full(len(rb), 1 / len(rb))
            best = None
            for n in n_pcs:
                Za, Zb = views[a][n](ra), views[b][n](rb)
                Da, Db = 1 - Za @ Za.T, 1 - Zb @ Zb.T  # cosine distances (unit rows)
                Da, Db = Da / max(Da.max(), 1e-12), Db / max(Db.max(), 1e-12)
                T, log = ot.gromov.gromov_wasserstein(Da, Db, p, q, "square_loss", log=True,
                                                      max_iter=2000)
                if best is None or log["gw_dist"] < best[0]:
                    best = (float(log["gw_dist"]), n, np.asarray(T))
            gw, n, T = best
            ij = np.unique(np.vstack([np.c_[np.arange(len(ra)), T.argmax(1)],
                                      np.c_[T.argmax(0), np.arange(len(rb))]]), axis=0)
            out[(a, b)] = np.c_[ra[ij[:, 0]], rb[ij[:, 1]]].astype(np.int64)
            notes.append(f"{a}+{b}: GW on {len(ra)}+{len(rb)} cells, {n} components "
                         f"(GW {gw:.4g}), {len(ij)} pairs")
    return out, "structure-only GW anchors: " + "; ".join(notes)


__all__ = [
    "SEURAT_K_SCORE",
    "LinkedGeneCCA",
    "POT_HINT",
    "Standardiser",
    "anchor_modality",
    "gene_matrix",
    "import_ot",
    "l2_rows",
    "linked_train_genes",
    "log_normalise",
    "modality_views",
    "place_by_neighbours",
    "seurat_cca",
    "standardize_cells",
    "as_list",
    "cca_anchor_space",
    "global_anchor_pairs",
    "gw_anchor_pairs",
    "mutual_neighbours",
    "seurat_anchor_scores",
]
