"""Synthetic paired data with known shared and private latent factors (the MMVAE++ design).

Shared factors ``z_s`` drive every modality; each modality ``m`` also has private factors
``z_p^m`` that drive only ``m``. Cell types are the components of a Gaussian mixture in the
shared space, so labels are recoverable from the shared factors alone. Observations:

- ``rna``: counts ~ NB(mean = library * softmax(W h), dispersion theta)
- ``atac``: binary ~ Bernoulli(sigmoid(W h + b)), b sets the sparsity (peak open rate)
- ``adt``: counts ~ NB(mean = exp(W h + b), dispersion theta)

where ``h = [z_s, z_p^m]`` passed through a fixed random one-hidden-layer map (so the
modality is a non-linear function of its factors, as in the paper's simulation).
``private_variance_ratio`` is the variance of private factors relative to shared ones: the
knob of the MMVAE++ experiment. Wide sparse outputs are generated in row chunks, so the
scale option (e.g. 100k cells x 100k binary features) never builds a dense matrix.
"""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..constants import LABEL, MODALITY_KIND, PROVENANCE, TRUE_SHARED, true_private_key

DEFAULT_MODALITIES: dict[str, dict] = {
    "rna": {"kind": "rna", "n_features": 500, "n_private": 2},
    "atac": {"kind": "atac", "n_features": 1000, "n_private": 2},
}


def _hidden_map(rng: np.random.Generator, d_in: int, d_hidden: int):
    w = rng.normal(size=(d_in, d_hidden)) / np.sqrt(d_in)
    b = rng.normal(scale=0.1, size=d_hidden)
    return lambda h: np.tanh(h @ w + b) + 0.5 * (h @ w)


def _nb_sample(rng: np.random.Generator, mean: np.ndarray, theta: float) -> np.ndarray:
    gamma = rng.gamma(shape=theta, scale=mean / theta)
    return rng.poisson(gamma)


