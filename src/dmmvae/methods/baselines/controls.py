"""Controls of ``../shared/PROTOCOL.md``, scored by the same code as every model.

- ``pca_cca``: per-modality PCA (50 components, fitted on train cells), then CCA
  (20 components, scikit-learn ``CCA``, fitted on train cells that show both modalities);
  the modality-specific embeddings are the CCA projections. Two modalities; with three, each
  pair is fitted and a modality's embedding is its projection in the CCA of the first pair it
  belongs to (documented limitation). Needs paired train cells: in the diagonal scenario it
  records a failure instead of guessing.
- ``knn_regression``: modality B of a test cell = mean of B over its 15 nearest paired train
  cells in modality A's PCA space (imputation only).
- ``random``: Gaussian random embeddings (FOSCTTM ~0.5, label transfer at chance).
"""

from __future__ import annotations

from itertools import permutations
from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from ...constants import JOINT, SPLIT, TEST, TRAIN, visible_key
from ...io import Predictions
from .._base import Method, MissingPairsError


def _pca(X_fit, n_components: int, seed: int) -> PCA:
    n = max(1, min(n_components, X_fit.shape[0] - 1, X_fit.shape[1] - 1))
    solver = "arpack" if sp.issparse(X_fit) else "auto"
    return PCA(n_components=n, svd_solver=solver, random_state=seed).fit(X_fit)


def _train_mask(mdata: md.MuData, mods: list[str]) -> np.ndarray:
    mask = (mdata.obs[SPLIT] == TRAIN).to_numpy()
    for m in mods:
        mask &= mdata.obs[visible_key(m)].to_numpy(bool)
    return mask


def _test_mask(mdata: md.MuData) -> np.ndarray:
    return (mdata.obs[SPLIT] == TEST).to_numpy()


class PcaCca(Method):
    DEFAULTS: ClassVar[dict[str, Any]] = {"n_pcs": 50, "n_components": 20, "max_iter": 1000}
    needs_pairs = True

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        mods = list(mdata.mod)
        self._pcas = {}
        for m in mods:
            fit_rows = _train_mask(mdata, [m])
            self._pcas[m] = _pca(mdata.mod[m].X[fit_rows], self.params["n_pcs"], seed)
        self._ccas: dict[tuple[str, str], CCA] = {}
        for i, a in enumerate(mods):
            for b in mods[i + 1 :]:
                rows = _train_mask(mdata, [a, b])
                if rows.sum() < 3:
                    raise MissingPairsError(
                        f"pca_cca needs train cells showing both '{a}' and '{b}'; "
                        f"this scenario has {int(rows.sum())}"
                    )
                za = self._pcas[a].transform(mdata.mod[a].X[rows])
                zb = self._pcas[b].transform(mdata.mod[b].X[rows])
                k = min(self.params["n_components"], za.shape[1], zb.shape[1])
                self._ccas[(a, b)] = CCA(n_components=k, max_iter=self.params["max_iter"]).fit(za, zb)
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        test = _test_mask(mdata)
        mods = list(mdata.mod)
        z = {m: self._pcas[m].transform(mdata.mod[m].X[test]) for m in mods}
        emb = {}
        for m in mods:
            a, b = next(p for p in self._ccas if m in p)
            # each block is projected with its own canonical weights (test cells have both)
            za, zb = self._ccas[(a, b)].transform(z[a], z[b])
            emb[m] = za if m == a else zb
        emb[JOINT] = np.mean([emb[m] for m in mods], axis=0)
        return Predictions(mdata.obs_names[test], embeddings=emb)


class KnnRegression(Method):
    DEFAULTS: ClassVar[dict[str, Any]] = {"n_pcs": 50, "k": 15}
    needs_pairs = True

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        self._seed = seed
        self._mdata = mdata
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        test = _test_mask(mdata)
        imputations = {}
        for src, tgt in permutations(mdata.mod, 2):
            rows = _train_mask(mdata, [src, tgt])
            if rows.sum() == 0:
                raise MissingPairsError(
                    f"knn_regression needs train cells showing both '{src}' and '{tgt}'; none here"
                )
            pca = _pca(mdata.mod[src].X[_train_mask(mdata, [src])], self.params["n_pcs"], self._seed)
            z_train = pca.transform(mdata.mod[src].X[rows])
            z_test = pca.transform(mdata.mod[src].X[test])
            k = min(self.params["k"], int(rows.sum()))
            nn = NearestNeighbors(n_neighbors=k).fit(z_train)
            idx = nn.kneighbors(z_test, return_distance=False)
            n_test = idx.shape[0]
            weights = sp.csr_matrix(
                (np.full(idx.size, 1.0 / k), idx.ravel(), np.arange(0, idx.size + 1, k)),
                shape=(n_test, z_train.shape[0]),
            )
            y_train = mdata.mod[tgt].X[rows]
            pred = weights @ y_train
            imputations[(src, tgt)] = np.asarray(pred.todense() if sp.issparse(pred) else pred)
        return Predictions(mdata.obs_names[test], imputations=imputations)


class RandomEmbedding(Method):
    reads_links = False

    DEFAULTS: ClassVar[dict[str, Any]] = {"n_dims": 20}

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        self._seed = seed
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        test = _test_mask(mdata)
        rng = np.random.default_rng(self._seed)
        shape = (int(test.sum()), self.params["n_dims"])
        emb = {m: rng.normal(size=shape) for m in [*mdata.mod, JOINT]}
        return Predictions(mdata.obs_names[test], embeddings=emb)
