"""RNA: genes detected in enough train cells, seurat_v3 HVGs (plus optional least variable
genes), normalize_total + log1p."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ...constants import COUNTS, LIBRARY
from ...io import InputError
from ._hvg import rank_genes_seurat_v3
from ._provenance import _version
from ._sparse import _row_sums, _scale_rows_log1p, _subset_columns, _train_column_stats

log = logging.getLogger(__package__)  # "dmmvae.data.preprocess", the logger name before the split


def _process_rna(
    a: ad.AnnData, X: sp.csr_matrix, train: np.ndarray, p: dict
) -> tuple[ad.AnnData, dict]:
    library = _row_sums(X)
    _, _, ncells = _train_column_stats(X, train)
    candidates = ncells >= int(p["min_cells"])
    if not candidates.any():
        raise InputError(
            f"RNA: no gene is detected in >= {p['min_cells']} train cells; "
            "fix: lower preprocessing rna.min_cells or check the counts"
        )
    order, norm_var = rank_genes_seurat_v3(X, train, candidates)
    n_top = min(int(p["n_top_genes"]), order.size)
    hvg = np.zeros(X.shape[1], dtype=bool)
    hvg[order[:n_top]] = True
    hvg_rank = np.full(X.shape[1], -1, dtype=np.int64)
    hvg_rank[order] = np.arange(order.size)
    k = int(p["extra_genes"])
    extra = np.zeros(X.shape[1], dtype=bool)
    extra_rank = np.full(X.shape[1], -1, dtype=np.int64)
    if k > 0:
        least = order[n_top:][::-1][:k]  # least variable first
        extra[least] = True
        extra_rank[least] = np.arange(least.size)
        if least.size < k:
            log.warning("rna.extra_genes=%d but only %d non-HVG genes qualify", k, least.size)
    keep = hvg | extra
    counts = _subset_columns(X, keep)
    counts.eliminate_zeros()
    scale = np.where(library > 0, float(p["target_sum"]) / np.maximum(library, 1e-12), 0.0)
    norm = _scale_rows_log1p(counts, scale)
    var = a.var.loc[keep].copy()
    var["highly_variable"] = hvg[keep]
    var["highly_variable_rank"] = hvg_rank[keep]
    var["variances_norm"] = norm_var[keep].astype(np.float32)
    var["n_cells_train"] = ncells[keep].astype(np.int64)
    var["extra_gene"] = extra[keep]
    var["extra_gene_rank"] = extra_rank[keep]
    out = ad.AnnData(X=norm, obs=a.obs.copy(), var=var)
    out.layers[COUNTS] = counts
    out.obs[LIBRARY] = library.astype(np.float32)
    info = {
        "n_genes_in": int(X.shape[1]),
        "n_genes_min_cells": int(candidates.sum()),
        "n_hvg": int(hvg.sum()),
        "n_extra_genes": int(extra.sum()),
        "n_genes_out": int(keep.sum()),
        "hvg_method": f"scanpy {_version('scanpy')} highly_variable_genes(flavor='seurat_v3')",
    }
    return out, info
