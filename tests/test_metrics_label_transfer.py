"""Label transfer (k-NN, both directions) on separable, shuffled and imbalanced toy data."""

from __future__ import annotations

import numpy as np
import pytest

from dmmvae.metrics import knn_transfer, label_transfer


def _clusters(n_per, centres, rng, scale=0.1):
    x = np.vstack([c + scale * rng.normal(size=(n, len(c))) for c, n in zip(centres, n_per,
                                                                            strict=True)])
    labels = np.repeat([f"t{i}" for i in range(len(n_per))], n_per)
    return x, labels


def test_separable_clusters_transfer_perfectly():
    rng = np.random.default_rng(0)
    x, labels = _clusters([30, 30, 30], [np.zeros(3), 5 * np.ones(3), -5 * np.ones(3)], rng)
    y = x + 0.05 * rng.normal(size=x.shape)
    r = label_transfer(x, y, labels)
    assert r == {"acc_ab": 1.0, "bacc_ab": 1.0, "acc_ba": 1.0, "bacc_ba": 1.0,
                 "acc_mean": 1.0, "bacc_mean": 1.0}


def test_unrelated_embedding_is_at_chance():
    rng = np.random.default_rng(1)
    x, labels = _clusters([100, 100], [np.zeros(2), 10 * np.ones(2)], rng)
    y = rng.normal(size=x.shape)  # carries no label information
    acc, bacc = knn_transfer(x, y, labels)
    assert 0.3 < acc < 0.7 and 0.3 < bacc < 0.7


def test_balanced_accuracy_differs_under_imbalance():
    # query cells of the minority class all land in the majority cluster
    x = np.vstack([np.zeros((18, 1)), np.full((2, 1), 10.0)])
    labels = np.array(["a"] * 18 + ["b"] * 2)
    y = np.zeros((20, 1))
    acc, bacc = knn_transfer(x, y, labels, k=5)
    assert acc == pytest.approx(0.9)
    assert bacc == pytest.approx(0.5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same N"):
        label_transfer(np.zeros((5, 2)), np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        label_transfer(np.full((5, 2), np.nan), np.zeros((5, 2)), np.zeros(5))


def test_unpaired_cells_transfer_with_their_own_labels():
    """``query_labels``: the query cells are other cells (a different number, own labels);
    same-type clusters transfer perfectly, a query with swapped labels scores 0."""
    rng = np.random.default_rng(2)
    x, lx = _clusters([30, 30], [np.zeros(2), 10 * np.ones(2)], rng)
    y, ly = _clusters([12, 8], [np.zeros(2), 10 * np.ones(2)], rng)
    assert knn_transfer(x, y, lx, query_labels=ly) == (1.0, 1.0)
    assert knn_transfer(x, y, lx, query_labels=np.where(ly == "t0", "t1", "t0"))[0] == 0.0
    with pytest.raises(ValueError, match="M labels"):
        knn_transfer(x, y, lx, query_labels=ly[:5])
