"""Highly variable genes: scanpy's seurat_v3 on the raw counts of the train cells."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ._sparse import _subset_rows

log = logging.getLogger(__package__)  # "dmmvae.data.preprocess", the logger name before the split


def seurat_v3_variances(X: sp.csr_matrix, train: np.ndarray, span: float = 0.3) -> np.ndarray:
    """Seurat v3 normalised variance of each gene over the train rows of raw counts ``X``.

    ``scanpy.pp.highly_variable_genes(flavor="seurat_v3")`` (its loess comes from scikit-misc)
    on a sparse copy of the train rows; returns scanpy's ``variances_norm`` for every gene.
    On small inputs (a few hundred genes, few cells) loess can hit a near-singular fit; the
    span is then widened (0.3 -> 0.5 -> 0.8 -> 1.0) and the span used is logged.
    """
    import scanpy as sc

    a = ad.AnnData(X=_subset_rows(X, train))
    spans = [span] + [s for s in (0.5, 0.8, 1.0) if s > span]
    for i, sp_ in enumerate(spans):
        try:
            sc.pp.highly_variable_genes(
                a, flavor="seurat_v3", n_top_genes=X.shape[1], span=sp_, inplace=True
            )
        except ValueError as err:  # skmisc loess: "near singularities"
            if i == len(spans) - 1:
                raise
            log.warning("seurat_v3 loess failed with span %.1f (%s); retrying wider", sp_, err)
            continue
        if sp_ != span:
            log.warning("seurat_v3 HVG used loess span %.1f instead of %.1f", sp_, span)
        return a.var["variances_norm"].to_numpy(np.float64)
    raise AssertionError("unreachable")


def rank_genes_seurat_v3(
    X: sp.csr_matrix, train: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``candidates`` (bool mask), most variable first, and all normalised variances."""
    nv = seurat_v3_variances(X, train)
    idx = np.flatnonzero(candidates)
    order = np.argsort(-nv[idx], kind="stable")
    return idx[order], nv
