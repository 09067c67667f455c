"""``gw_ot``: Gromov-Wasserstein optimal transport, the diagonal control that needs NO linked
feature (PROTOCOL "Controls and reference methods"; SCOT, Demetci et al. 2022).

Each modality is only known through its own geometry, so the question GW asks is: which
matching of the two sets of train cells best preserves within-modality distances?

1. Per modality, a low-dimensional view of the train cells that show it: PCA of the scoring
   normalisation (``n_pcs`` 30), or the stored LSI for ATAC (first component, which tracks
   depth, dropped), fitted on those train cells; at most ``max_cells`` cells (a seeded
   subsample) enter the transport.
2. SCOT's intra-modality distances: a k-nearest-neighbour graph (``k`` 20, connectivity) ->
   shortest-path lengths (Dijkstra), unreachable pairs set to the largest finite length, all
   divided by the maximum.
3. Entropic GW with square loss (POT ``ot.gromov.entropic_gromov_wasserstein``, ``epsilon``
   5e-3, uniform marginals) -> coupling T.
4. Barycentric projection of the partner's train cells into the anchor's view:
   ``y_j = sum_i T_ij x_i / sum_i T_ij``; anchor cells keep their own coordinates.
5. Test cells (documented placement): a test cell shown through the anchor is embedded by the
   anchor's PCA; a test cell shown through the partner takes the mean projected position of its
   ``k_place`` (5) nearest partner train cells in the partner's own view.

The anchor is the first modality of the file; with three modalities each partner is aligned to
it. Uses no pair and no link: FOSCTTM near 0.5 on data whose two modalities do not share a
geometry is the expected, honest outcome.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

from ..constants import JOINT, LSI, SPLIT, TEST, TRAIN, visible_key
from ..io import Predictions
from ._base import Method, MissingDependencyError


def import_ot():
    try:
        import ot  # POT: Python Optimal Transport
    except ImportError as err:  # pragma: no cover - pinned dependency
        raise MissingDependencyError(
            "gw_ot needs POT (pip install pot==0.9.7.post1; part of the project's dependencies)"
        ) from err
    return ot


def graph_distances(Z: np.ndarray, k: int) -> np.ndarray:
    """SCOT's intra-domain distances: kNN-graph shortest paths, normalised by the maximum."""
    k = int(min(k, len(Z) - 1))
    G = kneighbors_graph(Z, k, mode="connectivity", include_self=False)
    D = shortest_path(sp.csr_matrix(G.maximum(G.T)), method="D", directed=False)
    finite = np.isfinite(D)
    D[~finite] = D[finite].max() if finite.any() else 1.0
    return D / max(D.max(), 1e-12)


def gw_coupling(D_a: np.ndarray, D_b: np.ndarray, epsilon: float, max_iter: int, seed: int):
    """Entropic Gromov-Wasserstein coupling between two distance matrices (uniform marginals)."""
    ot = import_ot()
    p = np.full(len(D_a), 1.0 / len(D_a))
    q = np.full(len(D_b), 1.0 / len(D_b))
    np.random.seed(seed)  # noqa: NPY002 - POT's internal initialisations use the legacy RNG
    T = ot.gromov.entropic_gromov_wasserstein(
        D_a, D_b, p, q, loss_fun="square_loss", epsilon=float(epsilon), max_iter=int(max_iter)
    )
    return np.asarray(T, dtype=np.float64)


def barycentric_projection(T: np.ndarray, X_anchor: np.ndarray) -> np.ndarray:
    """Each partner cell (column of T) as the T-weighted mean of anchor cells."""
    w = T.sum(axis=0)
    return (T.T @ X_anchor) / np.where(w > 0, w, 1.0)[:, None]


class GromovWassersteinOT(Method):
    """SCOT-style GW transport and barycentric projection (see the module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_pcs": 30,
        "k": 20,  # kNN graph of the intra-modality distances
        "epsilon": 5e-3,  # entropic regularisation
        "max_iter": 500,
        "max_cells": 1500,  # train cells per modality entering the transport
        "k_place": 5,  # neighbours that place a partner test cell
    }

    def _view(self, mdata: md.MuData, mod: str, rows: np.ndarray, seed: int):
        a = mdata.mod[mod]
        if LSI in a.obsm and a.obsm[LSI].shape[1] > 2:
            lsi = np.asarray(a.obsm[LSI])[:, 1:]

            def embed(idx, lsi=lsi):
                return lsi[idx]

            return embed
        X_fit = a.X[rows]
        n = max(1, min(int(self.params["n_pcs"]), X_fit.shape[0] - 1, X_fit.shape[1] - 1))
        X_fit = X_fit.toarray() if sp.issparse(X_fit) else np.asarray(X_fit)
        pca = PCA(n, random_state=seed).fit(X_fit)

        def embed(idx, a=a, pca=pca):
            X = a.X[idx]
            return pca.transform(X.toarray() if sp.issparse(X) else np.asarray(X))

        return embed

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        mods = list(mdata.mod)
        self._anchor = anchor = mods[0]
        rng = np.random.default_rng(seed)
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        cells: dict[str, np.ndarray] = {}
        self._views = {}
        for m in mods:
            idx = np.flatnonzero(train & mdata.obs[visible_key(m)].to_numpy(bool))
            if len(idx) > int(self.params["max_cells"]):
                idx = np.sort(rng.choice(idx, int(self.params["max_cells"]), replace=False))
            cells[m] = idx
            self._views[m] = self._view(mdata, m, idx, seed)
        Z_anchor = self._views[anchor](cells[anchor])
        D_anchor = graph_distances(Z_anchor, int(self.params["k"]))
        self._placed: dict[str, tuple[NearestNeighbors, np.ndarray]] = {}
        info = {}
        for partner in mods[1:]:
            Z_p = self._views[partner](cells[partner])
            T = gw_coupling(D_anchor, graph_distances(Z_p, int(self.params["k"])),
                            self.params["epsilon"], self.params["max_iter"], seed)
            proj = barycentric_projection(T, Z_anchor)
            nn = NearestNeighbors(n_neighbors=min(int(self.params["k_place"]), len(Z_p))).fit(Z_p)
            self._placed[partner] = (nn, proj)
            info[partner] = {"cells": [len(cells[anchor]), len(cells[partner])],
                             "coupling_mass": float(T.sum())}
        self.train_info = {"gw": info}
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        test = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TEST)
        emb = {self._anchor: self._views[self._anchor](test)}
        for partner, (nn, proj) in self._placed.items():
            _, nbrs = nn.kneighbors(self._views[partner](test))
            emb[partner] = proj[nbrs].mean(axis=1)
        emb[JOINT] = np.mean([emb[m] for m in emb], axis=0)
        return Predictions(mdata.obs_names[test], embeddings=emb)


__all__ = ["GromovWassersteinOT", "barycentric_projection", "graph_distances", "gw_coupling"]
