"""Gaussian (already normalised) modalities: kept as float32."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp


def _process_gaussian(a: ad.AnnData) -> tuple[ad.AnnData, dict]:
    X = a.X
    X = X.astype(np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)
    out = ad.AnnData(X=X, obs=a.obs.copy(), var=a.var.copy())
    return out, {"n_features_in": int(X.shape[1]), "n_features_out": int(X.shape[1])}
