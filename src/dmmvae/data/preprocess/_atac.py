"""ATAC: peaks open in enough train cells, binarised; TF-IDF and an LSI fitted on train cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ...constants import COUNTS, LIBRARY, LSI
from ...io import InputError
from ._sparse import _row_sums, _scale_rows_log1p, _subset_columns, _train_column_stats


def tfidf(X_bin: sp.csr_matrix, idf: np.ndarray, scale: float) -> sp.csr_matrix:
    """``log1p(scale * x / n_open(cell)) * idf`` for a binary CSR (shares its index arrays)."""
    n_open = np.diff(X_bin.indptr).astype(np.float64)
    tf = np.where(n_open > 0, scale / np.maximum(n_open, 1), 0.0)
    return _scale_rows_log1p(X_bin, tf, idf)


def _process_atac(
    a: ad.AnnData, X: sp.csr_matrix, train: np.ndarray, p: dict, seed: int
) -> tuple[ad.AnnData, dict]:
    from sklearn.decomposition import TruncatedSVD

    library = _row_sums(X)
    n_train = int(train.sum())
    _, _, n_open = _train_column_stats(X, train)
    keep = n_open >= float(p["min_cell_fraction"]) * n_train
    keep &= n_open > 0
    if not keep.any():
        raise InputError(
            f"ATAC: no peak is open in >= {p['min_cell_fraction']:.2%} of the {n_train} train "
            "cells; fix: lower preprocessing atac.min_cell_fraction"
        )
    counts = _subset_columns(X, keep)
    counts.eliminate_zeros()
    binary = sp.csr_matrix(
        (np.ones(counts.nnz, dtype=np.float32), counts.indices, counts.indptr), shape=counts.shape
    )
    var = a.var.loc[keep].copy()
    var["n_cells_train"] = n_open[keep].astype(np.int64)
    idf = np.log1p(n_train / np.maximum(n_open[keep], 1.0))
    var["idf"] = idf.astype(np.float32)
    out = ad.AnnData(X=binary, obs=a.obs.copy(), var=var)
    out.layers[COUNTS] = counts
    out.obs[LIBRARY] = library.astype(np.float32)
    n_comp = min(int(p["n_lsi"]), binary.shape[1] - 1, n_train - 1)
    if n_comp >= 1:
        tf = tfidf(binary, idf, float(p["tfidf_scale"]))
        svd = TruncatedSVD(n_components=n_comp, algorithm="randomized", random_state=seed)
        svd.fit(tf[np.flatnonzero(train)])
        out.obsm[LSI] = svd.transform(tf).astype(np.float32)
        out.varm["lsi_loadings"] = svd.components_.T.astype(np.float32)
        out.uns["lsi"] = {
            "n_components": n_comp,
            "tfidf_scale": float(p["tfidf_scale"]),
            "explained_variance_ratio": svd.explained_variance_ratio_.astype(np.float32),
        }
        del tf
    info = {
        "n_peaks_in": int(X.shape[1]),
        "n_peaks_out": int(keep.sum()),
        "min_cell_fraction": float(p["min_cell_fraction"]),
        "n_lsi": int(max(n_comp, 0)),
    }
    return out, info
