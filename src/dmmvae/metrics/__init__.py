"""Metrics of ``PROTOCOL.md``: pure functions on arrays and ONE registry that drives everything.

:data:`METRICS` (see :mod:`dmmvae.metrics._registry`) maps each metric name to its
:class:`Metric` entry: the function that scores one run, its ranking family and direction,
its summary row, whether it is ranked, and where it applies. Evaluation, ranking, tables,
plots and the report all read it.

==========================  ===================================================  ==============
family                      array function                                       library
==========================  ===================================================  ==============
``foscttm``                 :func:`foscttm` (exact, chunked, CUDA when present)   numpy/numba/torch
``label_transfer``          :func:`label_transfer` (k-NN, both directions)        scikit-learn
``imputation``              :func:`imputation_scores` (Pearson/cosine/AUROC)      numpy/scipy
``scib``                    :func:`scib_scores` (bio conservation, batch)         scib-metrics
``mixing``                  :func:`modality_mixing` (stacked per-modality)         scib-metrics
``recovery``                :func:`recovery_by_modality` (synthetic data)         scikit-learn
``realism``                 :func:`c2st_auroc` (trees, two-sample test)            scikit-learn
==========================  ===================================================  ==============
"""

from __future__ import annotations

from ._foscttm import foscttm, foscttm_bruteforce, foscttm_cdist, foscttm_per_cell
from ._imputation import (
    auroc_flat,
    cosine_flat,
    cosine_per_cell,
    imputation_scores,
    pearson_flat,
    pearson_per_cell,
    pearson_per_feature,
)
from ._label_transfer import knn_transfer, label_transfer
from ._mixing import modality_mixing
from ._realism import c2st_auroc
from ._recovery import ground_truth_recovery, r2_linear, recovery_by_modality
from ._registry import (
    METRICS,
    REQUIREMENTS,
    EvalInputs,
    Metric,
    Score,
    compute_rows,
    computed_families,
    direction_of,
    families,
    family_of,
    headline_rows,
    mean_row,
    metric_of,
    ranked_metrics,
)
from ._scib import scib_scores


def get_metric(name: str) -> Metric:
    """The registry entry named ``name``; ValueError listing the valid names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric '{name}'; valid metrics are {sorted(METRICS)}") from None


__all__ = [
    "METRICS",
    "REQUIREMENTS",
    "EvalInputs",
    "Metric",
    "Score",
    "compute_rows",
    "computed_families",
    "direction_of",
    "families",
    "family_of",
    "get_metric",
    "headline_rows",
    "mean_row",
    "metric_of",
    "ranked_metrics",
    "foscttm",
    "foscttm_per_cell",
    "foscttm_bruteforce",
    "foscttm_cdist",
    "label_transfer",
    "knn_transfer",
    "imputation_scores",
    "pearson_per_cell",
    "pearson_per_feature",
    "cosine_per_cell",
    "pearson_flat",
    "cosine_flat",
    "auroc_flat",
    "scib_scores",
    "ground_truth_recovery",
    "modality_mixing",
    "r2_linear",
    "recovery_by_modality",
    "c2st_auroc",
]
