"""Imputation scores: known answers, PROTOCOL's zero-variance / non-finite rules, exact AUROC."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from dmmvae.metrics import (
    _imputation,
    auroc_flat,
    cosine_per_cell,
    imputation_scores,
    pearson_per_cell,
    pearson_per_feature,
)


@pytest.fixture
def truth():
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(50, 30)).astype(np.float32)
    return np.log1p(x)


def test_perfect_and_affine_predictions(truth):
    assert pearson_per_cell(truth, truth) == pytest.approx(np.ones(50))
    assert pearson_per_feature(truth, 2 * truth + 3) == pytest.approx(np.ones(30))
    assert pearson_per_cell(truth, -truth) == pytest.approx(-np.ones(50))
    assert cosine_per_cell(truth, 5 * truth) == pytest.approx(np.ones(50))


def test_against_numpy_reference(truth):
    rng = np.random.default_rng(1)
    pred = truth + rng.normal(size=truth.shape)
    ref_cell = [np.corrcoef(truth[i], pred[i])[0, 1] for i in range(50)]
    ref_feat = [np.corrcoef(truth[:, j], pred[:, j])[0, 1] for j in range(30)]
    ref_cos = [t @ p / np.linalg.norm(t) / np.linalg.norm(p) for t, p in zip(truth, pred,
                                                                            strict=True)]
    np.testing.assert_allclose(pearson_per_cell(truth, pred), ref_cell, atol=1e-6)
    np.testing.assert_allclose(pearson_per_feature(truth, pred), ref_feat, atol=1e-6)
    np.testing.assert_allclose(cosine_per_cell(truth, pred), ref_cos, atol=1e-6)


def test_sparse_truth_and_chunking_give_same_result(truth, monkeypatch):
    rng = np.random.default_rng(2)
    pred = truth + rng.normal(size=truth.shape)
    dense = (pearson_per_cell(truth, pred), pearson_per_feature(truth, pred))
    monkeypatch.setattr(_imputation, "_CHUNK_ELEMS", 7 * 30)  # blocks of 7 cells
    sparse = (pearson_per_cell(sp.csr_matrix(truth), pred),
              pearson_per_feature(sp.csr_matrix(truth), pred))
    np.testing.assert_allclose(dense[0], sparse[0], atol=1e-12)
    np.testing.assert_allclose(dense[1], sparse[1], atol=1e-12)


def test_zero_variance_and_non_finite_score_zero(truth):
    rng = np.random.default_rng(3)
    pred = truth + 0.1 * rng.normal(size=truth.shape)
    pred[0] = 1.0  # constant prediction for cell 0
    pred[1, 4] = np.nan  # non-finite prediction for cell 1 and feature 4
    t = truth.copy()
    t[:, 7] = 0.0  # zero-variance truth for feature 7
    t[2] = 0.0  # zero-variance truth for cell 2
    cell = pearson_per_cell(t, pred)
    cos = cosine_per_cell(t, pred)
    feat = pearson_per_feature(t, pred)
    assert cell[0] == cell[1] == cell[2] == 0.0
    assert cos[0] == cos[1] == cos[2] == 0.0
    assert feat[4] == feat[7] == 0.0
    assert (cell[3:] > 0.5).all() and feat[0] > 0.5


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_auroc_exact_with_ties(dtype):
    rng = np.random.default_rng(4)
    truth = sp.csr_matrix((rng.random((40, 25)) < 0.2).astype(np.float32))
    # coarse values -> many ties between positives and negatives
    pred = (np.round(rng.random((40, 25)) * 8) / 8 + truth.toarray() * 0.2).astype(dtype)
    ref = roc_auc_score(truth.toarray().ravel() > 0, pred.astype(np.float64).ravel())
    assert auroc_flat(truth, pred.astype(np.float32)) == pytest.approx(ref, abs=1e-12)


def test_auroc_float32_fallback_and_non_finite():
    rng = np.random.default_rng(5)
    truth = (rng.random((30, 20)) < 0.3).astype(np.float32)
    pred = rng.random((30, 20)) + truth * 0.3  # float64 values: not float16-representable
    ref = roc_auc_score(truth.ravel() > 0, pred.ravel())
    assert auroc_flat(truth, pred) == pytest.approx(ref, abs=1e-12)
    # a NaN prediction ranks lowest: on a positive it can only lower the AUROC
    pos = np.argwhere(truth > 0)[0]
    pred2 = pred.copy()
    pred2[tuple(pos)] = np.nan
    assert auroc_flat(truth, pred2) < auroc_flat(truth, pred)
    assert np.isnan(auroc_flat(np.zeros((3, 3)), np.ones((3, 3))))


def test_imputation_scores_by_kind(truth):
    rng = np.random.default_rng(6)
    pred = truth + 0.3 * rng.normal(size=truth.shape)
    s = imputation_scores(truth, pred, "rna")
    assert set(s) == {"pearson_cell", "pearson_feature", "cosine_cell"}
    assert 0.5 < s["pearson_cell"] < 1
    atac = (truth > 0).astype(np.float32)
    s = imputation_scores(sp.csr_matrix(atac), atac * 0.8 + 0.1, "atac")
    assert set(s) == {"auroc", "pearson_cell"}
    assert s["auroc"] == 1.0
    with pytest.raises(ValueError, match="valid kinds"):
        imputation_scores(truth, pred, "protein")
    with pytest.raises(ValueError, match="same"):
        imputation_scores(truth, pred[:, :3], "rna")


def test_flattened_variants_against_numpy_and_chunking(truth, monkeypatch):
    """Seed 002 reports one cosine and one Pearson per direction without saying per cell or
    flattened: the flattened variants equal numpy on the raveled matrices, in any chunking."""
    from dmmvae.metrics import cosine_flat, pearson_flat

    rng = np.random.default_rng(7)
    pred = truth + rng.normal(size=truth.shape)
    t, p = truth.ravel().astype(np.float64), pred.ravel()
    assert pearson_flat(truth, pred) == pytest.approx(np.corrcoef(t, p)[0, 1], abs=1e-10)
    assert cosine_flat(truth, pred) == pytest.approx(t @ p / np.linalg.norm(t) / np.linalg.norm(p),
                                                     abs=1e-10)
    # flattened and per-cell are different numbers on the same data: both must be reported
    assert abs(pearson_flat(truth, pred) - pearson_per_cell(truth, pred).mean()) > 1e-3
    monkeypatch.setattr(_imputation, "_CHUNK_ELEMS", 7 * 30)
    assert pearson_flat(sp.csr_matrix(truth), pred) == pytest.approx(np.corrcoef(t, p)[0, 1],
                                                                      abs=1e-10)
    assert pearson_flat(truth, np.ones_like(pred)) == 0.0  # zero variance -> 0 (PROTOCOL)
    bad = pred.copy()
    bad[0, 0] = np.nan
    assert cosine_flat(truth, bad) == 0.0


def test_imputation_variants_add_rows_only_when_asked(truth):
    rng = np.random.default_rng(8)
    pred = truth + 0.3 * rng.normal(size=truth.shape)
    s = imputation_scores(truth, pred, "rna", variants=True)
    assert set(s) == {"pearson_cell", "pearson_feature", "cosine_cell", "pearson_flat",
                      "cosine_flat"}
    assert s["pearson_cell"] == imputation_scores(truth, pred, "rna")["pearson_cell"]
    atac = (truth > 0).astype(np.float32)
    s = imputation_scores(sp.csr_matrix(atac), atac * 0.8 + 0.1, "atac", variants=True)
    assert set(s) == {"auroc", "pearson_cell", "cosine_cell", "pearson_flat", "cosine_flat"}
    assert s["pearson_flat"] == pytest.approx(1.0)
