"""ADT: the PROTOCOL's CLR."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ...constants import COUNTS, LIBRARY
from ._sparse import _row_sums


def clr(counts: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """PROTOCOL CLR: ``log1p(x) - mean over the cell's proteins of log1p(x)`` (dense float32)."""
    x = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    lx = np.log1p(x.astype(np.float64))
    return (lx - lx.mean(axis=1, keepdims=True)).astype(np.float32)


def _process_adt(a: ad.AnnData, X: sp.csr_matrix) -> tuple[ad.AnnData, dict]:
    counts = X.copy()
    counts.eliminate_zeros()
    out = ad.AnnData(X=clr(counts), obs=a.obs.copy(), var=a.var.copy())
    out.layers[COUNTS] = counts
    out.obs[LIBRARY] = _row_sums(counts).astype(np.float32)
    return out, {"n_proteins_in": int(X.shape[1]), "n_proteins_out": int(X.shape[1])}
