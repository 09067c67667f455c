"""``maxfuse``: MaxFuse (Chen, Zhu et al. 2023, ``maxfuse``) as a reference method for the
diagonal scenario: iterative fuzzy-smoothed matching of two modalities through their linked
features, then CCA on the matched pivots.

Optional: ``maxfuse`` is imported inside the method; without it the run is recorded as
``not_installed`` (:class:`MissingDependencyError`) with the install hint.

The authors' recipe, by pair (PROTOCOL "Choosing settings (blind)": references run at their
authors' recipe). Sources are files of ``github.com/shuxiaoc/maxfuse`` (@7ccf6b4); the table of
values, sources and differences is ``docs/maxfuse_recipe.md``.

- RNA + ATAC (:data:`RECIPES` ``"rna_atac"``): the paper's "strong-link" runs,
  ``Archive/strong-link/10xpbmc/method_running/mf_pbmc.ipynb`` (10x PBMC multiome; the cortical,
  E18 and retina notebooks beside it differ only in SVD sizes). Shared: RNA of the linked genes
  (normalised by library size over all genes, the stand-in for their SCTransform data) and gene
  activity (normalised over the linked genes), ``log1p``, the 3000 most variable RNA genes
  (scanpy ``seurat`` flavour, on the RNA train cells), scaled. Active: RNA = the same 3000 genes,
  ATAC = peak LSI components 2-50 (49; their Signac LSI over all peaks, per-component scaled);
  here ``obsm["X_lsi_all"]`` (GLUE's LSI over all peaks, fitted on train cells), else
  ``obsm["X_lsi"]`` (the >= 1 % peaks) with a note. Smoothing 0.7, 8 refinement iterations,
  SVD 200 / none, 40 % of pivots filtered, meta-cells of 2.
- RNA + ADT (``"cite"``): the package's CITE-seq tutorial ``docs/citeseq_pbmc_evaluate.ipynb``.
  Shared: RNA genes and their proteins, both normalised to one common target (mean of the two
  median totals), ``log1p``, scaled. Active: RNA highly variable genes (scanpy defaults) of the
  library-normalised ``log1p`` expression, proteins ``normalize_total`` + ``log1p``, scaled.
  Smoothing 0.7, 3 iterations, SVD 30 / 30, 30 % filtered, meta-cells of 2.
- Any other pair (e.g. the pbmc68k gene split, two gaussian halves; ``"legacy"``): the settings
  this wrapper used before (the tonsil CODEX tutorial's smoothing 0.3 and one iteration, no
  meta-cells); MaxFuse publishes no recipe for it.

Every parameter of :attr:`MaxFuse.DEFAULTS` left at ``None`` takes the recipe's value for the
pair; a value set by the user wins (``recipe`` picks a recipe by name). ``train_info`` and the
predictions' info record the recipe, its source, every value used and the user's overrides.

Inputs: train cells only, scenario masks respected. The RNA modality (else the first of the
file) is MaxFuse's ``arr1``, the one aggregated into meta-cells, as in every notebook of the
authors. Shared features are the benchmark's links (:func:`gene_space`: gene activity for ATAC,
linked proteins summed per gene for ADT). Every normalisation target, highly-variable selection,
mean and standard deviation is fitted on the train cells of its modality; test cells reuse them.

Fit: ``split_into_batches`` -> ``construct_graphs`` -> ``find_initial_pivots`` ->
``refine_pivots`` -> ``filter_bad_matches(target="pivot")``, which fits the CCA that embeds
cells. The authors' ``propagate`` + ``filter_bad_matches(target="propagated")`` only extend the
cell-to-cell matching; ``get_embedding(refit=False)`` uses the pivot CCA, so they are skipped
(the embedding is the same). SVD sizes are capped at what a matrix allows (``None`` = no
reduction where it has fewer features than asked; below its number of rows otherwise), and
the caps are recorded.

Predictions: test cells of each modality go through the fitted CCA from that modality alone
(``get_embedding``; MaxFuse standardises each side's embedding over the cells passed, here the
test cells of that modality, which uses no pairing), keeping the first ``embedding_dims``
components (the authors' downstream 15). Joint = mean. No imputation.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...constants import (
    COUNTS,
    JOINT,
    LIBRARY,
    LSI,
    LSI_ALL,
    MODALITY_KIND,
    SPLIT,
    TEST,
    TRAIN,
    visible_key,
)
from ...data.links import gene_space, link_matrix
from ...io import InputError, Predictions
from .._base import (
    Method,
    MissingDependencyError,
    MissingLinksError,
    NotApplicableError,
    pair_recipe,
)
from ..anchors import Standardiser, log_normalise

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "maxfuse is not installed; the reference method maxfuse needs it. Install the optional "
    "extra: pip install -e .[refs] (maxfuse==0.0.2), or leave maxfuse out of the config"
)

REPO = "github.com/shuxiaoc/maxfuse@7ccf6b4"

#: The recipes: the value of every tunable parameter, and how features are built (``features``,
#: fixed by the recipe). Sources and differences: docs/maxfuse_recipe.md.
RECIPES: dict[str, dict[str, Any]] = {
    "rna_atac": {
        "source": f"{REPO}: Archive/strong-link/10xpbmc/method_running/mf_pbmc.ipynb "
                  "(cortical/method_running/mf_cortical.ipynb: the same but 18 CCA components)",
        "max_outward_size": 5000,
        "matching_ratio": 5,
        "metacell_size": 2,
        "batching": "binning",
        "n_neighbors": 15,
        "graph_svd": [30, 15],
        "resolution": 2.0,
        "init_wt": 0.7,
        "init_svd": [20, 20],
        "refine_wt": 0.7,
        "refine_svd": [200, None],
        "cca_components": 20,
        "n_iters": 8,
        "filter_prop": 0.4,
        "n_hvg_shared": 3000,
        "static_sd": 0.01,
        "lsi_components": 49,
        "embedding_dims": 15,
        "clip": 0,
        "features": {"shared": "library", "rna": "shared", "atac": LSI_ALL, "adt": "lognorm"},
    },
    "cite": {
        "source": f"{REPO}: docs/citeseq_pbmc_evaluate.ipynb (the package's CITE-seq tutorial)",
        "max_outward_size": 5000,
        "matching_ratio": 3,
        "metacell_size": 2,
        "batching": "random",
        "n_neighbors": 15,
        "graph_svd": [30, 30],
        "resolution": 2.0,
        "init_wt": 0.7,
        "init_svd": [25, 20],
        "refine_wt": 0.7,
        "refine_svd": [30, 30],
        "cca_components": 20,
        "n_iters": 3,
        "filter_prop": 0.3,
        "n_hvg_shared": 0,
        "static_sd": 1e-5,
        "lsi_components": 49,
        "embedding_dims": 15,
        "clip": 0,
        "features": {"shared": "common_target", "rna": "hvg", "atac": LSI_ALL, "adt": "lognorm"},
    },
    "legacy": {
        "source": "this wrapper's earlier settings (after the tonsil CODEX tutorial "
                  f"{REPO}: docs/tonsil_codex_rnaseq.ipynb, no meta-cells); MaxFuse publishes "
                  "no recipe for this pair",
        "max_outward_size": 5000,
        "matching_ratio": 4,
        "metacell_size": 1,
        "batching": "random",
        "n_neighbors": 15,
        "graph_svd": [40, 15],
        "resolution": 2.0,
        "init_wt": 0.3,
        "init_svd": [25, 20],
        "refine_wt": 0.3,
        "refine_svd": [30, 30],
        "cca_components": 20,
        "n_iters": 1,
        "filter_prop": 0.3,
        "n_hvg_shared": 0,
        "static_sd": 0.0,
        "lsi_components": 49,
        "embedding_dims": 0,
        "clip": 10.0,
        "features": {"shared": "1e4", "rna": "scoring", "atac": LSI, "adt": "scoring"},
    },
}
#: the parameters a recipe sets; ``None`` in DEFAULTS = the recipe's value for the pair
TUNABLE = tuple(k for k in RECIPES["legacy"] if k not in ("source", "features"))


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


def _kind(a) -> str:
    return str(a.uns.get(MODALITY_KIND, "gaussian"))


def _count_like(a) -> bool:
    return COUNTS in a.layers or _kind(a) in ("rna", "adt", "atac")


def recipe_for(kinds: tuple[str, str]) -> str:
    """The recipe name of a modality pair: RNA+ATAC, RNA+ADT (CITE-seq), else ``legacy``."""
    return pair_recipe(tuple(kinds)) or "legacy"


def _cap(n: int | None, n_features: int, n_rows: int) -> int | None:
    """An SVD size MaxFuse can use on a matrix with ``n_features`` columns and at least
    ``n_rows`` rows (None: no SVD, the matrix is no wider than asked)."""
    if n is None or int(n) >= n_features:
        return None
    return int(max(1, min(int(n), n_rows - 1)))


def _lognorm(X, totals: np.ndarray, target: float) -> np.ndarray:
    """``log1p(target * x / total)`` per cell, dense."""
    scale = np.where(totals > 0, target / np.maximum(totals, 1e-12), 0.0)
    out = sp.diags(scale) @ sp.csr_matrix(X, dtype=np.float64)
    return np.log1p(_dense(out))


def _row_sums(X) -> np.ndarray:
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()


def _hvg(X_log: np.ndarray, n_top: int | None) -> np.ndarray:
    """Scanpy's ``highly_variable_genes`` (``seurat`` flavour, on log data) of the train cells
    ``X_log``: the top ``n_top`` genes, or its default dispersion cut-offs when ``None``."""
    import anndata as ad
    import scanpy as sc

    if n_top is not None and n_top >= X_log.shape[1]:
        return np.ones(X_log.shape[1], bool)
    a = ad.AnnData(np.asarray(X_log, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_top is None:
            sc.pp.highly_variable_genes(a)
        else:
            sc.pp.highly_variable_genes(a, n_top_genes=int(n_top))
    keep = a.var["highly_variable"].to_numpy(bool)
    return keep if keep.sum() >= 2 else np.ones(X_log.shape[1], bool)


class MaxFuse(Method):
    """MaxFuse on the benchmark's links at its authors' recipe (see the module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        # None: by the pair's modality kinds ("rna_atac", "cite", else "legacy")
        "recipe": None,
        # every value below: None = the recipe's value (RECIPES; docs/maxfuse_recipe.md)
        "max_outward_size": None,  # split_into_batches
        "matching_ratio": None,
        "metacell_size": None,  # 1: no meta-cells
        "batching": None,  # "binning" or "random"
        "n_neighbors": None,  # construct_graphs
        "graph_svd": None,  # [arr1 (RNA), arr2 (partner)]
        "resolution": None,
        "init_wt": None,  # find_initial_pivots: shrinkage weight on the raw data
        "init_svd": None,
        "refine_wt": None,  # refine_pivots
        "refine_svd": None,  # [arr1, arr2]; an entry None: no SVD
        "cca_components": None,
        "n_iters": None,
        "filter_prop": None,  # filter_bad_matches(target="pivot")
        "n_hvg_shared": None,  # most variable RNA genes kept among the linked (0: all)
        "static_sd": None,  # linked genes kept when their train sd exceeds this on both sides
        "lsi_components": None,  # ATAC active: LSI components 2..(1 + this)
        "embedding_dims": None,  # first CCA components returned (0: all)
        "clip": None,  # clip of the scaled matrices (0: none, as sc.pp.scale)
    }
    #: MaxFuse matches cells, no paired train cell needed
    TRAINING_KEYS: ClassVar[frozenset[str]] = frozenset()

    # ---- settings ---------------------------------------------------------------------------
    def settings(self, kinds: tuple[str, str]) -> tuple[str, dict[str, Any], list[str]]:
        """(recipe name, every value used, the user's overrides) for a pair of modality kinds."""
        name = self.params["recipe"] or recipe_for(kinds)
        if name not in RECIPES:
            raise ValueError(f"maxfuse: recipe must be one of {sorted(RECIPES)} or None, "
                             f"got {name!r}")
        recipe = RECIPES[name]
        used = {k: (recipe[k] if self.params[k] is None else self.params[k]) for k in TUNABLE}
        overrides = sorted(k for k in TUNABLE if self.params[k] is not None
                           and self.params[k] != recipe[k])
        if used["batching"] not in ("binning", "random"):
            raise ValueError(f"maxfuse: batching must be 'binning' or 'random', "
                             f"got {used['batching']!r}")
        return name, used, overrides

    # ---- features ---------------------------------------------------------------------------
    # Each builder takes the train rows at fit (then fits and stores its normalisation targets
    # and highly-variable masks in ``self._fitted``) and none at predict (then reuses them).
    def _shared(self, mdata, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """Normalised ``log1p`` shared matrices (all cells x linked genes) of both sides."""
        anchor, partner = self._mods
        Xa, genes_a = gene_space(mdata, anchor, rna=anchor)
        Xb, genes_b = gene_space(mdata, partner, rna=anchor)
        ia = pd.Index(genes_a).get_indexer(genes_b)
        A, B = sp.csr_matrix(Xa)[:, ia], sp.csr_matrix(Xb)
        a, b = mdata.mod[anchor], mdata.mod[partner]
        mode = self._features["shared"]
        if mode == "1e4":  # legacy: log_normalise over the linked genes, 1e4
            A = log_normalise(A) if _count_like(a) else A
            B = log_normalise(B) if _count_like(b) else B
            return _dense(A), _dense(B)
        tot_b = _row_sums(B)
        if mode == "library" and _count_like(a):  # RNA by its library over all genes (~ SCT)
            tot_a = (a.obs[LIBRARY].to_numpy(np.float64) if LIBRARY in a.obs
                     else _row_sums(self._counts(a)))
        else:
            tot_a = _row_sums(A)
        if rows is not None:
            ma, mb = np.median(tot_a[rows[anchor]]), np.median(tot_b[rows[partner]])
            if mode == "common_target":  # CITE tutorial: one target, the mean of the medians
                ma = mb = (ma + mb) / 2
            self._fitted["shared_targets"] = (float(ma), float(mb))
        ta, tb = self._fitted["shared_targets"]
        return (_lognorm(A, tot_a, ta) if _count_like(a) else _dense(A),
                _lognorm(B, tot_b, tb) if _count_like(b) else _dense(B))

    @staticmethod
    def _counts(a):
        return sp.csr_matrix(a.layers[COUNTS] if COUNTS in a.layers else a.X, dtype=np.float64)

    def _active(self, mdata, mod: str, train=None) -> tuple[np.ndarray | None, str]:
        """(all cells x active features of ``mod`` before scaling, description); None for
        RNA in the strong-link recipe (its active features are its shared ones)."""
        a = mdata.mod[mod]
        kind = _kind(a)
        mode = self._features.get(kind, "scoring")
        if kind == "atac":
            k = int(self._used["lsi_components"])
            for key in dict.fromkeys((mode, LSI)):
                if key in a.obsm and a.obsm[key].shape[1] > 2:
                    if key != mode:
                        self._notes.append(
                            f"maxfuse: obsm['{mode}'] missing for '{mod}' (the recipe's LSI "
                            f"over all peaks); used obsm['{key}'] instead")
                    L = np.asarray(a.obsm[key], dtype=np.float64)[:, 1:1 + k]
                    return L, f"obsm['{key}'] components 2-{L.shape[1] + 1}"
            self._notes.append(f"maxfuse: no LSI stored for '{mod}'; used the binary peaks")
            return _dense(a.X), "binary peaks (.X)"
        if kind == "rna" and mode == "shared":
            return None, "the shared RNA features (their most variable linked genes)"
        if mode in ("hvg", "lognorm") and _count_like(a):
            counts = self._counts(a)
            lib = (a.obs[LIBRARY].to_numpy(np.float64)
                   if kind == "rna" and LIBRARY in a.obs else _row_sums(counts))
            if train is not None:
                self._fitted[f"active_target_{mod}"] = float(np.median(lib[train]))
            X = _lognorm(counts, lib, self._fitted[f"active_target_{mod}"])
            if mode == "hvg":
                if train is not None:
                    self._fitted[f"hvg_{mod}"] = _hvg(X[train], None)
                keep = self._fitted[f"hvg_{mod}"]
                return X[:, keep], (f"{int(keep.sum())} highly variable genes (scanpy defaults) "
                                    "of normalize_total + log1p")
            return X, "all features, normalize_total + log1p"
        return _dense(a.X), ".X (scoring normalisation)"

    def _active_pair(self, mdata, rows=None) -> tuple[np.ndarray, np.ndarray, str, str]:
        anchor, partner = self._mods
        AA, desc_a = self._active(mdata, anchor, None if rows is None else rows[anchor])
        AB, desc_b = self._active(mdata, partner, None if rows is None else rows[partner])
        if AA is None:
            AA = self._shared(mdata)[0][:, self._keep]
        return AA, AB, desc_a, desc_b

    # ---- fit / predict ----------------------------------------------------------------------
    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        mf = import_maxfuse()
        mods = list(mdata.mod)
        if len(mods) != 2:
            raise NotApplicableError(
                f"maxfuse: matches two modalities; the scenario has {mods}. Fix: leave maxfuse "
                "out for this dataset in the config"
            )
        kinds = [_kind(mdata.mod[m]) for m in mods]
        if kinds[1] == "rna" and kinds[0] != "rna":  # RNA is arr1 (meta-cells), as the authors
            mods = mods[::-1]
        anchor, partner = self._mods = mods
        if link_matrix(mdata, anchor, partner).nnz == 0:
            raise MissingLinksError(
                f"maxfuse: '{anchor}' and '{partner}' have no linked feature; MaxFuse needs "
                "shared features. Fix: give gene coordinates (10x 'interval' or gene_annotation) "
                "or protein->gene links"
            )
        name, p, overrides = self.settings((_kind(mdata.mod[anchor]), _kind(mdata.mod[partner])))
        self._used, self._features, self._notes = p, RECIPES[name]["features"], []
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        rows = {}
        for m in mods:
            key = visible_key(m)
            rows[m] = train & (mdata.obs[key].to_numpy(bool) if key in mdata.obs else True)
            if rows[m].sum() < 50:
                raise InputError(f"maxfuse: only {int(rows[m].sum())} train cells show '{m}'; "
                                 "need >= 50")
        ra, rb = rows[anchor], rows[partner]
        self._fitted: dict[str, Any] = {}
        SA, SB = self._shared(mdata, rows)
        sd = float(p["static_sd"])
        keep = (SA[ra].std(0) > sd) & (SB[rb].std(0) > sd)
        n_linked = int(keep.sum())
        n_hvg = int(p["n_hvg_shared"] or 0)
        if 0 < n_hvg < keep.sum():  # the most variable RNA genes among the linked
            idx = np.flatnonzero(keep)
            keep = np.zeros_like(keep)
            keep[idx[_hvg(SA[ra][:, idx], n_hvg)]] = True
        if keep.sum() < 2:  # links exist, but too few to carry anything: as if none
            raise MissingLinksError(
                f"maxfuse: only {int(keep.sum())} linked genes vary in both '{anchor}' and "
                f"'{partner}' train cells; fix: give more links, or leave maxfuse out"
            )
        self._keep = keep
        AA, AB, desc_a, desc_b = self._active_pair(mdata, rows)
        clip = float(p["clip"]) if p["clip"] else np.inf
        # static active features dropped (the authors' sd > 1e-5 filter)
        self._act_keep = (AA[ra].std(0) > 1e-8, AB[rb].std(0) > 1e-8)
        AA, AB = AA[:, self._act_keep[0]], AB[:, self._act_keep[1]]
        self._scalers = {
            "shared": (Standardiser(SA[ra][:, keep], clip), Standardiser(SB[rb][:, keep], clip)),
            "active": (Standardiser(AA[ra], clip), Standardiser(AB[rb], clip)),
        }
        (s1, s2), (a1, a2) = self._scalers["shared"], self._scalers["active"]
        shared1, shared2 = s1(SA[ra][:, keep]), s2(SB[rb][:, keep])
        active1, active2 = a1(AA[ra]), a2(AB[rb])
        n_sh, n1, n2 = shared1.shape[1], active1.shape[1], active2.shape[1]
        out = io.StringIO()  # MaxFuse prints its progress: keep it for the log
        # Reproducibility: MaxFuse's exact SVD (scipy ``svds`` without a start vector) draws a
        # fresh unseeded start each call under scipy >= 1.15, so results vary run to run; its
        # randomized SVD (sklearn, ``random_state=None``) draws from numpy's legacy global RNG,
        # which is seeded here. Hence ``randomized_svd=True`` in every step below.
        np.random.seed(int(seed))  # noqa: NPY002
        rsvd = {"randomized_svd": True, "svd_runs": 1}
        meta = int(p["metacell_size"])
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Batch size for arr1")
            fusor = mf.model.Fusor(shared1, shared2, active1, active2)
            fusor.split_into_batches(max_outward_size=int(p["max_outward_size"]),
                                     matching_ratio=float(p["matching_ratio"]),
                                     metacell_size=meta, method=str(p["batching"]),
                                     seed=int(seed), verbose=True)
            # rows each SVD sees: arr1 as meta-cells of its smallest batch, arr2 its smallest
            rows1 = min(len(b) for b in fusor._batch_to_indices1) // max(meta, 1)
            rows2 = min(len(b) for b in fusor._batch_to_indices2)
            svd = {
                "graph_svd": [_cap(p["graph_svd"][0], n1, rows1),
                              _cap(p["graph_svd"][1], n2, rows2)],
                "init_svd": [_cap(p["init_svd"][0], n_sh, rows1),
                             _cap(p["init_svd"][1], n_sh, rows2)],
                "refine_svd": [_cap(p["refine_svd"][0], n1, rows1),
                               _cap(p["refine_svd"][1], n2, rows2)],
            }
            d1 = svd["refine_svd"][0] or n1
            d2 = svd["refine_svd"][1] or n2
            cca = int(min(p["cca_components"], d1, d2))
            fusor.construct_graphs(
                n_neighbors1=int(p["n_neighbors"]), n_neighbors2=int(p["n_neighbors"]),
                svd_components1=svd["graph_svd"][0], svd_components2=svd["graph_svd"][1],
                resolution1=float(p["resolution"]), resolution2=float(p["resolution"]),
                resolution_tol=0.1, leiden_runs=1, leiden_seed=int(seed), **rsvd)
            fusor.find_initial_pivots(wt1=float(p["init_wt"]), wt2=float(p["init_wt"]),
                                      svd_components1=svd["init_svd"][0],
                                      svd_components2=svd["init_svd"][1], **rsvd)
            fusor.refine_pivots(wt1=float(p["refine_wt"]), wt2=float(p["refine_wt"]),
                                svd_components1=svd["refine_svd"][0],
                                svd_components2=svd["refine_svd"][1],
                                cca_components=cca, filter_prop=0.0,
                                n_iters=int(p["n_iters"]), **rsvd)
            fusor.filter_bad_matches(target="pivot", filter_prop=float(p["filter_prop"]))
        log.info("maxfuse:\n%s", out.getvalue())
        self._fusor = fusor
        n_pivots = len(fusor.get_matching(order=(2, 1), target="pivot")[0])
        capped = {k: v for k, v in svd.items() if v != list(p[k])}
        if cca != int(p["cca_components"]):
            capped["cca_components"] = cca
        self._emb_dims = int(p["embedding_dims"]) or cca
        self.train_info = {
            "maxfuse_version": getattr(mf, "__version__", "0.0.2"),
            "recipe": name,
            "recipe_source": RECIPES[name]["source"],
            "settings": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in p.items()},
            "user_overrides": overrides,
            "capped_to_data": capped,
            "anchor": anchor,
            "inputs": {
                "shared": (f"{n_sh} linked genes ({n_linked} varying on both sides; "
                           f"normalisation '{self._features['shared']}')"),
                "active": {anchor: desc_a, partner: desc_b},
            },
            "n_train_cells": {m: int(r.sum()) for m, r in rows.items()},
            "shared_features": int(n_sh),
            "active_features": {anchor: int(n1), partner: int(n2)},
            "pivot_pairs": int(n_pivots),
            "embedding_dims": int(min(self._emb_dims, cca)),
        }
        if self._notes:
            self.train_info["notes"] = list(self._notes)
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        anchor, partner = self._mods
        test = mdata.obs[SPLIT].to_numpy() == TEST
        self._notes = []
        AA, AB, _, _ = self._active_pair(mdata)
        a1, a2 = self._scalers["active"]
        z1, z2 = self._fusor.get_embedding(a1(AA[test][:, self._act_keep[0]]),
                                           a2(AB[test][:, self._act_keep[1]]))
        k = self.train_info["embedding_dims"]
        emb = {anchor: np.asarray(z1[:, :k], np.float32),
               partner: np.asarray(z2[:, :k], np.float32)}
        emb[JOINT] = (emb[anchor] + emb[partner]) / 2
        notes = ["no imputation: MaxFuse matches and embeds cells",
                 *self.train_info.get("notes", [])]
        return Predictions(mdata.obs_names[test], embeddings=emb,
                           info={"model": "maxfuse", "params": self.params,
                                 **self.train_info, "notes": notes})


__all__ = ["INSTALL_HINT", "RECIPES", "MaxFuse", "import_maxfuse", "recipe_for"]
