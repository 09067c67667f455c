"""Ground-truth recovery on synthetic data (scikit-learn linear regression).

R^2 of a linear regression (with intercept) from the learned shared latent to true factors.
The test cells are split in two halves with ``np.random.default_rng(seed).permutation``: the
regression is fitted on the first half and R^2 is computed on the second (held-out, so extra
latent dimensions cannot inflate it), averaged uniformly over the target factors
(``sklearn.metrics.r2_score(multioutput="uniform_average")``; can be negative).
Shared factors: higher is better. Private factors of each modality: lower is better (leakage of
modality-private variation into the shared latent).
"""

from __future__ import annotations

import numpy as np


def r2_linear(z: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Held-out R^2 of ``LinearRegression`` from ``z`` (N, d) to ``target`` (N, k)."""
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
    return float(r2_score(target[score], reg.predict(z[score]), multioutput="uniform_average"))


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
