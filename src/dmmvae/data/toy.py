"""A small synthetic scenario and matching predictions, for tests, benchmarks and examples of
the evaluation (``toy_scenario``, ``toy_predictions``).

Cells come from ``n_types`` clusters in a shared latent space; each modality adds private
factors. RNA (sparse, normalize_total 1e4 + log1p of Poisson counts), ADT (CLR) and ATAC
(binary, sparse) follow the scoring normalizations of ``PROTOCOL.md``. The predictions are the
true shared factors plus noise of size ``noise`` (0 = perfect embeddings), so metric values move
in known directions with ``noise``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dmmvae.constants import (
    BATCH,
    JOINT,
    LABEL,
    MODALITY_KIND,
    PROVENANCE,
    SPLIT,
    TEST,
    TRAIN,
    TRUE_SHARED,
    true_private_key,
)
from dmmvae.io import Predictions


def toy_scenario(
    n_cells: int = 400,
    *,
    n_genes: int = 60,
    n_proteins: int = 12,
    n_peaks: int = 80,
    n_types: int = 4,
    n_shared: int = 4,
    n_batches: int = 2,
    modalities: tuple[str, ...] = ("rna", "adt", "atac"),
    seed: int = 0,
):
    """A MuData following the data contract of ``dmmvae.constants`` (test split = 20 %)."""
    import anndata as ad
    import mudata as md

    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    centres = rng.normal(scale=2.0, size=(n_types, n_shared))
    z = centres[types] + rng.normal(scale=0.5, size=(n_cells, n_shared))
    names = [f"cell{i}" for i in range(n_cells)]
    obs = pd.DataFrame(index=names)
    perm = np.random.default_rng(seed).permutation(n_cells)
    split = np.full(n_cells, TEST, dtype=object)
    split[perm[: int(0.8 * n_cells)]] = TRAIN
    obs[SPLIT] = split
    obs[LABEL] = pd.Categorical([f"type{t}" for t in types])
    obs[BATCH] = pd.Categorical([f"b{b}" for b in rng.integers(0, max(1, n_batches), n_cells)])
    mods = {}
    private = {}
    for m in modalities:
        n_feat = {"rna": n_genes, "adt": n_proteins, "atac": n_peaks}[m]
        priv = rng.normal(size=(n_cells, 2))
        private[m] = priv
        w = rng.normal(scale=0.6, size=(n_shared, n_feat))
        wp = rng.normal(scale=0.4, size=(2, n_feat))
        eta = z @ w + priv @ wp
        if m == "rna":
            counts = rng.poisson(np.exp(eta.clip(-5, 5) + 1.0)).astype(np.float32)
            lib = counts.sum(1, keepdims=True).clip(1)
            x = sp.csr_matrix(np.log1p(counts / lib * 1e4).astype(np.float32))
        elif m == "adt":
            counts = rng.poisson(np.exp(eta.clip(-5, 5) + 3.0)).astype(np.float32)
            lx = np.log1p(counts)
            x = (lx - lx.mean(1, keepdims=True)).astype(np.float32)
        else:
            prob = 1 / (1 + np.exp(-(eta - 1.5)))
            x = sp.csr_matrix((rng.random(prob.shape) < prob).astype(np.float32))
        a = ad.AnnData(x, obs=pd.DataFrame(index=names))
        a.var_names = [f"{m}_{j}" for j in range(n_feat)]
        a.uns[MODALITY_KIND] = m
        mods[m] = a
    mdata = md.MuData(mods)
    for col in obs:
        mdata.obs[col] = obs[col].values
    mdata.obsm[TRUE_SHARED] = z.astype(np.float32)
    for m, priv in private.items():
        mdata.obsm[true_private_key(m)] = priv.astype(np.float32)
    mdata.uns[PROVENANCE] = {"source": "dmmvae.data.toy:toy_scenario", "seed": seed}
    return mdata


def toy_predictions(mdata, *, noise: float = 0.3, seed: int = 1, dim: int | None = None,
                    generated: bool = True) -> Predictions:
    """Predictions for the test cells of ``mdata``: noisy true shared factors as embeddings
    (plus ``dim - n_shared`` pure-noise columns), noisy truths as imputations."""
    rng = np.random.default_rng(seed)
    test = np.asarray(mdata.obs[SPLIT] == TEST)
    z = np.asarray(mdata.obsm[TRUE_SHARED])[test]
    n, k = z.shape
    dim = dim or k
    emb = {}
    for m in mdata.mod:
        e = np.hstack([z + rng.normal(scale=noise, size=z.shape), rng.normal(size=(n, dim - k))])
        emb[m] = e.astype(np.float32)
    emb[JOINT] = np.mean([emb[m] for m in mdata.mod], axis=0)
    imp = {}
    for s in mdata.mod:
        for t in mdata.mod:
            if s == t:
                continue
            x = mdata.mod[t].X[test]
            x = x.toarray() if sp.issparse(x) else np.asarray(x)
            p = x + rng.normal(scale=noise + 1e-3, size=x.shape)
            if mdata.mod[t].uns[MODALITY_KIND] == "atac":
                p = 1 / (1 + np.exp(-(4 * p - 2)))
            imp[(s, t)] = p.astype(np.float32)
    gen = {}
    if generated:
        for m in mdata.mod:
            x = mdata.mod[m].X[test]
            x = x.toarray() if sp.issparse(x) else np.asarray(x)
            gen[m] = (x[rng.permutation(n)] + rng.normal(scale=noise, size=x.shape)).astype(
                np.float32
            )
    cross = {}
    if generated:  # "sampled" cross-modal generations: observed cells of other test cells
        for s, t in imp:
            x = mdata.mod[t].X[test]
            x = x.toarray() if sp.issparse(x) else np.asarray(x)
            cross[(s, t)] = (x[rng.permutation(n)] + rng.normal(scale=noise, size=x.shape)).astype(
                np.float32)
    return Predictions(np.asarray(mdata.obs_names[test]), emb, imp, gen,
                       info={"shared_dims": list(range(k))}, cross_generated=cross)


def manifold(n: int, seed: int) -> np.ndarray:
    """2-D latent: 4 clusters of unequal sizes at unequal distances (no isometry swaps them),
    each with a continuous within-cluster spread."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 7.0], [9.0, 9.0]])
    sizes = np.array([0.4, 0.3, 0.2, 0.1])
    lab = rng.choice(4, size=n, p=sizes)
    return centres[lab] + rng.normal(scale=[1.2, 0.5], size=(n, 2))


def nonlinear_view(z: np.ndarray, d: int, seed: int, noise: float = 0.1) -> np.ndarray:
    """A noisy nonlinear view of the latent ``z`` in ``d`` features."""
    rng = np.random.default_rng(seed)
    h = np.tanh(z @ rng.normal(scale=0.4, size=(2, 16)) + rng.normal(size=16))
    x = h @ rng.normal(size=(16, d))
    return x + noise * rng.normal(size=x.shape)
