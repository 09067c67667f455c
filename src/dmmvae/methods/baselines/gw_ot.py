"""``gw_ot``: Gromov-Wasserstein optimal transport, the diagonal control that needs NO linked
feature (PROTOCOL "Controls and reference methods"): SCOT v1 (Demetci et al. 2022, J Comput Biol
29:3; "SCOT: single-cell multi-omics alignment with optimal transport") with its unsupervised
self-tuning of ``k`` and ``epsilon`` by the lowest GW distance.

SCOT as published, read from its code (github.com/rsinghlab/SCOT at commit 14649be, file
``src/scotv1.py``: ``normalize``, ``construct_graph``, ``init_distances``,
``find_correspondences``, ``barycentric_projection``, ``search_scot``, ``unsupervised_scot``):

- inputs L2-normalised per cell (``normalize=True, norm="l2"``);
- intra-domain distances: ``kneighbors_graph(X, k, mode="connectivity", metric="correlation",
  include_self=True)`` (so ``k`` counts the cell itself), Dijkstra shortest paths on the
  undirected graph, unreachable pairs set to the largest finite length, divided by the maximum;
- ``ot.gromov.entropic_gromov_wasserstein(Cx, Cy, p, q, "square_loss", epsilon=e)`` with uniform
  marginals and POT's defaults (``max_iter`` 1000, ``tol`` 1e-9); a solve is rejected
  ("convergence flag") when the coupling has a NaN, an all-zero row or column, or mass < 0.95;
- self-tuning (``align(selfTune=True)`` -> ``unsupervised_scot`` -> ``search_scot``):
  ``epsilon`` in ``np.logspace(-1, -3, 12)`` (0.1 ... 0.001), ``k`` in
  ``np.linspace(20, 100, 5)`` = 20, 40, 60, 80, 100 when both domains have more than 250 cells,
  else ``np.linspace(n // 20, n // 6, 5)`` (n: the smaller domain), truncated to int; every
  (k, epsilon) that converges is solved (k outer, epsilon from large to small) and the coupling
  with the strictly lowest GW distance is kept;
- barycentric projection (``XontoY=True``): ``x_i -> sum_j T_ij y_j / sum_j T_ij``, the first
  domain projected into the second's space.

(At that commit ``unsupervised_scot`` ends in ``return X_aligned,`` -- the file is cut off --
so ``align(selfTune=True)`` fails to unpack; the commit before it, ``src/scot.py`` at 857b811~1,
returns both domains. The grids above are the same in both.)

This module, per modality pair:

1. A low-dimensional view of the train cells that show each modality: PCA of the scoring
   normalisation fitted on those train cells, or the stored LSI for ATAC (first component, which
   tracks depth, dropped); each cell's view L2-normalised (SCOT's ``normalize=True``). SCOT takes
   given matrices (its SNARE-seq data: 10 RNA PCs, 19 cisTopic topics); here ``n_pcs`` may be a
   list, self-tuned with ``k`` and ``epsilon`` by the same lowest-GW rule (no label, no pair).
   At most ``max_cells`` cells (a seeded subsample) enter the transport.
2. SCOT's distances (above): ``k`` counts the cell itself (``include_self``, as SCOT).
3. SCOT's entropic GW (POT), its convergence flag, its grids (``k: "scot"``,
   ``epsilon: "scot"``, the defaults) and its lowest-GW choice. Two speed-ups that keep the
   optimisation problem and its stopping tests:
   - ``warmstart``: each inner Sinkhorn solve starts from the previous outer iteration's scaling
     (POT's ``warmstart=True``); each still runs to Sinkhorn's own stopping test. On SCOT's
     SNARE-seq data (1,047 cells, k 110, epsilon 1e-3, tol 1e-9): GW distance 0.0370387 both
     ways, FOSCTTM 0.14950 vs 0.14949, 41 s instead of 677 s (2 shared cores).
   - ``select_tol``: the grid is solved to ``select_tol`` and the settings within 10 % of its
     lowest GW distance continued from their couplings to ``tol``, the lowest there kept. POT
     stops when ``||T_k - T_(k-1)||_F < tol``, tested every 10th iteration; SCOT's ``tol`` is
     POT's default 1e-9, ours 1e-7 (the same coupling on the demo's synthetic data: GW distance
     equal to 6 digits, every cell's most likely partner the same).
   ``max_iter`` 1000 as SCOT (POT's default).
4. Barycentric projection of the partner's train cells into the anchor's view (PROTOCOL: B onto
   A): ``y_j = sum_i T_ij x_i / sum_i T_ij``; anchor cells keep their own coordinates. (SCOT's
   default direction is the other one; FOSCTTM is computed either way.)
5. Test cells (documented placement): a test cell shown through the anchor is embedded by the
   anchor's view; a test cell shown through the partner takes the mean projected position of its
   ``k_place`` (5) nearest partner train cells in the partner's own view.

The anchor is the first modality of the file; with three modalities each partner is aligned to
it. Uses no pair and no link: FOSCTTM near 0.5 on data whose two modalities do not share a
geometry is the expected, honest outcome. The reproduction of SCOT's SNARE-seq result with this
code: ``config/reproduce/scot_snare_cellline.yaml``, ``benchmarks/bench_reproduce_scot.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from itertools import product
from typing import Any, ClassVar

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path
from sklearn.neighbors import kneighbors_graph

from ...constants import JOINT, SPLIT, TEST, TRAIN, visible_key
from ...io import Predictions
from .._base import Method
from ..anchors import Embed, as_list, import_ot, modality_views, place_by_neighbours

#: SCOT's epsilon grid (``unsupervised_scot``: ``np.logspace(-1, -3, 12)``), large to small
SCOT_EPSILONS: tuple[float, ...] = tuple(float(e) for e in np.logspace(-1, -3, 12))
#: the value of ``k`` / ``epsilon`` that asks for SCOT's grid
SCOT = "scot"


def scot_k_grid(n: int) -> list[int]:
    """SCOT's ``k`` grid for domains whose smaller one has ``n`` cells: 20, 40, 60, 80, 100
    above 250 cells, else ``linspace(n // 20, n // 6, 5)`` truncated (``unsupervised_scot``)."""
    ks = np.linspace(20, 100, 5) if n > 250 else np.linspace(n // 20, n // 6, 5)
    return [int(k) for k in ks]


def k_grid(k, n: int) -> list[int]:
    """The ``k`` values to try: ``"scot"`` -> :func:`scot_k_grid`, else the given value(s);
    each clipped to ``[2, n]`` (a graph needs a neighbour; ``k`` counts the cell itself),
    duplicates dropped, order kept."""
    ks = scot_k_grid(n) if isinstance(k, str) and k.lower() == SCOT else as_list(k)
    return list(dict.fromkeys(int(min(max(x, 2), n)) for x in ks))


def epsilon_grid(epsilon) -> list[float]:
    """The ``epsilon`` values to try: ``"scot"`` -> :data:`SCOT_EPSILONS`, else the value(s)."""
    if isinstance(epsilon, str):
        if epsilon.lower() != SCOT:
            raise ValueError(f"gw_ot: epsilon '{epsilon}' is neither a number, a list of numbers "
                             f"nor '{SCOT}' (SCOT's grid {SCOT_EPSILONS})")
        return list(SCOT_EPSILONS)
    return [float(e) for e in (epsilon if isinstance(epsilon, (list, tuple)) else [epsilon])]


def graph_distances(Z: np.ndarray, k: int, metric: str = "correlation",
                    include_self: bool = False) -> np.ndarray:
    """SCOT's intra-domain distances: kNN-graph (connectivity) shortest paths, unreachable pairs
    set to the largest finite length, normalised by the maximum. ``include_self=True`` is SCOT's
    graph (``k`` counts the cell itself, i.e. ``k - 1`` neighbours)."""
    k = int(min(k, len(Z) if include_self else len(Z) - 1))
    G = kneighbors_graph(Z, k, mode="connectivity", metric=metric, include_self=include_self)
    D = shortest_path(sp.csr_matrix(G), method="D", directed=False)
    finite = np.isfinite(D)
    D[~finite] = D[finite].max() if finite.any() else 1.0
    return D / max(D.max(), 1e-12)


class GWNotConverged(RuntimeError):
    """The entropic GW solve failed SCOT's convergence check (NaN, an empty row or column, or
    mass < 0.95): numerical underflow at a small ``epsilon``."""


def scot_converged(T: np.ndarray) -> bool:
    """SCOT's convergence flag (``find_correspondences``): no NaN, no all-zero row or column,
    total mass at least 0.95."""
    return bool(np.isfinite(T).all() and T.any(axis=1).all() and T.any(axis=0).all()
                and T.sum() >= 0.95)


def gw_coupling(D_a: np.ndarray, D_b: np.ndarray, epsilon: float, max_iter: int = 1000,
                tol: float = 1e-9, T0: np.ndarray | None = None, warmstart: bool = True):
    """Entropic Gromov-Wasserstein coupling between two distance matrices (uniform marginals,
    square loss: SCOT's call); returns ``(T, gw_distance)``. Deterministic: POT starts from the
    product coupling, or from ``T0`` (a coupling of an earlier, looser solve, which this one
    continues). ``tol`` bounds ``||T_k - T_(k-1)||_F`` (tested every 10th iteration; POT's and
    SCOT's 1e-9). ``warmstart``: each inner Sinkhorn starts from the previous scaling. Raises
    :class:`GWNotConverged` when SCOT's convergence check fails."""
    ot = import_ot()
    p = np.full(len(D_a), 1.0 / len(D_a))
    q = np.full(len(D_b), 1.0 / len(D_b))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # Sinkhorn's "did not converge" / underflow warnings
        T, log = ot.gromov.entropic_gromov_wasserstein(
            D_a, D_b, p, q, loss_fun="square_loss", epsilon=float(epsilon), G0=T0,
            max_iter=int(max_iter), tol=float(tol), warmstart=bool(warmstart), log=True,
        )
    T = np.asarray(T, dtype=np.float64)
    if not scot_converged(T):
        raise GWNotConverged(
            f"gw_ot: the entropic GW solver did not converge at epsilon {epsilon:g} (coupling "
            f"mass {np.nansum(T):.3g}); fix: raise 'epsilon'"
        )
    return T, float(log["gw_dist"])


def barycentric_projection(T: np.ndarray, X_anchor: np.ndarray) -> np.ndarray:
    """Each partner cell (column of T) as the T-weighted mean of anchor cells (rows of T)."""
    w = T.sum(axis=0)
    return (T.T @ X_anchor) / np.where(w > 0, w, 1.0)[:, None]


def self_tuned_gw(
    views_a: dict[int, np.ndarray],
    views_b: dict[int, np.ndarray],
    ks,
    *,
    epsilon=SCOT,
    max_iter: int = 1000,
    metric: str = "correlation",
    tol: float = 1e-7,
    select_tol: float | None = None,
    include_self: bool = True,
    warmstart: bool = True,
    score: Callable[[np.ndarray], dict[str, Any]] | None = None,
    refine_margin: float = 0.1,
) -> dict[str, Any]:
    """SCOT's self-tuning: solve GW for every (n_pcs, k, epsilon) of the grid (``views_*[n_pcs]``:
    cells x n_pcs; ``ks``: a list or ``"scot"``; ``epsilon``: a number, a list or ``"scot"``) and
    keep the converged solve with the strictly lowest GW distance (ties: the first, in SCOT's
    order: k ascending, epsilon from large to small). Returns ``{"n_pcs", "k", "epsilon", "T",
    "gw", "grid"}``; ``grid`` has one entry per solve (``gw`` NaN and ``converged`` False where
    SCOT's check failed). :class:`GWNotConverged` when no setting converges.

    With ``select_tol`` (looser than ``tol``) the grid is solved to ``select_tol``; every setting
    whose loose GW distance is within ``refine_margin`` (relative) of the lowest is then
    continued from its coupling to ``tol`` and the lowest at ``tol`` is kept, so a loose solve's
    error does not decide between near-equal settings (``n_refined`` in the result).
    ``score`` (diagnostics only, never used in the choice): called with each converged grid
    coupling, its dict merged into the grid entry (e.g. FOSCTTM where the true pairs are
    known)."""
    n = min(min(len(v) for v in views_a.values()), min(len(v) for v in views_b.values()))
    k_values, eps_values = k_grid(ks, n), epsilon_grid(epsilon)
    grid = []
    first_tol = tol if select_tol is None else max(float(select_tol), float(tol))
    margin = 1.0 + float(refine_margin)
    #: loose solves within ``refine_margin`` of the lowest GW so far (continued to ``tol`` below)
    contenders: list[dict[str, Any]] = []
    for n_pcs, k in product(sorted(views_a), k_values):
        D = (graph_distances(views_a[n_pcs], k, metric, include_self),
             graph_distances(views_b[n_pcs], k, metric, include_self))
        for e in eps_values:
            try:
                T, gw = gw_coupling(*D, e, max_iter, tol=first_tol, warmstart=warmstart)
            except GWNotConverged:
                grid.append({"n_pcs": n_pcs, "k": k, "epsilon": e, "gw": float("nan"),
                             "converged": False})
                continue
            grid.append({"n_pcs": n_pcs, "k": k, "epsilon": e, "gw": gw, "converged": True,
                         **(score(T) if score is not None else {})})
            low = min([gw, *(c["gw"] for c in contenders)])
            contenders = [c for c in contenders if c["gw"] <= low * margin]
            if gw <= low * margin:
                contenders.append({"n_pcs": n_pcs, "k": k, "epsilon": e, "T": T, "gw": gw, "D": D})
    if not contenders:
        raise GWNotConverged(
            f"gw_ot: no setting of the grid converged (k {k_values}, epsilon {eps_values}); "
            "fix: add larger epsilon values")
    if first_tol > tol:  # every contender continued from its coupling to ``tol``
        for c in contenders:
            c["T"], c["gw"] = gw_coupling(*c["D"], c["epsilon"], max_iter, tol=tol, T0=c["T"],
                                          warmstart=warmstart)
    best = min(contenders, key=lambda c: c["gw"])  # ties: the first, in SCOT's order
    best.pop("D")
    best["grid"] = grid
    best["n_refined"] = len(contenders) if first_tol > tol else 0
    return best


class GromovWassersteinOT(Method):
    """SCOT-style GW transport and barycentric projection (see the module docstring)."""

    needs_unpaired = True  # a diagonal control (PROTOCOL): not run on paired scenarios
    reads_links = False  # SCOT aligns the two modalities' geometries, no feature is shared

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_pcs": [15, 30],  # components of each view; a list is self-tuned (lowest GW)
        "k": SCOT,  # kNN graph (counts the cell itself): SCOT's grid, or a number / list
        "epsilon": SCOT,  # entropic regularisation: SCOT's grid 0.1 ... 0.001, or number / list
        "metric": "correlation",  # kNN metric (SCOT's default)
        "max_iter": 1000,  # SCOT: POT's default
        "tol": 1e-7,  # POT's stopping test on ||T_k - T_(k-1)||_F (SCOT: POT's default 1e-9)
        "select_tol": 1e-4,  # the self-tuning grid is solved to this, its contenders to ``tol``
        "warmstart": True,  # inner Sinkhorn solves start from the previous scaling (speed)
        "max_cells": 1000,  # train cells per modality entering the transport (cost ~ n^3)
        "k_place": 5,  # neighbours that place a partner test cell
    }

    def _views(self, mdata: md.MuData, mod: str, rows: np.ndarray, seed: int) -> dict[int, Embed]:
        return modality_views(mdata, mod, rows, as_list(self.params["n_pcs"]), seed)

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        mods = list(mdata.mod)
        self._anchor = anchor = mods[0]
        rng = np.random.default_rng(seed)
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        cells: dict[str, np.ndarray] = {}
        self._views_of: dict[str, dict[int, Embed]] = {}
        for m in mods:
            idx = np.flatnonzero(train & mdata.obs[visible_key(m)].to_numpy(bool))
            if len(idx) > int(self.params["max_cells"]):
                idx = np.sort(rng.choice(idx, int(self.params["max_cells"]), replace=False))
            cells[m] = idx
            self._views_of[m] = self._views(mdata, m, idx, seed)
        anchor_views = {n: f(cells[anchor]) for n, f in self._views_of[anchor].items()}
        self._placed: dict[str, dict[str, Any]] = {}
        info = {}
        for partner in mods[1:]:
            views = {n: f(cells[partner]) for n, f in self._views_of[partner].items()}
            best = self_tuned_gw(anchor_views, views, self.params["k"],
                                 epsilon=self.params["epsilon"],
                                 max_iter=self.params["max_iter"], metric=self.params["metric"],
                                 tol=self.params["tol"], select_tol=self.params["select_tol"],
                                 warmstart=bool(self.params["warmstart"]))
            n = best["n_pcs"]
            self._placed[partner] = {"n_pcs": n, "Z": views[n],
                                     "proj": barycentric_projection(best["T"], anchor_views[n])}
            info[partner] = {"cells": [len(cells[anchor]), len(cells[partner])],
                             "n_pcs": n, "k": best["k"], "epsilon": best["epsilon"],
                             "gw_distance": best["gw"],
                             "grid": best["grid"]}
        self.train_info = {"gw": info}
        return pd.DataFrame()

    def predict(self, mdata) -> Predictions:
        test = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TEST)
        emb: dict[str, np.ndarray] = {}
        for partner, p in self._placed.items():
            n = p["n_pcs"]
            # the anchor's view of the first partner's chosen n_pcs (documented, 3 modalities)
            emb.setdefault(self._anchor, self._views_of[self._anchor][n](test))
            emb[partner] = place_by_neighbours(p["Z"], p["proj"], self._views_of[partner][n](test),
                                               int(self.params["k_place"]))
        emb[JOINT] = np.mean([emb[m] for m in emb], axis=0)
        chosen = [f"gw_ot: {partner} onto {self._anchor}: n_pcs {i['n_pcs']}, k {i['k']}, "
                  f"epsilon {i['epsilon']:.4g} (GW distance {i['gw_distance']:.4g}, "
                  f"{i['cells'][0]} x {i['cells'][1]} train cells)"
                  for partner, i in self.train_info["gw"].items()]
        return Predictions(mdata.obs_names[test], embeddings=emb, info={"notes": chosen})


__all__ = [
    "SCOT_EPSILONS",
    "GWNotConverged",
    "GromovWassersteinOT",
    "as_list",
    "barycentric_projection",
    "epsilon_grid",
    "graph_distances",
    "gw_coupling",
    "k_grid",
    "modality_views",
    "place_by_neighbours",
    "scot_converged",
    "scot_k_grid",
    "self_tuned_gw",
]
