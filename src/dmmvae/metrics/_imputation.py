"""Imputation (cross-modal prediction) scores, chunked over cells (numpy / scipy.sparse).

Conventions of ``PROTOCOL.md``: a vector (a cell's row, or a feature's column) whose truth or
prediction has zero variance scores 0, and so does one whose prediction holds a non-finite value.
This applies to Pearson and to cosine similarity alike. Truth may be a scipy sparse matrix
(RNA/ATAC ``.X``); it is densified a block of cells at a time, never as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

_CHUNK_ELEMS = 2**23  # float64 elements per dense block (64 MB)


def _check(truth, pred) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim != 2 or truth.ndim != 2 or tuple(truth.shape) != tuple(pred.shape):
        raise ValueError(
            f"imputation: truth and prediction must have the same (cells, features) shape, "
            f"got {tuple(truth.shape)} and {tuple(pred.shape)}"
        )
    if pred.shape[0] == 0 or pred.shape[1] == 0:
        raise ValueError(f"imputation: empty matrices {pred.shape}")
    return pred


def _blocks(truth, pred, rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Dense float64 (truth, prediction) row blocks; non-finite predictions are left in."""
    n, m = pred.shape
    rows = rows or max(1, _CHUNK_ELEMS // m)
    if sp.issparse(truth):
        truth = sp.csr_matrix(truth)
    for r0 in range(0, n, rows):
        t = truth[r0 : r0 + rows]
        t = t.toarray() if sp.issparse(t) else np.asarray(t)
        yield t.astype(np.float64), np.asarray(pred[r0 : r0 + rows], dtype=np.float64)


def _rowwise(t: np.ndarray, p: np.ndarray, centred: bool) -> np.ndarray:
    bad = ~np.isfinite(p).all(axis=1)
    p = np.where(np.isfinite(p), p, 0.0)
    const = (t.max(axis=1) == t.min(axis=1)) | (p.max(axis=1) == p.min(axis=1))
    if centred:
        t = t - t.mean(axis=1, keepdims=True)
        p = p - p.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", t, p)
    den = np.sqrt(np.einsum("ij,ij->i", t, t) * np.einsum("ij,ij->i", p, p))
    ok = ~(bad | const) & (den > 0)
    out = np.zeros(len(t))
    out[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return out


def pearson_per_cell(truth, pred) -> np.ndarray:
    """Pearson correlation of each cell's predicted and observed feature vector."""
    pred = _check(truth, pred)
    return np.concatenate([_rowwise(t, p, True) for t, p in _blocks(truth, pred)])


def cosine_per_cell(truth, pred) -> np.ndarray:
    """Cosine similarity of each cell's predicted and observed feature vector."""
    pred = _check(truth, pred)
    return np.concatenate([_rowwise(t, p, False) for t, p in _blocks(truth, pred)])


def pearson_per_feature(truth, pred) -> np.ndarray:
    """Pearson correlation over cells of each feature (two passes: means, then centred sums)."""
    pred = _check(truth, pred)
    n, m = pred.shape
    st = np.zeros(m)
    spp = np.zeros(m)
    bad = np.zeros(m, dtype=bool)
    tmin = np.full(m, np.inf)
    tmax = np.full(m, -np.inf)
    pmin = np.full(m, np.inf)
    pmax = np.full(m, -np.inf)
    for t, p in _blocks(truth, pred):
        fin = np.isfinite(p)
        bad |= ~fin.all(axis=0)
        p = np.where(fin, p, 0.0)
        st += t.sum(axis=0)
        spp += p.sum(axis=0)
        tmin = np.minimum(tmin, t.min(axis=0))
        tmax = np.maximum(tmax, t.max(axis=0))
        pmin = np.minimum(pmin, p.min(axis=0))
        pmax = np.maximum(pmax, p.max(axis=0))
    mt, mp = st / n, spp / n
    stt = np.zeros(m)
    sppp = np.zeros(m)
    stp = np.zeros(m)
    for t, p in _blocks(truth, pred):
        p = np.where(np.isfinite(p), p, 0.0) - mp
        t = t - mt
        stt += np.einsum("ij,ij->j", t, t)
        sppp += np.einsum("ij,ij->j", p, p)
        stp += np.einsum("ij,ij->j", t, p)
    den = np.sqrt(stt * sppp)
    ok = ~bad & (tmax > tmin) & (pmax > pmin) & (den > 0)
    out = np.zeros(m)
    out[ok] = np.clip(stp[ok] / den[ok], -1.0, 1.0)
    return out


def _flat(truth, pred, centred: bool) -> float:
    """Pearson (``centred``) or cosine over all entries of the cells x features matrix, one
    pass of float64 sums; 0 under the zero-variance / non-finite conventions above."""
    pred = _check(truth, pred)
    n = st = sp_ = stt = spp = stp = 0.0
    for t, p in _blocks(truth, pred):
        if not np.isfinite(p).all():
            return 0.0
        n += t.size
        st += t.sum()
        sp_ += p.sum()
        stt += np.einsum("ij,ij->", t, t)
        spp += np.einsum("ij,ij->", p, p)
        stp += np.einsum("ij,ij->", t, p)
    if centred:
        stt, spp, stp = stt - st * st / n, spp - sp_ * sp_ / n, stp - st * sp_ / n
    den = math.sqrt(max(stt, 0.0) * max(spp, 0.0))
    return float(np.clip(stp / den, -1.0, 1.0)) if den > 0 else 0.0


def pearson_flat(truth, pred) -> float:
    """Pearson correlation over the flattened cells x features matrix (one number)."""
    return _flat(truth, pred, True)


def cosine_flat(truth, pred) -> float:
    """Cosine similarity of the flattened cells x features matrices (one number)."""
    return _flat(truth, pred, False)


def _f16_keys(v: np.ndarray) -> np.ndarray:
    """Order-preserving integer keys of float16 values (-0.0 already folded into +0.0)."""
    bits = v.astype(np.float16).view(np.uint16).astype(np.int32)
    return np.where(bits & 0x8000, 0xFFFF - bits, bits | 0x8000)


def auroc_flat(truth, pred) -> float:
    """AUROC of ``pred`` against ``truth > 0`` flattened over cells x features (ties count 1/2).

    Exact. When every prediction is a float16 value (the predictions file stores wide targets
    such as ATAC peaks in float16) it counts positives and negatives per distinct value in
    65,536 bins a block at a time (O(1) extra memory); otherwise it sorts the flattened scores
    of positives and negatives (O(cells x features) memory, numpy's SIMD sort). Non-finite
    predictions rank lowest. NaN when the truth has no positive or no negative.
    """
    pred = _check(truth, pred)
    pos = np.zeros(65536, dtype=np.int64)
    neg = np.zeros(65536, dtype=np.int64)
    for t, p in _blocks(truth, pred):
        p = np.where(np.isfinite(p), p + 0.0, -np.inf)  # + 0.0 folds -0.0 into +0.0
        if not np.array_equal(p.astype(np.float16).astype(np.float64), p):
            return _auroc_sorted(truth, pred)
        keys = _f16_keys(p).ravel()
        lab = t.ravel() > 0
        pos += np.bincount(keys[lab], minlength=65536)
        neg += np.bincount(keys[~lab], minlength=65536)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    u = (pos * (below + 0.5 * neg)).sum()
    return float(u / (n_pos * n_neg))


def _auroc_sorted(truth, pred) -> float:
    """Exact AUROC by sorting (numpy's SIMD sort): U = sum over positives of #negatives below
    + 1/2 #negatives equal, counted with ``searchsorted`` on the sorted negatives."""
    labs, scores = [], []
    dtype = np.float32 if np.asarray(pred[:1]).dtype == np.float32 else np.float64
    for t, p in _blocks(truth, pred):
        labs.append((t > 0).ravel())
        scores.append(np.where(np.isfinite(p), p + 0.0, -np.inf).astype(dtype).ravel())
    lab = np.concatenate(labs)
    score = np.concatenate(scores)
    del labs, scores
    pos = np.sort(score[lab])
    neg = np.sort(score[~lab])
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left").astype(np.float64)
    equal = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (len(pos) * len(neg)))


def imputation_scores(truth, pred, kind: str, variants: bool = False) -> dict[str, float]:
    """Scores of one imputation pair by target kind (PROTOCOL).

    ``kind`` in rna/adt/gaussian: ``pearson_cell``, ``pearson_feature``, ``cosine_cell``;
    ``kind`` == atac: ``auroc``, ``pearson_cell``. ``variants`` adds what papers report
    besides: ``pearson_flat`` and ``cosine_flat`` (flattened matrix), and ``cosine_cell`` for
    ATAC targets.
    """
    if kind == "atac":
        out = {
            "auroc": auroc_flat(truth, pred),
            "pearson_cell": float(pearson_per_cell(truth, pred).mean()),
        }
        if variants:
            out["cosine_cell"] = float(cosine_per_cell(truth, pred).mean())
    elif kind in ("rna", "adt", "gaussian"):
        out = {
            "pearson_cell": float(pearson_per_cell(truth, pred).mean()),
            "pearson_feature": float(pearson_per_feature(truth, pred).mean()),
            "cosine_cell": float(cosine_per_cell(truth, pred).mean()),
        }
    else:
        raise ValueError(
            f"imputation: unknown modality kind '{kind}'; valid kinds are "
            "['adt', 'atac', 'gaussian', 'rna']"
        )
    if variants:
        out["pearson_flat"] = pearson_flat(truth, pred)
        out["cosine_flat"] = cosine_flat(truth, pred)
    return out
