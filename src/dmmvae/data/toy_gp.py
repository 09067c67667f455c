"""The Gaussian-process toy data of Märtens & Yau (MLCB 2023; arXiv 2403.06338), as a MuData.

Provenance
----------
The design follows the authors' generator, ``dataset/generate_toy_data.py`` of
github.com/kasparmartens/shared-private-multimodalVAE (commit 49d4676, read 2026-11-22), called
from ``dataset/load_data.py`` (``dataset.name=toy_GP``, ``dim_z="2+2+2"``, ``N=1000``) with the
README's toy command (``n_genes_top=10``, ``n_genes_bottom`` in {20, 50, 100, 250},
``n_cpgs_bottom=100``). The code here is written anew from that design; nothing is copied.

Design (what the authors' code does, and this module does too)
--------------------------------------------------------------
- Latent "2+2+2": ``z_private_1`` (2 factors), ``z_shared`` (2), ``z_private_2`` (2), every
  factor i.i.d. Uniform(-2, 2), independent of each other.
- Every feature is an independent draw of a zero-mean Gaussian process with an RBF kernel
  (lengthscale 1, variance 1) evaluated at the cells' factors: ``f = L eps``, ``L L^T = K +
  jitter I``, ``eps ~ N(0, I)``. Shared-driven features are functions of ``z_shared`` only;
  private features of modality ``m`` are functions of ``z_private_m`` ONLY (the authors draw
  them from a GP over the private factors alone, not over shared + private).
- Modality 1 = ``n_shared_features`` shared-driven + ``n_private_1`` private features;
  modality 2 = ``n_shared_features`` shared-driven (their own GP draws over the same
  ``z_shared``) + ``n_private_2`` private features; columns in that order.
- Each column is standardised (mean 0, sd 1 over the cells), then Gaussian noise of sd
  ``noise_sd`` (0.15) is added (standardise first, noise second, as the authors do; the
  columns are therefore not exactly unit-variance).
- Label ``y = 1[z_shared[:, 0] > 0]`` (balanced in expectation).

Draw order: factors, then the shared-driven features, then each modality's private block, then
the noise; so for one ``seed`` data sets that differ only in ``n_private_1`` share
``z_shared``, the label and the noise-free shared-driven features (a paired grid).

Differences from the authors' code, none of which changes the distribution: a seeded
``numpy.random.Generator`` instead of the global ``np.random`` state; if the Cholesky of
``K + jitter I`` fails, the jitter is multiplied by 10 until it succeeds (the value used is
recorded in ``uns['provenance']``; at the defaults, 1e-6 succeeds as in the authors' code).

Output (same shape as :func:`dmmvae.data.synthetic.simulate_shared_private`)
---------------------------------------------------------------------------
``MuData`` with modalities ``mod1`` and ``mod2`` (``uns['modality_kind'] = 'gaussian'``,
dense float32 ``.X``, ``var['driver']`` = ``"shared"`` / ``"private"``), ``obs['cell_type']``
= ``"y0"`` / ``"y1"`` and ``obs['y']`` (0/1), ``obsm['true_shared']`` (n, 2),
``obsm['true_private_mod1']`` / ``obsm['true_private_mod2']`` (n, 2), and the provenance in
``uns['provenance']``. It goes through :func:`dmmvae.data.preprocess.preprocess` (gaussian
path: values kept as they are) and :func:`dmmvae.data.scenarios.make_scenario`.
"""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

from ..constants import LABEL, MODALITY_KIND, PROVENANCE, TRUE_SHARED, true_private_key

MODALITIES = ("mod1", "mod2")
N_FACTORS = 2  # per block of the "2+2+2" latent
FACTOR_RANGE = (-2.0, 2.0)
AUTHORS_CODE = (
    "github.com/kasparmartens/shared-private-multimodalVAE@49d46762b82de89421b70159e2164244d21c8cb6"
    ":dataset/generate_toy_data.py"
)


def rbf_kernel(z: np.ndarray, lengthscale: float = 1.0, variance: float = 1.0) -> np.ndarray:
    """``variance * exp(-|z_i - z_j|^2 / (2 lengthscale^2))`` for the rows of ``z``."""
    u = np.asarray(z, dtype=np.float64) / float(lengthscale)
    sq = np.sum(u * u, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (u @ u.T), 0.0)
    return variance * np.exp(-0.5 * d2)


def _cholesky_with_jitter(k: np.ndarray, jitter: float) -> tuple[np.ndarray, float]:
    eye = np.eye(k.shape[0])
    for _ in range(8):
        try:
            return np.linalg.cholesky(k + jitter * eye), jitter
        except np.linalg.LinAlgError:
            jitter *= 10.0
    raise np.linalg.LinAlgError(f"RBF kernel not positive definite even with jitter {jitter:g}")


