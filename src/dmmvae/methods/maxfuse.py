"""``maxfuse``: MaxFuse (Chen, Zhu et al. 2023, ``maxfuse``) as a reference method for the
diagonal scenario: iterative fuzzy-smoothed matching of two modalities through their linked
features, then CCA on the matched pivots.

Optional: ``maxfuse`` is imported inside the method; without it the run is recorded as
``not_installed`` (:class:`MissingDependencyError`) with the install hint.

Inputs (train cells only, scenario masks respected; two modalities, the first of the file,
RNA in every stand-in, is MaxFuse's ``arr1``, the one aggregated into meta-cells)
----------------------------------------------------------------------------------------------
- Shared features: the benchmark's links (:func:`gene_space`): the partner in RNA genes (gene
  activity for ATAC, linked proteins for ADT), RNA at the same genes; both log-normalised
  (``normalize_total(1e4)`` + ``log1p``); genes constant on either side's train cells dropped.
- Active features (all features): RNA and gaussian: the scoring normalisation ``.X``; ADT: its
  CLR ``.X``; ATAC: the LSI of preprocessing (``obsm["X_lsi"]``, fitted on train cells; its
  first component, which tracks depth, dropped), else the binary peaks.
- Every matrix is standardised per feature on the train cells of its own modality (MaxFuse's
  tutorials scale each dataset on its own), clipped at +-10; test cells use the train means and
  standard deviations.

Fit (MaxFuse's tutorial order and defaults): ``split_into_batches`` -> ``construct_graphs``
-> ``find_initial_pivots`` -> ``refine_pivots`` -> ``filter_bad_matches(target="pivot")``, which
fits the final CCA on the pivots. SVD sizes are capped at the number of features (``None`` =
no reduction where a matrix has fewer features than asked).

Predictions: test cells of each modality go through the fitted CCA from that modality alone
(``get_embedding``; MaxFuse standardises each side's embedding over the cells passed, here the
test cells of that modality, which uses no pairing). Joint = mean. No imputation.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..constants import COUNTS, JOINT, LSI, MODALITY_KIND, SPLIT, TEST, TRAIN, visible_key
from ..data.links import gene_space, link_matrix
from ..io import InputError, Predictions
from ._base import Method, MissingDependencyError, MissingLinksError, NotApplicableError
from .linked_cca import Standardiser, log_normalise

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "maxfuse is not installed; the reference method maxfuse needs it. Install the optional "
    "extra: pip install -e .[refs] (maxfuse==0.0.2), or leave maxfuse out of the config"
)


def import_maxfuse():
    """``import maxfuse`` or a :class:`MissingDependencyError` naming the extra to install."""
    try:
        import maxfuse
        from maxfuse import model  # noqa: F401 - the Fusor lives there
    except ImportError as e:
        raise MissingDependencyError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from e
    return maxfuse


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def _count_like(a) -> bool:
    return COUNTS in a.layers or a.uns.get(MODALITY_KIND) in ("rna", "adt", "atac")


def _cap(n: int | None, n_features: int) -> int | None:
    """An SVD size MaxFuse can use on a matrix with ``n_features`` columns (None: no SVD)."""
    return None if n is None or int(n) >= n_features else int(n)


class MaxFuse(Method):
    """MaxFuse on the benchmark's links (see the module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        # split_into_batches
        "max_outward_size": 5000,
        "matching_ratio": 4,
        # 1: no meta-cells. MaxFuse's tutorials use 2 on >= 10k cells; on the stand-ins' few
        # hundred train cells per modality meta-cells halve the pivots (gene split FOSCTTM
        # 0.40 with 2, 0.20 with 1)
        "metacell_size": 1,
        # construct_graphs
        "n_neighbors": 15,
        "graph_svd": [40, 15],  # arr1 (anchor), arr2 (partner) before the kNN graphs
        "resolution": 2.0,
        # find_initial_pivots / refine_pivots (shrinkage weights on the raw data)
        "init_wt": 0.3,
        "init_svd": [25, 20],
        "refine_wt": 0.3,
        # the tutorials' None for a low-dimensional partner (proteins); capped at the number
        # of features, so 30 only reduces a wide partner (CCA on a few hundred pivots
        # over-fits hundreds of raw features)
        "refine_svd": [30, 30],
        "cca_components": 20,
        "filter_prop": 0.3,  # fraction of pivots dropped as bad matches
        "clip": 10.0,
    }
    #: MaxFuse matches cells, no paired train cell needed
    TRAINING_KEYS: ClassVar[frozenset[str]] = frozenset()

    def _shared(self, mdata: md.MuData, anchor: str, partner: str) -> tuple[np.ndarray, ...]:
        Xa, genes_a = gene_space(mdata, anchor, rna=anchor)
        Xb, genes_b = gene_space(mdata, partner, rna=anchor)
        ia = pd.Index(genes_a).get_indexer(genes_b)
        A, B = sp.csr_matrix(Xa)[:, ia], sp.csr_matrix(Xb)
        # count-like modalities are log-normalised; gaussian ones (gene split) are used as given
        A = log_normalise(A) if _count_like(mdata.mod[anchor]) else A
        B = log_normalise(B) if _count_like(mdata.mod[partner]) else B
        return _dense(A), _dense(B)

    @staticmethod
    def _active(mdata: md.MuData, mod: str) -> np.ndarray:
        a = mdata.mod[mod]
        if a.uns.get(MODALITY_KIND) == "atac" and LSI in a.obsm and a.obsm[LSI].shape[1] > 2:
            return np.asarray(a.obsm[LSI], dtype=np.float64)[:, 1:]
        return _dense(a.X)

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        mf = import_maxfuse()
        mods = list(mdata.mod)
        if len(mods) != 2:
            raise NotApplicableError(
                f"maxfuse: matches two modalities; the scenario has {mods}. Fix: leave maxfuse "
                "out for this dataset in the config"
            )
        anchor, partner = self._mods = mods
        if link_matrix(mdata, anchor, partner).nnz == 0:
            raise MissingLinksError(
                f"maxfuse: '{anchor}' and '{partner}' have no linked feature; MaxFuse needs "
                "shared features. Fix: give gene coordinates (10x 'interval' or gene_annotation) "
                "or protein->gene links"
            )
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        rows = {}
        for m in mods:
            key = visible_key(m)
            rows[m] = train & (mdata.obs[key].to_numpy(bool) if key in mdata.obs else True)
            if rows[m].sum() < 50:
                raise InputError(f"maxfuse: only {int(rows[m].sum())} train cells show '{m}'; "
                                 "need >= 50")
        p = self.params
        SA, SB = self._shared(mdata, anchor, partner)
        keep = (SA[rows[anchor]].std(0) > 0) & (SB[rows[partner]].std(0) > 0)
        if keep.sum() < 2:
            raise InputError(
                f"maxfuse: only {int(keep.sum())} linked genes vary in both '{anchor}' and "
                f"'{partner}' train cells; fix: give more links, or leave maxfuse out"
            )
        self._keep = keep
        AA, AB = self._active(mdata, anchor), self._active(mdata, partner)
        clip = float(p["clip"])
        self._scalers = {
            "shared": (Standardiser(SA[rows[anchor]][:, keep], clip),
                       Standardiser(SB[rows[partner]][:, keep], clip)),
            "active": (Standardiser(AA[rows[anchor]], clip), Standardiser(AB[rows[partner]], clip)),
        }
        (s1, s2), (a1, a2) = self._scalers["shared"], self._scalers["active"]
        shared1, shared2 = s1(SA[rows[anchor]][:, keep]), s2(SB[rows[partner]][:, keep])
        active1, active2 = a1(AA[rows[anchor]]), a2(AB[rows[partner]])
        n_sh, n1, n2 = shared1.shape[1], active1.shape[1], active2.shape[1]
        out = io.StringIO()  # MaxFuse prints its progress: keep it for the log
        # Reproducibility: MaxFuse's exact SVD (scipy ``svds`` without a start vector) draws a
        # fresh unseeded start each call under scipy >= 1.15, so results vary run to run; its
        # randomized SVD (sklearn, ``random_state=None``) draws from numpy's legacy global RNG,
        # which is seeded here. Hence ``randomized_svd=True`` in every step below.
        np.random.seed(int(seed))  # noqa: NPY002
        rsvd = {"randomized_svd": True, "svd_runs": 1}
        with contextlib.redirect_stdout(out):
            fusor = mf.model.Fusor(shared1, shared2, active1, active2)
            fusor.split_into_batches(max_outward_size=int(p["max_outward_size"]),
                                     matching_ratio=float(p["matching_ratio"]),
                                     metacell_size=int(p["metacell_size"]), seed=int(seed))
            fusor.construct_graphs(
                n_neighbors1=int(p["n_neighbors"]), n_neighbors2=int(p["n_neighbors"]),
                svd_components1=_cap(p["graph_svd"][0], n1),
                svd_components2=_cap(p["graph_svd"][1], n2),
                resolution1=float(p["resolution"]), resolution2=float(p["resolution"]),
                leiden_seed=int(seed), **rsvd)
            fusor.find_initial_pivots(wt1=float(p["init_wt"]), wt2=float(p["init_wt"]),
                                      svd_components1=_cap(p["init_svd"][0], n_sh),
                                      svd_components2=_cap(p["init_svd"][1], n_sh), **rsvd)
            fusor.refine_pivots(wt1=float(p["refine_wt"]), wt2=float(p["refine_wt"]),
                                svd_components1=_cap(p["refine_svd"][0], n1),
                                svd_components2=_cap(p["refine_svd"][1], n2),
                                cca_components=int(min(p["cca_components"], n1, n2)),
                                n_iters=1, **rsvd)
            fusor.filter_bad_matches(target="pivot", filter_prop=float(p["filter_prop"]))
        log.info("maxfuse:\n%s", out.getvalue())
        self._fusor = fusor
        n_pivots = len(fusor.get_matching(order=(2, 1), target="pivot")[0])
        self.train_info = {
            "maxfuse_version": getattr(mf, "__version__", "0.0.2"),
            "n_train_cells": {m: int(r.sum()) for m, r in rows.items()},
            "shared_features": int(n_sh),
            "active_features": {anchor: int(n1), partner: int(n2)},
            "pivot_pairs": int(n_pivots),
        }
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        anchor, partner = self._mods
        test = mdata.obs[SPLIT].to_numpy() == TEST
        a1, a2 = self._scalers["active"]
        z1, z2 = self._fusor.get_embedding(a1(self._active(mdata, anchor)[test]),
                                           a2(self._active(mdata, partner)[test]))
        emb = {anchor: np.asarray(z1, np.float32), partner: np.asarray(z2, np.float32)}
        emb[JOINT] = (emb[anchor] + emb[partner]) / 2
        return Predictions(mdata.obs_names[test], embeddings=emb,
                           info={"model": "maxfuse", "params": self.params,
                                 "notes": ["no imputation: MaxFuse matches and embeds cells"],
                                 **self.train_info})


__all__ = ["INSTALL_HINT", "MaxFuse", "import_maxfuse"]
