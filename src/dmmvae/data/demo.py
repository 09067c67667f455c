"""The "diagonal gene split" demo dataset: real PBMC cells, two disjoint gene halves.

scanpy ships ``pbmc68k_reduced`` (700 real PBMC, 10 labelled types, 765 genes, log-normalised
values in ``.raw``). Splitting its genes into two disjoint random halves gives two "modalities"
measured in the same cells, so the true pairing is known exactly: the first sanity test of a
diagonal integration method (proposed by the D-MMVAE project). Both halves are ``gaussian``
modalities (normalised values, no counts).

``link_fraction`` (default 0, the hard case of the seed: no feature in common) puts that
fraction of the genes in BOTH halves; preprocessing then links them 1:1 by name (the linked
features of PROTOCOL.md), the gene-split analogue of gene activity or linked proteins.
"""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..constants import LABEL, MODALITY_KIND, PROVENANCE

HALF_A, HALF_B = "genes_a", "genes_b"


def pbmc68k_gene_split(seed: int = 0, link_fraction: float = 0.0) -> md.MuData:
    if not 0.0 <= float(link_fraction) < 1.0:
        raise ValueError(f"link_fraction={link_fraction!r}; use a fraction in [0, 1)")
    import scanpy as sc  # heavy: imported when the dataset is built, not when config is read

    full = sc.datasets.pbmc68k_reduced()
    X = full.raw.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    genes = np.asarray(full.raw.var_names)
    perm = np.random.default_rng(seed).permutation(len(genes))
    n_shared = int(round(float(link_fraction) * len(genes)))
    shared, rest = perm[:n_shared], perm[n_shared:]
    if n_shared == 0:  # the seed's split, unchanged
        halves = {HALF_A: np.sort(perm[: len(genes) // 2]), HALF_B: np.sort(perm[len(genes) // 2 :])}
    else:
        half = len(rest) // 2
        halves = {HALF_A: np.sort(np.concatenate([shared, rest[:half]])),
                  HALF_B: np.sort(np.concatenate([shared, rest[half:]]))}
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
        "link_fraction": float(link_fraction),
        "n_genes_in_both_halves": int(n_shared),
        "n_genes_per_half": {k: len(v) for k, v in halves.items()},
    }
    return mdata
