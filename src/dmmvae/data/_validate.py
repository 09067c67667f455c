"""Input checks shared by the readers and preprocessing: finite values, raw integer counts."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ..io import InputError

#: modality kinds whose matrix holds raw counts
COUNT_KINDS = ("rna", "adt", "atac")


def _values(X: Any) -> np.ndarray:
    """The stored values of X (sparse: ``.data``; dense: flat view)."""
    if sp.issparse(X):
        return np.asarray(X.data) if hasattr(X, "data") else np.asarray(sp.csr_matrix(X).data)
    return np.asarray(X).reshape(-1)


def validate_modality(adata: ad.AnnData, name: str, kind: str, where: str = "input") -> None:
    """Raise InputError on NaN/inf, and for count kinds on negative or non-integer values."""
    vals = _values(adata.X)
    step = 1 << 24
    for start in range(0, vals.size, step):
        chunk = vals[start : start + step]
        if not np.all(np.isfinite(chunk)):
            bad = int((~np.isfinite(chunk)).sum())
            raise InputError(
                f"{where}: modality '{name}' contains {bad}+ NaN/inf values; "
                "fix: remove or impute them upstream (raw counts must be finite)"
            )
        if kind in COUNT_KINDS:
            if np.any(chunk < 0):
                raise InputError(
                    f"{where}: modality '{name}' ({kind}) has negative values where raw counts "
                    "are expected; fix: provide raw UMI/fragment counts (e.g. layers['counts']), "
                    "not normalised or scaled data"
                )
            frac = chunk != np.round(chunk)
            if np.any(frac):
                ex = chunk[frac][:3].tolist()
                raise InputError(
                    f"{where}: modality '{name}' ({kind}) has non-integer values (e.g. {ex}) "
                    "where raw counts are expected; fix: provide raw counts (for an .h5ad with "
                    "normalised .X, store the counts in layers['counts']), or declare the "
                    "modality kind 'gaussian' if it is already normalised"
                )


__all__ = ["COUNT_KINDS", "validate_modality"]
