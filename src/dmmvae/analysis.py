"""What the report computes from predictions before it draws them: UMAP coordinates, Leiden
clusters of the joint embedding, and the feature each imputation scatter plot shows."""

from __future__ import annotations

import warnings

import numpy as np

#: UMAP optimisation epochs for the report's embeddings
UMAP_EPOCHS = 200


def umap_coords(x: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP of ``x`` on its exact Euclidean 15-nearest neighbours, found by scikit-learn and
    handed to umap-learn (``precomputed_knn``). umap-learn also uses exact neighbours below
    4,096 points (NN-descent above); handing them over spares each report process the numba
    compilation of umap-learn's kNN code (first UMAP 13.7 -> 6.8 s, later ones 0.6 -> 0.3 s on
    600 points)."""
    import umap  # optional heavy dependency (numba compilation): only when a report is drawn
    from sklearn.neighbors import NearestNeighbors

    n_nb = int(min(15, max(2, len(x) - 1)))
    dist, idx = NearestNeighbors(n_neighbors=n_nb).fit(x).kneighbors(x)  # self first, as umap
    with warnings.catch_warnings():  # no search index: we never call .transform
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        return umap.UMAP(n_neighbors=n_nb, random_state=seed, n_jobs=1, n_epochs=UMAP_EPOCHS,
                         precomputed_knn=(idx, dist, None)).fit_transform(x)


def leiden(z: np.ndarray, seed: int) -> np.ndarray:
    import anndata as ad  # heavy (scanpy): only when a report is drawn
    import scanpy as sc

    a = ad.AnnData(np.asarray(z, dtype=np.float32))
    sc.pp.neighbors(a, n_neighbors=int(min(15, max(2, len(z) - 1))), use_rep="X",
                    random_state=seed)
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    return np.asarray(a.obs["leiden"]).astype(str)


def most_variable_feature(x: np.ndarray) -> int:
    """The column of ``x`` (cells x features) with the largest variance: the feature an
    imputation scatter plot shows."""
    return int(np.argmax(np.asarray(x).var(axis=0)))


__all__ = ["UMAP_EPOCHS", "leiden", "most_variable_feature", "umap_coords"]