def gp_features(
    z: np.ndarray,
    n_features: int,
    rng: np.random.Generator,
    lengthscale: float = 1.0,
    jitter: float = 1e-6,
) -> tuple[np.ndarray, float]:
    """``n_features`` independent GP(0, RBF) draws at the rows of ``z``; returns (N, P) and
    the jitter that the Cholesky needed."""
    chol, used = _cholesky_with_jitter(rbf_kernel(z, lengthscale), jitter)
    eps = rng.standard_normal((z.shape[0], int(n_features)))
    return chol @ eps, used


def _standardise_then_noise(x: np.ndarray, noise_sd: float, rng: np.random.Generator) -> np.ndarray:
    x = (x - x.mean(axis=0, keepdims=True)) / x.std(axis=0, keepdims=True)
    return x + noise_sd * rng.standard_normal(x.shape)


def simulate_gp_toy(
    n_cells: int = 1000,
    n_private_1: int = 20,
    n_shared_features: int = 10,
    n_private_2: int = 100,
    noise_sd: float = 0.15,
    lengthscale: float = 1.0,
    seed: int = 0,
    jitter: float = 1e-6,
) -> md.MuData:
    """Simulate the authors' "2+2+2" GP toy data set (see the module docstring)."""
    if n_cells < 2 or min(n_shared_features, n_private_1, n_private_2) < 1:
        raise ValueError(
            "simulate_gp_toy: need n_cells >= 2 and at least one feature in each block "
            f"(got n_cells={n_cells}, n_shared_features={n_shared_features}, "
            f"n_private_1={n_private_1}, n_private_2={n_private_2})"
        )
    rng = np.random.default_rng(seed)
    lo, hi = FACTOR_RANGE
    z_shared = rng.uniform(lo, hi, size=(n_cells, N_FACTORS))
    z_private = {m: rng.uniform(lo, hi, size=(n_cells, N_FACTORS)) for m in MODALITIES}
    n_private = {"mod1": int(n_private_1), "mod2": int(n_private_2)}

    jitters: dict[str, float] = {}
    # one Cholesky per factor block; shared-driven features of both modalities use the same
    # kernel (same z_shared) with independent draws
    shared_draw, jitters["shared"] = gp_features(
        z_shared, 2 * n_shared_features, rng, lengthscale, jitter
    )
    blocks = {}
    for i, m in enumerate(MODALITIES):
        x_sh = shared_draw[:, i * n_shared_features : (i + 1) * n_shared_features]
        x_pr, jitters[m] = gp_features(z_private[m], n_private[m], rng, lengthscale, jitter)
        blocks[m] = _standardise_then_noise(np.hstack([x_sh, x_pr]), noise_sd, rng)

    y = (z_shared[:, 0] > 0).astype(np.int64)
    index = [f"cell{i:05d}" for i in range(n_cells)]
    obs = pd.DataFrame(
        {LABEL: pd.Categorical([f"y{v}" for v in y], categories=["y0", "y1"]), "y": y},
        index=index,
    )
    adatas = {}
    for m in MODALITIES:
        var = pd.DataFrame(
            {"driver": ["shared"] * n_shared_features + ["private"] * n_private[m]},
            index=[f"{m}_shared{j:03d}" for j in range(n_shared_features)]
            + [f"{m}_private{j:04d}" for j in range(n_private[m])],
        )
        a = ad.AnnData(X=blocks[m].astype(np.float32), obs=obs.copy(), var=var)
        a.uns[MODALITY_KIND] = "gaussian"
        adatas[m] = a
    mdata = md.MuData(adatas)
    mdata.obs = obs.copy()
    mdata.obsm[TRUE_SHARED] = z_shared.astype(np.float32)
    for m in MODALITIES:
        mdata.obsm[true_private_key(m)] = z_private[m].astype(np.float32)
    mdata.uns[PROVENANCE] = {
        "source": "GP toy data of Märtens & Yau (dmmvae.data.toy_gp.simulate_gp_toy)",
        "reference": {
            "paper": "Märtens & Yau, Disentangling shared and private latent factors in "
            "multimodal Variational Autoencoders, MLCB 2023",
            "arxiv": "2403.06338",
            "authors_code": AUTHORS_CODE,
        },
        "design": "latent 2+2+2 (private1, shared, private2), Uniform(-2,2); features = GP(RBF) "
        "draws over shared factors (shared-driven) or over the modality's private factors only "
        "(private); columns standardised then N(0, noise_sd^2) noise; y = 1[z_shared_1 > 0]",
        "params": {
            "n_cells": int(n_cells),
            "n_private_1": int(n_private_1),
            "n_shared_features": int(n_shared_features),
            "n_private_2": int(n_private_2),
            "noise_sd": float(noise_sd),
            "lengthscale": float(lengthscale),
            "seed": int(seed),
            "jitter_requested": float(jitter),
            "jitter_used": {k: float(v) for k, v in jitters.items()},
        },
    }
    return mdata


__all__ = ["MODALITIES", "gp_features", "rbf_kernel", "simulate_gp_toy"]
