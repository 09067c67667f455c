"""``linked_cca``: the Seurat-v3-style diagonal control (PROTOCOL "Controls and reference
methods"): CCA between two modalities expressed in the SAME linked genes, with no pairing.

Recipe (Stuart et al. 2019, "Comprehensive integration of single-cell data", CCA anchors step):

1. Express each partner modality in genes through its links (:func:`dmmvae.data.links.gene_space`:
   gene activity for ATAC, linked proteins for ADT, same-name features otherwise) and keep the
   genes both sides share (at least one link, non-constant on the train cells of each side).
2. Count data are log-normalised (``normalize_total(1e4)`` + ``log1p``), then each side is
   standardised per gene on ITS OWN train cells (clipped at +-10, Seurat's ``ScaleData``).
3. CCA as Seurat computes it: the truncated SVD of ``X_a X_b^T`` (train cells of a x train cells
   of b; evaluated through a linear operator, never formed), whose singular vectors are the
   canonical cell embeddings. Gene loadings ``W_a = X_b^T v / d`` and ``W_b = X_a^T u / d``
   reproduce them (``u = X_a W_a``) and place any cell, test cells included, from its own
   modality alone; every embedding is L2-normalised per cell, as Seurat does.

No pair is used: train cells of each side are all cells that show that modality, whether or
not they also show the other (so paired and mosaic scenarios work the same way). The anchor is
the first modality of the file (RNA in every stand-in); with three modalities each partner is
aligned to the anchor and the anchor's embedding is the one of its first partner (documented
limitation: two partners are then compared only through the anchor).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds

from ..constants import COUNTS, JOINT, MODALITY_KIND, SPLIT, TEST, TRAIN, visible_key
from ..data.links import gene_space, link_matrix
from ..io import InputError, Predictions
from ._base import Method, MissingLinksError


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


def anchored_predictions(mdata: md.MuData, cell_embeddings, info: dict | None = None
                         ) -> Predictions:
    """The test cells' predictions of a method that aligns every partner to one anchor:
    ``cell_embeddings(mdata, rows)`` gives ``{partner: {anchor: z, partner: z}}``; each
    modality keeps its embedding (the anchor's: the one of its first partner), the joint one is
    their mean."""
    test = mdata.obs[SPLIT].to_numpy() == TEST
    emb: dict[str, np.ndarray] = {}
    for pair in cell_embeddings(mdata, test).values():
        for m, z in pair.items():
            emb.setdefault(m, z)
    emb[JOINT] = np.mean([emb[m] for m in emb], axis=0)
    return Predictions(mdata.obs_names[test], embeddings=emb, info=info)


class LinkedCCA(Method):
    """Seurat-v3-style CCA on linked genes (see the module docstring)."""

    needs_unpaired = True  # a diagonal control (PROTOCOL): not run on paired scenarios

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_components": 20,  # canonical components (Seurat's default dims 1:20 for anchors)
        "clip": 10.0,  # ScaleData clip
        "min_genes": 5,  # fewer shared linked genes than this stops with a clear error
        "standardize_cells": True,  # RunCCA(standardize=TRUE): z-score each cell over genes
    }

    @property
    def anchor(self) -> str:
        """The modality every partner is aligned to (set by :meth:`fit`)."""
        return self._anchor

    def _cells(self, Z: np.ndarray) -> np.ndarray:
        return standardize_cells(Z) if self.params["standardize_cells"] else Z

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        anchor = anchor_modality(mdata)
        mods = [anchor] + [m for m in mdata.mod if m != anchor]
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        self._anchor = anchor
        self._pairs: dict[str, dict[str, Any]] = {}
        for partner in mods[1:]:
            if link_matrix(mdata, anchor, partner).nnz == 0:
                continue
            A, B, ia, keep = linked_train_genes(mdata, anchor, partner, train)
            if keep.sum() < int(self.params["min_genes"]):
                raise InputError(
                    f"linked_cca: only {int(keep.sum())} linked genes vary in both '{anchor}' "
                    f"and '{partner}' train cells; fix: give gene coordinates / a protein table so "
                    "more features link, or leave linked_cca out for this dataset"
                )
            sa = Standardiser(A, self.params["clip"])
            sb = Standardiser(B, self.params["clip"])
            wa, wb = seurat_cca(self._cells(sa(A)), self._cells(sb(B)),
                                int(self.params["n_components"]), seed)
            self._pairs[partner] = {"ia": ia[keep], "keep": keep, "sa": sa, "sb": sb,
                                    "wa": wa, "wb": wb, "n_genes": int(keep.sum())}
        if not self._pairs:
            raise MissingLinksError(
                f"linked_cca: '{anchor}' has no linked features with {mods[1:]}; fix: give gene "
                "coordinates (10x 'interval' or gene_annotation) or protein->gene links"
            )
        self.train_info = {"linked_genes": {p: v["n_genes"] for p, v in self._pairs.items()}}
        return pd.DataFrame()

    def cell_embeddings(self, mdata, rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Canonical embeddings of the cells ``rows`` (bool mask over ``mdata``), each from its
        own modality alone: ``{partner: {anchor: (n_rows, k), partner: (n_rows, k)}}``."""
        anchor = self._anchor
        Xa, _ = gene_matrix(mdata, anchor, anchor)
        out: dict[str, dict[str, np.ndarray]] = {}
        for partner, p in self._pairs.items():
            Xb, _ = gene_matrix(mdata, partner, anchor)
            zb = self._cells(p["sb"](Xb[rows][:, np.flatnonzero(p["keep"])].toarray()))
            za = self._cells(p["sa"](Xa[rows][:, p["ia"]].toarray()))
            out[partner] = {partner: l2_rows(zb @ p["wb"]), anchor: l2_rows(za @ p["wa"])}
        return out

    def predict(self, mdata) -> Predictions:
        return anchored_predictions(mdata, self.cell_embeddings)


__all__ = [
    "LinkedCCA",
    "anchored_predictions",
    "Standardiser",
    "anchor_modality",
    "gene_matrix",
    "l2_rows",
    "log_normalise",
    "seurat_cca",
    "standardize_cells",
]
