"""Ground-truth recovery on synthetic data (scikit-learn linear regression).

R^2 of a linear regression (with intercept) from the learned shared latent to true factors.
The test cells are split in two halves with ``np.random.default_rng(seed).permutation``: the
regression is fitted on the first half and R^2 is computed on the second (held-out, so extra
latent dimensions cannot inflate it), averaged uniformly over the target factors
(``sklearn.metrics.r2_score(multioutput="uniform_average")``; can be negative).
Shared factors: higher is better. Private factors of each modality: lower is better (leakage of
modality-private variation into the shared latent).

PROTOCOL computes it from EACH single-modality embedding (a joint embedding of test cells built
from both modalities hides whether the modalities are aligned), and adds the ``cross`` R^2: the
regression fitted on modality a's embedding (first half of the test cells) applied to modality
b's embedding (second half). An aligned model scores high on both; a model whose two
modalities each encode the factors in their own rotation scores high per modality and low
across (:func:`recovery_by_modality`). Predictions hold test-cell embeddings only, so the
regression is fitted on one half of the test cells and scored on the other (cross-fitting),
never on the same cells.
"""

from __future__ import annotations

import numpy as np


def r2_linear(
    z: np.ndarray, target: np.ndarray, seed: int = 0, z_apply: np.ndarray | None = None
) -> float:
    """Held-out R^2 of ``LinearRegression`` from ``z`` (N, d) to ``target`` (N, k); with
    ``z_apply`` (N, d, the same cells seen another way) the regression fitted on ``z`` is
    applied to ``z_apply`` on the held-out half."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    z = np.asarray(z, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if target.ndim == 1:
        target = target[:, None]
    if z.ndim != 2 or len(z) != len(target):
        raise ValueError(f"recovery: need (N, d) latent and (N, k) factors, got {z.shape}, "
                         f"{target.shape}")
    if len(z) < 4:
        raise ValueError(f"recovery: need at least 4 cells, got {len(z)}")
    if not np.isfinite(z).all():
        raise ValueError("recovery: latent contains NaN or infinite values")
    perm = np.random.default_rng(seed).permutation(len(z))
    half = len(z) // 2
    fit, score = perm[:half], perm[half:]
    reg = LinearRegression().fit(z[fit], target[fit])
    z_score = z if z_apply is None else np.asarray(z_apply, dtype=np.float64)
    if z_score.shape != z.shape or not np.isfinite(z_score).all():
        raise ValueError(f"recovery: the second embedding must be finite and {z.shape}")
    return float(r2_score(target[score], reg.predict(z_score[score]),
                          multioutput="uniform_average"))


def ground_truth_recovery(
    z_shared: np.ndarray,
    true_shared: np.ndarray,
    true_private: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """``{"shared_r2": ..., "private_r2/<mod>": ...}`` (see module docstring)."""
    out = {"shared_r2": r2_linear(z_shared, true_shared, seed)}
    for mod, fac in (true_private or {}).items():
        out[f"private_r2/{mod}"] = r2_linear(z_shared, fac, seed)
    return out


def recovery_by_modality(
    embeddings: dict[str, np.ndarray],
    true_shared: np.ndarray,
    true_private: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Per single-modality embedding ``m``: ``shared_r2/<m>`` and ``private_r2/<m>`` (to m's own
    private factors); per ordered pair: ``shared_r2/<a>-><b>`` (fitted on a, applied to b)."""
    out: dict[str, float] = {}
    mods = list(embeddings)
    for m in mods:
        out[f"shared_r2/{m}"] = r2_linear(embeddings[m], true_shared, seed)
    for a in mods:
        for b in mods:
            if a != b:
                out[f"shared_r2/{a}->{b}"] = r2_linear(embeddings[a], true_shared, seed,
                                                      z_apply=embeddings[b])
    for m in mods:
        if true_private and m in true_private:
            out[f"private_r2/{m}"] = r2_linear(embeddings[m], true_private[m], seed)
    return out