def simulate_shared_private(
    n_cells: int = 2000,
    n_shared: int = 4,
    n_types: int = 6,
    private_variance_ratio: float = 1.0,
    modalities: Mapping[str, Mapping] | None = None,
    n_hidden: int = 32,
    library_log_mean: float = 7.0,
    library_log_sd: float = 0.3,
    theta: float = 10.0,
    atac_open_rate: float = 0.05,
    type_separation: float = 2.5,
    n_batches: int = 1,
    chunk_cells: int = 2048,
    n_linked: int = 0,
    seed: int = 0,
) -> md.MuData:
    """Simulate a paired multimodal dataset; returns a raw MuData (counts in ``.X``).

    ``modalities`` maps a modality name to ``{"kind": rna|atac|adt, "n_features": int,
    "n_private": int}``. Ground truth: ``obsm['true_shared']`` (n, n_shared) and
    ``obsm['true_private_<mod>']``; labels in ``obs['cell_type']``.

    ``n_linked`` (default 0: no feature in common, the hard diagonal case): the first
    ``n_linked`` features of EVERY modality are driven by the shared factors alone through ONE
    map common to all modalities (the same hidden map and output weights), so feature ``j`` of
    RNA, of ATAC and of ADT carry the same signal: the synthetic analogue of a gene, its peaks
    and its protein. They are made linkable by the preprocessing's own rules: every feature
    gets a genomic ``interval`` (linked genes and linked peaks on ``chrL`` at the same
    position, the others on separate chromosomes), and linked ADT features are named after
    their gene (same-name protein -> gene links). Drawn from a separate random stream, so
    ``n_linked=0`` gives exactly the data of earlier versions.
    """
    mods = {k: dict(v) for k, v in (modalities or DEFAULT_MODALITIES).items()}
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=type_separation, size=(n_types, n_shared))
    types = rng.integers(n_types, size=n_cells)
    z_s = centers[types] + rng.normal(size=(n_cells, n_shared))
    z_s = (z_s - z_s.mean(0)) / z_s.std(0)  # shared factors at unit variance
    obs = pd.DataFrame(
        {LABEL: pd.Categorical([f"type_{t}" for t in types])},
        index=[f"cell{i:06d}" for i in range(n_cells)],
    )
    if n_batches > 1:
        obs["batch"] = pd.Categorical([f"batch_{b}" for b in rng.integers(n_batches, size=n_cells)])
    private = {}
    adatas = {}
    n_linked = int(n_linked)
    if n_linked:
        lrng = np.random.default_rng([seed, 1])  # separate stream: n_linked=0 data unchanged
        link_map = _hidden_map(lrng, n_shared, n_hidden)
        w_link = lrng.normal(size=(n_hidden, n_linked)) / np.sqrt(n_hidden)
        link_bias = lrng.normal(scale=0.5, size=n_linked)
    for name, spec in mods.items():
        kind = spec.get("kind", name)
        n_feat = int(spec["n_features"])
        n_priv = int(spec.get("n_private", 2))
        z_p = rng.normal(scale=np.sqrt(private_variance_ratio), size=(n_cells, n_priv))
        private[name] = z_p
        f = _hidden_map(rng, n_shared + n_priv, n_hidden)
        w_out = rng.normal(size=(n_hidden, n_feat)) / np.sqrt(n_hidden)
        feat_bias = rng.normal(scale=0.5, size=n_feat)
        blocks = []
        for start in range(0, n_cells, chunk_cells):
            sl = slice(start, min(start + chunk_cells, n_cells))
            h = f(np.hstack([z_s[sl], z_p[sl]]))
            logits = h @ w_out + feat_bias
            if n_linked:  # the common map of the shared factors (see docstring)
                logits[:, :n_linked] = link_map(z_s[sl]) @ w_link + link_bias
            if kind == "rna":
                lib = np.exp(rng.normal(library_log_mean, library_log_sd, size=(logits.shape[0], 1)))
                p = np.exp(logits - logits.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                x = _nb_sample(rng, lib * p, theta)
            elif kind == "atac":
                base = np.log(atac_open_rate / (1 - atac_open_rate))
                x = rng.random(logits.shape, dtype=np.float32) < 1 / (1 + np.exp(-(logits + base)))
            elif kind == "adt":
                x = _nb_sample(rng, np.exp(logits + 3.0), theta)
            else:
                raise ValueError(f"modality '{name}': unknown kind '{kind}'; valid: rna, atac, adt")
            blocks.append(sp.csr_matrix(x.astype(np.float32)))
        X = sp.vstack(blocks, format="csr")
        prefix = {"rna": "gene", "atac": "peak", "adt": "protein"}[kind]
        names = [f"{name}_{prefix}{j:05d}" for j in range(n_feat)]
        var = pd.DataFrame(index=names)
        if n_linked:
            linked = min(n_linked, n_feat)
            if kind in ("rna", "adt"):  # ADT proteins named after their gene: same-name links
                names[:linked] = [f"LINKED{j:05d}" for j in range(linked)]
                var = pd.DataFrame(index=names)
            if kind in ("rna", "atac"):  # linked gene j and linked peak j overlap on chrL
                var["interval"] = [
                    f"chrL:{10_000 * j + 1}-{10_000 * j + 1_000}" if j < linked
                    else f"chr{kind.upper()}:{10_000 * j + 1}-{10_000 * j + 1_000}"
                    for j in range(n_feat)
                ]
        a = ad.AnnData(X=X, obs=obs.copy(), var=var)
        a.uns[MODALITY_KIND] = kind
        adatas[name] = a
    mdata = md.MuData(adatas)
    mdata.obs = obs.copy()
    mdata.obsm[TRUE_SHARED] = z_s.astype(np.float32)
    for name, z_p in private.items():
        mdata.obsm[true_private_key(name)] = z_p.astype(np.float32)
    mdata.uns[PROVENANCE] = {
        "source": "synthetic shared/private generator (dmmvae.data.synthetic)",
        "params": {
            "n_cells": n_cells,
            "n_shared": n_shared,
            "n_types": n_types,
            "private_variance_ratio": private_variance_ratio,
            "n_linked": n_linked,
            "modalities": mods,
            "seed": seed,
        },
    }
    return mdata
