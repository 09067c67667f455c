"""Raw MuData (counts) -> preprocessed MuData (the data contract of :mod:`dmmvae.constants`).

Steps, in order (every *fitted* quantity uses TRAIN cells only, as ``../shared/PROTOCOL.md``
demands):

1. **Validate** each modality: known ``uns["modality_kind"]``, finite values, and for count
   kinds (rna/adt/atac) non-negative integers. Bad input raises :class:`~dmmvae.io.InputError`.
2. **Cell QC** (per-cell thresholds, nothing fitted): RNA genes detected, percent
   mitochondrial counts; every count modality needs ``min_counts`` total counts. A cell is kept
   only when it passes in every modality. Zero cells left -> ``InputError``.
3. **Split** of the kept cells with :func:`dmmvae.data.scenarios.protocol_split`
   (``obs["split"]``).
4. Per modality kind:

   - ``rna``: genes detected in fewer than ``min_cells`` train cells are dropped; highly
     variable genes by the ``seurat_v3`` method on train raw counts (default 2000; all genes
     when fewer). ``.X`` = normalize_total(1e4) over ALL genes -> log1p -> kept genes.
     ``extra_genes=K`` additionally keeps the K *least* variable genes of the same ranking
     (``var["extra_gene"]``, ``var["extra_gene_rank"]`` 0 = least variable, -1 otherwise).
   - ``atac``: peaks open (count > 0) in >= ``min_cell_fraction`` of train cells are kept;
     ``.X`` = binarised (0/1). TF-IDF (``log1p(1e4 * x / n_open(cell)) * log1p(n_train /
     n_open_train(peak))``) and a truncated SVD (scikit-learn ``TruncatedSVD``) fitted on train
     cells give ``obsm["X_lsi"]``; the IDF sits in ``var["idf"]``, the loadings in
     ``varm["lsi_loadings"]``.
   - ``adt``: ``.X`` = CLR as PROTOCOL defines it: ``log1p(x) - mean over the cell's proteins
     of log1p(x)`` (dense float32).
   - ``gaussian``: already normalised; ``.X`` kept as float32, no counts layer.

   Count kinds keep ``layers["counts"]`` (float32 CSR raw counts of the kept features) and
   ``obs["library_size"]`` (total counts over all features before selection).

Highly variable genes: ``scanpy.pp.highly_variable_genes(flavor="seurat_v3")`` (Stuart et
al. 2019; loess from scikit-misc) on the raw counts of the train cells, so the gene ranking is
the one every scanpy user gets.

Sparse matrices stay sparse end to end; derived matrices share index arrays where possible.

Parameters (``params`` dict; every key optional; defaults in the config schema, read by
:func:`dmmvae.schema.schema_defaults`)
------------------------------------------------------------------------------------
``train_fraction`` (float, 0.8)
    Fraction of the kept cells in the train split (PROTOCOL: 0.8).
``rna.min_genes`` (int or "auto", "auto")
    A cell needs at least this many detected genes. "auto" = 200 for a whole transcriptome
    (>= ``whole_transcriptome_genes`` genes), 0 for a gene panel or a gene subset (such as the
    offline stand-ins), where the number of detected genes says little about cell quality.
``rna.max_genes`` (int or null, null)
    Upper bound on detected genes (doublet guard); null = no bound.
``rna.max_pct_mito`` (float, null or "auto", "auto")
    Cells with more than this percent of counts in mitochondrial genes are removed (skipped
    when the data have no gene starting with ``mito_prefix``). "auto" = 20 for a whole
    transcriptome, no filter for a gene subset (the percentage over a subset is inflated);
    null = no filter.
``rna.whole_transcriptome_genes`` (int, 10000)
    Gene count from which the "auto" thresholds treat the RNA modality as a transcriptome.
``rna.mito_prefix`` (str, "MT-")
    Mitochondrial gene name prefix, matched case-insensitively (covers mouse "mt-").
``rna.min_cells`` (int, 3)
    A gene must be detected in at least this many TRAIN cells to be considered.
``rna.n_top_genes`` (int, 2000)
    Number of highly variable genes (seurat_v3 on train counts); all genes when fewer.
``rna.extra_genes`` (int, 0)
    K least variable genes kept in addition (MMVAE++ "unrelated genes" experiment).
``rna.target_sum`` (float, 1e4)
    normalize_total target.
``<kind>.min_counts`` (int, 1) for rna, adt, atac
    A cell needs at least this many counts in that modality (an empty modality cannot be
    normalised).
``atac.min_cell_fraction`` (float, 0.01)
    Keep peaks open in at least this fraction of train cells.
``atac.n_lsi`` (int, 50)
    LSI components (capped at ``min(n_peaks, n_train) - 1``); 0 disables LSI.
``atac.tfidf_scale`` (float, 1e4)
    Scale factor inside the TF log.
``links.*`` (linked features, :mod:`dmmvae.data.links`)
    ``promoter_bp`` (2000), ``weighting`` ("none" or "glue"), ``extend_bp`` (150000),
    ``gene_annotation`` (BED/GTF path or null: the dataset's ``gene_annotation``),
    ``protein_gene`` (protein -> gene overrides: the dataset's ``protein_gene``).

The config schema (``src/dmmvae/schemas/config.schema.yaml``) holds the defaults (the top-level
``preprocessing`` default) and checks these keys (``$defs/preprocessing``) before any job runs.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import Mapping
from typing import Any

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..constants import (
    BATCH,
    COUNTS,
    LABEL,
    LIBRARY,
    LSI,
    MODALITY_KIND,
    MODALITY_KINDS,
    PROVENANCE,
    SPLIT,
    TRAIN,
)
from ..io import InputError
from ..schema import schema_defaults
from ._validate import COUNT_KINDS, validate_modality
from .links import add_links
from .scenarios import protocol_split

log = logging.getLogger(__name__)

CHUNK_ROWS = 8192  # rows per chunk when streaming over a sparse matrix

# --------------------------------------------------------------------------------------
# parameters and validation
# --------------------------------------------------------------------------------------


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults (the config schema's ``preprocessing`` and ``split.train_fraction``) overlaid
    with ``params``; unknown keys -> ValueError listing the valid ones."""
    out = {
        "train_fraction": schema_defaults("split")["train_fraction"],
        **schema_defaults("preprocessing"),
    }
    for key, val in dict(params or {}).items():
        if key not in out:
            raise ValueError(f"unknown preprocessing parameter '{key}'; valid: {sorted(out)}")
        if isinstance(out[key], dict):
            if not isinstance(val, Mapping):
                raise ValueError(f"preprocessing parameter '{key}' must be a mapping, got {val!r}")
            for sub, v in val.items():
                if sub not in out[key]:
                    raise ValueError(
                        f"unknown preprocessing parameter '{key}.{sub}'; valid: {sorted(out[key])}"
                    )
                out[key][sub] = v
        else:
            out[key] = val
    if not 0 < float(out["train_fraction"]) < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {out['train_fraction']}")
    return out


