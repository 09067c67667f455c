"""Sparse-matrix helpers: float32 CSR, row totals, chunked row scaling, row/column subsets
and train-row column statistics, without nnz-sized float64 copies."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

CHUNK_ROWS = 8192  # rows per chunk when streaming over a sparse matrix


def _as_csr(X: Any) -> sp.csr_matrix:
    """float32 CSR view/copy of any matrix (no copy when it already is one)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if X.dtype != np.float32:
            X = X.astype(np.float32)
        return X
    return sp.csr_matrix(np.asarray(X, dtype=np.float32))


def _row_sums(X: sp.csr_matrix) -> np.ndarray:
    """Per-row totals, accumulated in float64 without copying X."""
    out = np.zeros(X.shape[0])
    nonempty = np.diff(X.indptr) > 0
    if X.nnz:
        out[nonempty] = np.add.reduceat(X.data, X.indptr[:-1][nonempty], dtype=np.float64)
    return out


def _scale_rows_log1p(
    X: sp.csr_matrix, row_scale: np.ndarray, col_weight: np.ndarray | None = None
) -> sp.csr_matrix:
    """``log1p(x * row_scale[row]) (* col_weight[col])`` as float32 CSR sharing X's index
    arrays; computed in row chunks so no nnz-sized float64 temporary is ever built."""
    data = np.empty(X.nnz, dtype=np.float32)
    lengths = np.diff(X.indptr)
    for start in range(0, X.shape[0], CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, X.shape[0])
        lo, hi = X.indptr[start], X.indptr[stop]
        d = X.data[lo:hi].astype(np.float64) * np.repeat(row_scale[start:stop], lengths[start:stop])
        np.log1p(d, out=d)
        if col_weight is not None:
            d *= col_weight[X.indices[lo:hi]]
        data[lo:hi] = d
    return sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)


def _row_nnz(X: sp.csr_matrix) -> np.ndarray:
    return np.diff(X.indptr)


def _subset_rows(X: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    if keep.all():
        return X
    return X[np.flatnonzero(keep)]


def _subset_columns(X: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """Columns ``keep`` (bool mask) of a CSR matrix, streaming over ``.data`` once."""
    keep = np.asarray(keep, dtype=bool)
    idx_dtype = np.int32 if X.nnz < np.iinfo(np.int32).max else np.int64
    remap = (np.cumsum(keep, dtype=np.int64) - 1).astype(idx_dtype)
    mask = keep[X.indices]
    cum = np.zeros(mask.size + 1, dtype=idx_dtype)
    np.cumsum(mask, out=cum[1:])
    indptr = cum[X.indptr]
    del cum
    indices = remap[X.indices[mask]].astype(idx_dtype)
    data = X.data[mask]
    out = sp.csr_matrix(
        (data, indices, indptr.astype(idx_dtype)), shape=(X.shape[0], int(keep.sum()))
    )
    out.has_sorted_indices = X.has_sorted_indices
    return out


def _train_column_stats(
    X: sp.csr_matrix, train: np.ndarray, clip: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over train rows, per column: sum, sum of squares (values clipped at ``clip`` per column
    when given), and number of nonzero rows. float64, in row chunks (no copy of X)."""
    n_col = X.shape[1]
    s = np.zeros(n_col)
    s2 = np.zeros(n_col)
    nz = np.zeros(n_col)
    rows = np.flatnonzero(train)
    for start in range(0, rows.size, CHUNK_ROWS):
        sub = X[rows[start : start + CHUNK_ROWS]]
        d = sub.data.astype(np.float64)
        if clip is not None:
            d = np.minimum(d, clip[sub.indices])
        s += np.bincount(sub.indices, weights=d, minlength=n_col)
        s2 += np.bincount(sub.indices, weights=d * d, minlength=n_col)
        nz += np.bincount(sub.indices, weights=(d != 0).astype(np.float64), minlength=n_col)
    return s, s2, nz
