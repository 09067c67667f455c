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

import numpy as np

from ..constants import SPLIT, TRAIN, visible_key
from ..io import InputError
from ._base import NotApplicableError
from .gw_ot import as_list, import_ot, modality_views
from .linked_cca import LinkedCCA

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
    cca = LinkedCCA(n_components=int(n_components))
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
    "as_list",
    "cca_anchor_space",
    "global_anchor_pairs",
    "gw_anchor_pairs",
    "mutual_neighbours",
    "seurat_anchor_scores",
]
