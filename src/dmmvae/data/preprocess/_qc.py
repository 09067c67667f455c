"""Per-cell QC: minimum counts per modality; for RNA detected genes and percent mitochondrial."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._sparse import _row_nnz, _row_sums, _subset_columns


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
