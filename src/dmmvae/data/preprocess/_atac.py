"""ATAC: peaks open in enough train cells, binarised; TF-IDF and an LSI fitted on train cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ...constants import COUNTS, LIBRARY, LSI, LSI_ALL
from ...io import InputError
from ._sparse import _row_sums, _scale_rows_log1p, _subset_columns, _train_column_stats


def tfidf(X_bin: sp.csr_matrix, idf: np.ndarray, scale: float) -> sp.csr_matrix:
    """``log1p(scale * x / n_open(cell)) * idf`` for a binary CSR (shares its index arrays)."""
    n_open = np.diff(X_bin.indptr).astype(np.float64)
    tf = np.where(n_open > 0, scale / np.maximum(n_open, 1), 0.0)
    return _scale_rows_log1p(X_bin, tf, idf)


#: ``scglue.data.lsi``'s ``n_iter`` in GLUE's tutorials (``lsi(atac, n_components=100, n_iter=15)``)
LSI_ALL_N_ITER = 15


def lsi_all_peaks(X: sp.csr_matrix, train: np.ndarray, n_components: int, seed: int
                  ) -> tuple[np.ndarray, dict]:
    """GLUE's ATAC LSI (``scglue.data.lsi``, the tutorials' ATAC encoder input) over every peak
    of ``X`` (cells x peaks, counts), fitted on the ``train`` rows only:

    TF-IDF on counts (idf = n_train / train counts of the peak; tf = counts / cell total), rows
    L1-normalised, ``log1p(1e4 x)``, randomised SVD (``n_iter`` 15) of the train rows; every row
    projected on the train right singular vectors and divided by the singular values (the train
    rows get exactly the left singular vectors, as scglue), then standardised per cell (mean 0,
    sd 1 over components). Peaks with no train count carry no information and are skipped.
    Returns ``(n_cells x n_components float32, info)``.
    """
    from sklearn.preprocessing import normalize
    from sklearn.utils.extmath import randomized_svd

    rows = np.flatnonzero(train)
    col_train = np.asarray(X[rows].sum(axis=0)).ravel()
    used = np.flatnonzero(col_train > 0)
    Xu = _subset_columns(X, col_train > 0).astype(np.float64)
    idf = len(rows) / col_train[used]
    tf = normalize(Xu, norm="l1", axis=1)  # counts / cell total
    x = normalize(sp.csr_matrix(tf.multiply(idf[None, :])), norm="l1", axis=1)
    x.data = np.log1p(x.data * 1e4)
    n_comp = int(min(n_components, len(used) - 1, len(rows) - 1))
    _, s, vt = randomized_svd(x[rows], n_comp, n_iter=LSI_ALL_N_ITER, random_state=seed)
    z = np.asarray(x @ vt.T) / s[None, :]
    z -= z.mean(axis=1, keepdims=True)
    z /= np.maximum(z.std(axis=1, ddof=1, keepdims=True), 1e-12)
    return z.astype(np.float32), {"n_components": n_comp, "n_peaks": int(len(used)),
                                  "n_iter": LSI_ALL_N_ITER, "fitted_on": "train cells"}


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
    n_all = int(p.get("n_lsi_all", 0))
    lsi_all_info: dict = {}
    if n_all > 0 and X.shape[1] > 2 and n_train > 2:
        out.obsm[LSI_ALL], lsi_all_info = lsi_all_peaks(X, train, n_all, seed)
        out.uns["lsi_all"] = lsi_all_info
    info = {
        "n_peaks_in": int(X.shape[1]),
        "n_peaks_out": int(keep.sum()),
        "min_cell_fraction": float(p["min_cell_fraction"]),
        "n_lsi": int(max(n_comp, 0)),
        "n_lsi_all": int(lsi_all_info.get("n_components", 0)),
        "n_peaks_lsi_all": int(lsi_all_info.get("n_peaks", 0)),
    }
    return out, info
