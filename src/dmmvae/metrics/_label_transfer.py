"""Label transfer between modality-specific embeddings (scikit-learn k-NN classifier)."""

from __future__ import annotations

import warnings

import numpy as np


def _check(x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] != len(labels):
        raise ValueError(
            f"label_transfer: need two (N, d) embeddings of the same N cells and N labels, got "
            f"{x.shape}, {y.shape} and {labels.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("label_transfer: embeddings contain NaN or infinite values")
    return x, y, labels


def knn_transfer(
    fit_emb: np.ndarray, query_emb: np.ndarray, labels: np.ndarray, k: int = 5
) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of a k-NN classifier (scikit-learn, Euclidean) fitted on
    ``fit_emb`` with ``labels`` that predicts the labels of ``query_emb`` (the same cells)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier

    x, y, labels = _check(fit_emb, query_emb, labels)
    k = max(1, min(int(k), len(labels)))
    clf = KNeighborsClassifier(n_neighbors=k, metric="euclidean").fit(x, labels)
    pred = clf.predict(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        bacc = balanced_accuracy_score(labels, pred)
    return float(accuracy_score(labels, pred)), float(bacc)


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