def _as_csr(X: Any) -> sp.csr_matrix:
    """float32 CSR view/copy of any matrix (no copy when it already is one)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if X.dtype != np.float32:
            X = X.astype(np.float32)
        return X
    return sp.csr_matrix(np.asarray(X, dtype=np.float32))


# --------------------------------------------------------------------------------------
# sparse helpers
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# seurat_v3 highly variable genes (scanpy)
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# per-kind processing
# --------------------------------------------------------------------------------------
def _mito_mask(var_names: pd.Index, prefix: str) -> np.ndarray:
    return np.asarray(var_names.astype(str).str.upper().str.startswith(prefix.upper()), dtype=bool)


def _qc_mask(
    name: str, kind: str, X: sp.csr_matrix, var_names: pd.Index, p: dict
) -> tuple[np.ndarray, dict]:
    """Bool mask of cells passing this modality's QC, and a report of removals per criterion.

    Not ``scanpy.pp.calculate_qc_metrics`` (scanpy 1.11.5), on purpose: on float32 counts its
    ``pct_counts_<qc_var>`` is float32 (3 of 10 counts -> 30.0000019), which flips cells at a
    ``max_pct_mito`` boundary; and it calls ``eliminate_zeros()`` on the caller's matrix in
    place. Totals and detected genes here equal its ``total_counts`` / ``n_genes_by_counts``
    (they would differ only on stored explicit zeros, which scanpy drops; none in the stand-ins).
    """
    total = _row_sums(X)
    report: dict[str, Any] = {}
    keep = total >= p["min_counts"]
    report["below_min_counts"] = int((~keep).sum())
    if kind == "rna":
        n_genes = _row_nnz(X)
        whole = X.shape[1] >= int(p["whole_transcriptome_genes"])
        mg = p["min_genes"]
        if mg == "auto":
            mg = 200 if whole else 0
        report["min_genes_used"] = int(mg)
        low = n_genes < int(mg)
        report["below_min_genes"] = int(low.sum())
        keep &= ~low
        if p["max_genes"] is not None:
            high = n_genes > int(p["max_genes"])
            report["above_max_genes"] = int(high.sum())
            keep &= ~high
        mito = _mito_mask(var_names, p["mito_prefix"])
        report["n_mito_genes"] = int(mito.sum())
        max_mito = p["max_pct_mito"]
        if max_mito == "auto":
            max_mito = 20.0 if whole else None
        report["max_pct_mito_used"] = "none" if max_mito is None else float(max_mito)
        if mito.any() and max_mito is not None:
            mt = _row_sums(_subset_columns(X, mito))
            with np.errstate(invalid="ignore", divide="ignore"):
                pct = np.where(total > 0, 100.0 * mt / total, 0.0)
            bad = pct > float(max_mito)
            report["above_max_pct_mito"] = int(bad.sum())
            keep &= ~bad
    report["kept"] = int(keep.sum())
    return keep, report


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


def _process_gaussian(a: ad.AnnData) -> tuple[ad.AnnData, dict]:
    X = a.X
    X = X.astype(np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)
    out = ad.AnnData(X=X, obs=a.obs.copy(), var=a.var.copy())
    return out, {"n_features_in": int(X.shape[1]), "n_features_out": int(X.shape[1])}


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------
def _clean_for_h5(obj: Any) -> Any:
    """Drop None values and convert tuples so a dict can be stored in ``uns``."""
    if isinstance(obj, Mapping):
        return {str(k): _clean_for_h5(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_clean_for_h5(v) for v in obj if v is not None]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "absent"


def _kind_of(name: str, a: ad.AnnData) -> str:
    kind = a.uns.get(MODALITY_KIND, name if name in MODALITY_KINDS else None)
    if kind not in MODALITY_KINDS:
        raise InputError(
            f"input: modality '{name}' has uns['{MODALITY_KIND}']={kind!r}; "
            f"fix: set it to one of {list(MODALITY_KINDS)}"
        )
    return str(kind)


def preprocess(
    raw: md.MuData, params: Mapping[str, Any] | None = None, seed: int = 0,
    where: str = "input",
) -> md.MuData:
    """Preprocess a raw-count MuData into the data contract (see module docstring).

    ``raw.obs`` may hold ``cell_type`` / ``batch`` (cast to str) and any other columns; they and
    ``raw.obsm`` (e.g. synthetic ground truth) are carried over for the kept cells.
    ``raw.uns["provenance"]`` is extended with the resolved parameters and a QC/feature report.
    """
    t0 = time.perf_counter()
    p = resolve_params(params)
    if len(raw.mod) == 0:
        raise InputError("input: the MuData has no modality; fix: give at least one modality")
    obs_names = pd.Index(raw.obs_names.astype(str))
    if raw.n_obs == 0:
        raise InputError("input: the MuData has zero cells; fix: check the source files")
    mods: dict[str, tuple[str, ad.AnnData]] = {}
    for name, a in raw.mod.items():
        kind = _kind_of(name, a)
        if a.n_obs != raw.n_obs or not np.array_equal(a.obs_names.astype(str), obs_names):
            raise InputError(
                f"input: modality '{name}' does not hold the same cells in the same order as the "
                "MuData (raw data must be a paired, aligned MuData); fix: intersect barcodes "
                "first (dmmvae.data.prepare does this)"
            )
        validate_modality(a, name, kind)
        mods[name] = (kind, a)

    # 1. cell QC -----------------------------------------------------------------------
    keep = np.ones(raw.n_obs, dtype=bool)
    qc: dict[str, Any] = {"n_cells_in": int(raw.n_obs)}
    for name, (kind, a) in mods.items():
        if kind in COUNT_KINDS:
            m_keep, rep = _qc_mask(name, kind, _as_csr(a.X), a.var_names, p[kind])
            qc[name] = rep
            keep &= m_keep
    qc["n_cells_out"] = int(keep.sum())
    if not keep.any():
        raise InputError(
            f"QC removed all {raw.n_obs} cells (report: {qc}); fix: relax the preprocessing QC "
            "thresholds (rna.min_genes, rna.max_pct_mito, <modality>.min_counts) or check that "
            "the matrix is cells x features with raw counts"
        )
    n = int(keep.sum())
    split = protocol_split(n, seed=seed, train_fraction=float(p["train_fraction"]))
    train = split == TRAIN
    if train.sum() < 2 or (~train).sum() < 1:
        raise InputError(
            f"QC left {n} cells, too few for a train/test split; fix: relax QC or use more cells"
        )

    # 2. per modality ------------------------------------------------------------------
    out_mods: dict[str, ad.AnnData] = {}
    report: dict[str, Any] = {}
    kept_idx = np.flatnonzero(keep)
    for name, (kind, a) in mods.items():
        a_kept = a[kept_idx] if n < a.n_obs else a
        if kind == "gaussian":
            res, info = _process_gaussian(a_kept)
        else:
            X = _subset_rows(_as_csr(a.X), keep)
            if kind == "rna":
                res, info = _process_rna(a_kept, X, train, p["rna"])
            elif kind == "atac":
                res, info = _process_atac(a_kept, X, train, p["atac"], seed)
            else:
                res, info = _process_adt(a_kept, X)
            del X
        res.uns[MODALITY_KIND] = kind
        res.obs_names = obs_names[kept_idx]
        out_mods[name] = res
        report[name] = {"kind": kind, **info}

    # 3. assemble ----------------------------------------------------------------------
    with md.set_options(pull_on_update=False):
        mdata = md.MuData(out_mods)
    prefixes = tuple(f"{m}:" for m in raw.mod)
    obs = raw.obs.iloc[kept_idx].copy()
    obs = obs.loc[:, [c for c in obs.columns if not str(c).startswith(prefixes)]]
    obs.index = obs_names[kept_idx]
    for key in (LABEL, BATCH):
        if key in obs:
            col = obs[key]
            obs[key] = pd.Categorical(np.where(col.isna(), "unknown", col.astype(str)))
    obs[SPLIT] = pd.Categorical(split, categories=["train", "test"])
    mdata.obs = obs
    for key, val in raw.obsm.items():
        if isinstance(val, pd.DataFrame):
            mdata.obsm[key] = val.iloc[kept_idx].set_axis(obs.index)
        else:
            mdata.obsm[key] = np.asarray(val)[kept_idx]
    prov = dict(raw.uns.get(PROVENANCE, {}))
    prov["preprocessing"] = {
        "params": p,
        "seed": seed,
        "n_train": int(train.sum()),
        "n_test": int((~train).sum()),
        "qc": qc,
        "features": report,
        "versions": {
            k: _version(k) for k in ("dmmvae", "anndata", "mudata", "scipy", "scikit-learn")
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }
    for k, v in raw.uns.items():
        if k != PROVENANCE:
            mdata.uns[k] = v
    # 4. linked features (from feature annotations only; PROTOCOL "Linked features") -------
    prov["preprocessing"]["links"] = add_links(mdata, **p["links"], where=where)
    mdata.uns[PROVENANCE] = _clean_for_h5(prov)
    return mdata


__all__ = [
    "clr",
    "preprocess",
    "rank_genes_seurat_v3",
    "resolve_params",
    "seurat_v3_variances",
    "tfidf",
    "validate_modality",
]
