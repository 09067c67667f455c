"""Metrics of ``PROTOCOL.md``: pure functions on arrays and a plain dict registry.

========================  =====================================================  ===========
registry name             function                                               library
========================  =====================================================  ===========
``foscttm``               :func:`foscttm` (exact, chunked, CUDA when present)     numpy/numba/torch
``label_transfer``        :func:`label_transfer` (k-NN, both directions)          scikit-learn
``imputation``            :func:`imputation_scores` (Pearson/cosine/AUROC)        numpy/scipy
``scib``                  :func:`scib_scores` (bio conservation, batch)           scib-metrics
``recovery``              :func:`ground_truth_recovery` (synthetic data)          scikit-learn
``realism``               :func:`c2st_auroc` (classifier two-sample test)         scikit-learn
========================  =====================================================  ===========
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._foscttm import foscttm, foscttm_bruteforce, foscttm_cdist, foscttm_per_cell
from ._imputation import (
    auroc_flat,
    cosine_per_cell,
    imputation_scores,
    pearson_per_cell,
    pearson_per_feature,
)
from ._label_transfer import knn_transfer, label_transfer
from ._realism import c2st_auroc
from ._recovery import ground_truth_recovery, r2_linear
from ._scib import scib_scores

METRICS: dict[str, Callable[..., Any]] = {
    "foscttm": foscttm,
    "label_transfer": label_transfer,
    "imputation": imputation_scores,
    "scib": scib_scores,
    "recovery": ground_truth_recovery,
    "realism": c2st_auroc,
}


def get_metric(name: str) -> Callable[..., Any]:
    """The metric function registered under ``name``; ValueError listing valid names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric '{name}'; valid metrics are {sorted(METRICS)}") from None


__all__ = [
    "METRICS",
    "get_metric",
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
    "auroc_flat",
    "scib_scores",
    "ground_truth_recovery",
    "r2_linear",
    "c2st_auroc",
]
