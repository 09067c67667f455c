"""The "diagonal gene split" demo dataset: real PBMC cells, two disjoint gene halves.

scanpy ships ``pbmc68k_reduced`` (700 real PBMC, 10 labelled types, 765 genes, log-normalised
values in ``.raw``). Splitting its genes into two disjoint random halves gives two "modalities"
measured in the same cells, so the true pairing is known exactly: the first sanity test of a
diagonal integration method (proposed by the D-MMVAE project). Both halves are ``gaussian``
modalities (normalised values, no counts).
"""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..constants import LABEL, MODALITY_KIND, PROVENANCE

HALF_A, HALF_B = "genes_a", "genes_b"


def pbmc68k_gene_split(seed: int = 0) -> md.MuData:
    import scanpy as sc

    full = sc.datasets.pbmc68k_reduced()
    X = full.raw.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    genes = np.asarray(full.raw.var_names)
    perm = np.random.default_rng(seed).permutation(len(genes))
    halves = {HALF_A: np.sort(perm[: len(genes) // 2]), HALF_B: np.sort(perm[len(genes) // 2 :])}
    obs = pd.DataFrame({LABEL: full.obs["bulk_labels"].astype(str).astype("category")})
    obs.index = full.obs_names.astype(str)
    mods = {}
    for name, idx in halves.items():
        a = ad.AnnData(
            X=X[:, idx].astype(np.float32),
            obs=obs.copy(),
            var=pd.DataFrame(index=genes[idx]),
        )
        a.uns[MODALITY_KIND] = "gaussian"
        mods[name] = a
    mdata = md.MuData(mods)
    mdata.obs = obs.copy()
    mdata.uns[PROVENANCE] = {
        "source": "scanpy.datasets.pbmc68k_reduced (.raw, log-normalised), genes split in two halves",
        "split_seed": seed,
        "n_genes_per_half": {k: len(v) for k, v in halves.items()},
    }
    return mdata
