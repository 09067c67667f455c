"""Realism of generated cells: classifier two-sample test (scikit-learn).

PROTOCOL: N observed test cells and N generated cells (both in the scoring normalization) are
reduced by a PCA (50 components, fitted on the observed cells only), then a logistic
regression tells them apart; the score is the 5-fold stratified cross-validated AUROC
(0.5 = indistinguishable, 1.0 = trivially separable). N = the smaller of the two counts (and at
most ``max_cells``); both sets are subsampled with ``np.random.default_rng(seed)``, so the
observed cells (and their PCA) are the same for every generated set of a modality — pass one
``cache`` dict to reuse that PCA. The PC scores are standardised inside each fold (a scaling,
for solver convergence only). Generated cells with non-finite values make the sets trivially
separable: the score is 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def _observed_pcs(observed, n: int, n_pcs: int, seed: int, cache: dict | None):
    key = (id(observed), n, n_pcs, seed)
    if cache is not None and key in cache:
        return cache[key]
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    io = np.sort(rng.choice(observed.shape[0], n, replace=False))
    obs = observed[io]
    obs = obs.toarray() if sp.issparse(obs) else np.asarray(obs)
    obs = obs.astype(np.float64)
    k = int(min(n_pcs, n - 1, obs.shape[1]))
    pca = PCA(n_components=k, random_state=seed).fit(obs)
    out = (pca, pca.transform(obs))
    if cache is not None:
        cache[key] = out
    return out


def c2st_auroc(
    observed,
    generated,
    *,
    n_pcs: int = 50,
    folds: int = 5,
    seed: int = 0,
    max_cells: int | None = 5000,
    cache: dict[Any, Any] | None = None,
) -> float:
    """Cross-validated AUROC of a classifier telling ``observed`` from ``generated`` cells."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    generated = np.asarray(generated)
    if observed.ndim != 2 or generated.ndim != 2 or observed.shape[1] != generated.shape[1]:
        raise ValueError(
            f"realism: observed and generated cells need the same features, got "
            f"{tuple(observed.shape)} and {tuple(generated.shape)}"
        )
    n = min(observed.shape[0], generated.shape[0])
    if max_cells:
        n = min(n, int(max_cells))
    if n < 2 * folds:
        raise ValueError(f"realism: need at least {2 * folds} cells of each kind, got {n}")
    ig = np.sort(np.random.default_rng(seed + 1).choice(generated.shape[0], n, replace=False))
    gen = generated[ig].astype(np.float64)
    if not np.isfinite(gen).all():
        return 1.0
    pca, obs_pcs = _observed_pcs(observed, n, n_pcs, seed, cache)
    feats = np.vstack([obs_pcs, pca.transform(gen)])
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(clf, feats, y, cv=cv, scoring="roc_auc")))
