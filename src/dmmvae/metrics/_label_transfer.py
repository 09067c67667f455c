"""Label transfer between modality-specific embeddings (scikit-learn k-NN classifier)."""

from __future__ import annotations

import warnings

import numpy as np


def _check(x: np.ndarray, y: np.ndarray, labels: np.ndarray,
           query_labels: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Embeddings as float64 and labels as str; ``query_labels`` None: ``x`` and ``y`` are the
    same N cells with ``labels``; else ``y``'s own cells with ``query_labels``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if query_labels is None:
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] != len(labels):
            raise ValueError(
                f"label_transfer: need two (N, d) embeddings of the same N cells and N labels, got "
                f"{x.shape}, {y.shape} and {labels.shape}"
            )
        query_labels = labels
    else:
        query_labels = np.asarray(query_labels).astype(str)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != len(labels) or y.shape[0] != len(query_labels):
            raise ValueError(
                f"label_transfer: need (N, d) and (M, d) embeddings with N and M labels, got "
                f"{x.shape} with {labels.shape} and {y.shape} with {query_labels.shape}"
            )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("label_transfer: embeddings contain NaN or infinite values")
    return x, y, labels, query_labels


def knn_transfer(
    fit_emb: np.ndarray, query_emb: np.ndarray, labels: np.ndarray, k: int = 5,
    query_labels: np.ndarray | None = None,
) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of a k-NN classifier (scikit-learn, Euclidean) fitted on
    ``fit_emb`` with ``labels`` that predicts the labels of ``query_emb``: the same cells, or,
    with ``query_labels``, other cells (unpaired: e.g. train cells that show one modality each)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier

    x, y, labels, truth = _check(fit_emb, query_emb, labels, query_labels)
    k = max(1, min(int(k), len(labels)))
    clf = KNeighborsClassifier(n_neighbors=k, metric="euclidean").fit(x, labels)
    pred = clf.predict(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        bacc = balanced_accuracy_score(truth, pred)
    return float(accuracy_score(truth, pred)), float(bacc)


def label_transfer(
    x: np.ndarray, y: np.ndarray, labels: np.ndarray, k: int = 5
) -> dict[str, float]:
    """Both directions (PROTOCOL): fit on ``x`` predict ``y`` ("a->b") and fit on ``y`` predict
    ``x`` ("b->a"); accuracy and balanced accuracy each, and their means over directions.

    Returns keys ``acc_ab, bacc_ab, acc_ba, bacc_ba, acc_mean, bacc_mean``.
    """
    acc_ab, bacc_ab = knn_transfer(x, y, labels, k)
    acc_ba, bacc_ba = knn_transfer(y, x, labels, k)
    return {
        "acc_ab": acc_ab,
        "bacc_ab": bacc_ab,
        "acc_ba": acc_ba,
        "bacc_ba": bacc_ba,
        "acc_mean": (acc_ab + acc_ba) / 2,
        "bacc_mean": (bacc_ab + bacc_ba) / 2,
    }
