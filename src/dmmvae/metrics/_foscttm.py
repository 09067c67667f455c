"""FOSCTTM (fraction of samples closer than the true match), exact, chunked, fast.

Definition (``PROTOCOL.md``, GLUE's): for N cells with ``x_i`` (modality A alone) and ``y_i``
(modality B alone), ``fx_i = #{j : d(x_i, y_j) < d(x_i, y_i)} / N`` and
``fy_i = #{j : d(x_j, y_i) < d(x_i, y_i)} / N``; FOSCTTM is the mean of all 2N values.

*Exact* here means: every comparison gives the same answer as comparing the float64 squared
distances ``sum_k (x_ik - y_jk)**2`` (summed in order k = 0..d-1) of the inputs as given. Ties
count as "not closer" (strict ``<``).

How it is fast (the naive way builds the N x N distance matrix: 209 GB at N = 161,764):

1. Cells are processed in tiles (rows I x columns J). One float32 matrix product
   ``P = X_I @ Y_J.T`` (BLAS on CPU, cuBLAS on GPU, TF32 disabled) serves both directions,
   because ``d(x_i, y_j) < d(x_i, y_i)  <=>  |y_j|^2 - 2 x_i.y_j < d_ii - |x_i|^2`` and
   ``d(x_j, y_i) < d(x_i, y_i)  <=>  |x_j|^2 - 2 x_j.y_i < d_ii - |y_i|^2``.
2. The float32 product has a rigorous error bound (``|fl(x.y) - x.y| <= gamma_{d+2} |x| |y|``
   with ``gamma_n = n u / (1 - n u)``, u = 2^-24, input rounding included); a comparison whose
   margin exceeds the bound is decided directly, one inside the bound (near-ties, exact ties,
   the true match itself) is recomputed exactly in float64 from the inputs.
3. On CPU a numba kernel does the comparisons and the counting for both directions in a single
   pass over each cache-sized tile (parallel over threads); on GPU plain torch ops do it.

Memory stays O(tile) beyond the inputs: a few MB on CPU.

Variants papers use (options, never a second implementation): ``distance="correlation"``
(MaxFuse, SCMMIB's correlation variant) ranks by 1 - Pearson correlation of the two rows; it is
the Euclidean rule above on rows centred and scaled to unit norm, since
``|u - v|^2 = 2 (1 - corr(x, y))`` for such rows. One direction (MaxFuse reports the
fraction for one modality's cells only) is ``fx.mean()`` or ``fy.mean()`` of
:func:`foscttm_per_cell`.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

_U32 = 2.0**-24
_TINY = 2.0**-40  # relative slack for the float64 arithmetic of thresholds (>> 2^-53)
_ABS = 2.0**-100  # absolute slack (float32 underflow of tiny components after scaling)


def _as_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"foscttm: embeddings must be 2-D, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(
            f"foscttm: the two embeddings must have the same shape (same cells in the same "
            f"order, same dimension), got {x.shape} and {y.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError("foscttm: no cells")
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    y64 = np.ascontiguousarray(y, dtype=np.float64)
    if not (np.isfinite(x64).all() and np.isfinite(y64).all()):
        raise ValueError("foscttm: embeddings contain NaN or infinite values")
    return x64, y64


#: distances :func:`foscttm_per_cell` accepts
DISTANCES = ("euclidean", "correlation")


def _for_distance(a: np.ndarray, distance: str) -> np.ndarray:
    """Rows transformed so that Euclidean order = ``distance`` order (float64)."""
    if distance == "euclidean":
        return a
    if distance != "correlation":
        raise ValueError(f"foscttm: unknown distance '{distance}'; valid distances are "
                         f"{list(DISTANCES)}")
    if a.shape[1] < 2:
        raise ValueError("foscttm: correlation distance needs embeddings of >= 2 dimensions")
    c = a - a.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(c, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(f"foscttm: {int((norm == 0).sum())} cell(s) have a constant embedding "
                         "row, whose correlation with any other row is undefined; use "
                         "distance='euclidean'")
    return c / norm


def _sqdist_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 squared distances of matching rows, summed in order k = 0..d-1."""
    out = np.zeros(a.shape[0], dtype=np.float64)
    for k in range(a.shape[1]):
        diff = a[:, k] - b[:, k]
        out += diff * diff
    return out


def foscttm_bruteforce(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation (O(N^2 d) memory): per-cell ``fx``, ``fy`` from all distances.

    Uses float64 squared distances summed in order k = 0..d-1, the definition of *exact* above.
    Only for small N (tests) — the naive approach that the fast one is checked against.
    """
    x64, y64 = _as_pair(x, y)
    n, d = x64.shape
    dist = np.zeros((n, n), dtype=np.float64)
    for k in range(d):
        diff = x64[:, None, k] - y64[None, :, k]
        dist += diff * diff
    diag = np.diagonal(dist)
    fx = (dist < diag[:, None]).sum(axis=1) / n
    fy = (dist < diag[None, :]).sum(axis=0) / n
    return fx, fy


def foscttm_cdist(x: np.ndarray, y: np.ndarray) -> float:
    """The naive full-distance-matrix approach (as scglue's ``foscttm``): scipy ``cdist``.

    Kept for the benchmark's speed comparison; memory is 8 N^2 bytes.
    """
    from scipy.spatial.distance import cdist

    d = cdist(x, y, "euclidean")
    diag = np.diag(d)
    fx = (d < diag[:, None]).mean(axis=1)
    fy = (d < diag[None, :]).mean(axis=0)
    return float((fx.mean() + fy.mean()) / 2)


# --------------------------------------------------------------------------------------------
# Decision rule shared by both backends
# --------------------------------------------------------------------------------------------
def _thresholds(xc: np.ndarray, yc: np.ndarray, dd: np.ndarray) -> dict[str, np.ndarray]:
    """Per-cell quantities of the decision rule, in float64.

    ``xc``, ``yc``: the (centred) embeddings whose float32 products ``p_ij = xc_i . yc_j`` are
    compared; ``dd``: the exact ``d(x_i, y_i)^2`` (float64 formula on the original inputs).

    Row rule for pair (i, j):  ``v = |yc_j|^2 - 2 p_ij < s_i = dd_i - |xc_i|^2``.
    Column rule:               ``w = |xc_i|^2 - 2 p_ij < t_j = dd_j - |yc_j|^2``.
    A comparison is *sure* when it holds with margin ``e_ij`` (the rounding bound below) and
    *impossible* when it fails with that margin; otherwise the pair is a near-tie and is
    recomputed exactly. The bound ``e_ij = a_i |yc_j| + g_j + h_i`` covers: the float32 product
    (``gamma_{d+2} |xc_i| |yc_j|``, input rounding included, times ``safety``), every float32
    operation of the CPU kernel (``16 u`` of each magnitude involved), and the float64 error of
    the thresholds and of the exact formula (``_TINY`` of each magnitude).
    """
    n, d = xc.shape
    gamma = (d + 2) * _U32 / (1 - (d + 2) * _U32)
    safety = 2.0
    xn = np.einsum("ij,ij->i", xc, xc)
    yn = np.einsum("ij,ij->i", yc, yc)
    s_i = dd - xn
    t_j = dd - yn
    slack_i = 16 * _U32 * (np.abs(s_i) + xn + dd) + _TINY * (xn + dd) + _ABS
    slack_j = 16 * _U32 * (np.abs(t_j) + yn + dd) + _TINY * (yn + dd) + _ABS
    return {
        "xn": xn,
        "yn": yn,
        "a": safety * (2.0 * gamma + 16 * _U32) * np.sqrt(xn),  # e = a_i |yc_j| + g_j + h_i
        "yb": np.sqrt(yn),
        "g": 16 * _U32 * yn,
        "h": 16 * _U32 * xn,
        "row_lo": s_i - slack_i,
        "row_hi": s_i + slack_i,
        "col_lo": t_j - slack_j,
        "col_hi": t_j + slack_j,
    }


def _prepare(x64: np.ndarray, y64: np.ndarray):
    """Scale by a power of two (exact) so the largest entry is about 1, then centre.

    Centring on the common mean keeps |x|^2 and |y|^2 (and so the rounding bounds) of the order
    of the distances; its own rounding is relative to the centred values (covered by the
    bounds). Rechecks always use the scaled, uncentred inputs and their exact ``dd``.
    """
    amax = max(float(np.abs(x64).max()), float(np.abs(y64).max()))
    if amax > 0:
        scale = 2.0 ** (-math.frexp(amax)[1])
        x64, y64 = x64 * scale, y64 * scale
    mu = (x64.mean(axis=0) + y64.mean(axis=0)) / 2
    xc, yc = x64 - mu, y64 - mu
    dd = _sqdist_rows(x64, y64)
    return x64, y64, xc, yc, dd


# --------------------------------------------------------------------------------------------
# CPU: numba kernel
# --------------------------------------------------------------------------------------------
_KERNEL = None


def _get_kernel():
    """Compile (once, cached on disk) the numba tile kernel; None when numba is unavailable."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    try:
        import numba
    except ImportError:  # pragma: no cover - numba ships with umap-learn
        return None

    @numba.njit(nogil=True, cache=True)
    def _exact(x64, y64, i, j):
        s = 0.0
        for k in range(x64.shape[1]):
            t = x64[i, k] - y64[j, k]
            s += t * t
        return s

    @numba.njit(nogil=True, cache=True, error_model="numpy")
    def _tile(p, i0, j0, x64, y64, xid, yid, dd, a, xn, h, rlo, rhi, yn_t, yb_t, g_t, clo_t,
              chi_t, row_cnt, col_acc):
        """Count both directions for tile rows i0.. x columns j0.. (float32 products ``p``).

        Row quantities (``a, xn, h, rlo, rhi``) are float32 of length n; ``*_t`` are float32
        column quantities of this tile (index c = j - j0). Adds to ``row_cnt[i]`` and
        ``col_acc[c]`` (int32). Runs without the GIL: one tile per thread.
        """
        nb, nc = p.shape
        two = np.float32(2.0)
        for r in range(nb):
            i = i0 + r
            ai = a[i]
            xni = xn[i]
            hi_ = h[i]
            lo_r = rlo[i]
            hi_r = rhi[i]
            cnt = 0
            amb = 0
            ambc = 0
            prow = p[r]
            for c in range(nc):
                pv = two * prow[c]
                e = ai * yb_t[c] + g_t[c] + hi_
                v = yn_t[c] - pv
                sure = np.int32((v + e) < lo_r)
                cnt += sure
                amb += np.int32((v - e) <= hi_r)
                w = xni - pv
                surec = np.int32((w + e) < clo_t[c])
                col_acc[c] += surec
                ambc += np.int32((w - e) <= chi_t[c]) - surec
            amb -= cnt
            if amb > 0 or ambc > 0:
                # second pass over this row: decide the near-ties exactly in float64
                for c in range(nc):
                    j = j0 + c
                    if j == i:
                        continue  # the true match is never "closer" than itself
                    pv = two * prow[c]
                    e = ai * yb_t[c] + g_t[c] + hi_
                    v = yn_t[c] - pv
                    # identical vectors (same id) are exact ties: never "closer"
                    if amb > 0 and yid[j] != yid[i] and not ((v + e) < lo_r) and (v - e) <= hi_r:
                        if _exact(x64, y64, i, j) < dd[i]:
                            cnt += 1
                    w = xni - pv
                    if (ambc > 0 and xid[i] != xid[j] and not ((w + e) < clo_t[c])
                            and (w - e) <= chi_t[c]):
                        if _exact(x64, y64, i, j) < dd[j]:
                            col_acc[c] += 1
            row_cnt[i] += cnt

    _KERNEL = _tile
    return _KERNEL


def _n_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _f32_down(a: np.ndarray) -> np.ndarray:
    """float32 rounding toward -inf (so a float32 lower threshold stays a lower threshold)."""
    b = a.astype(np.float32)
    return np.where(b.astype(np.float64) > a, np.nextafter(b, np.float32(-np.inf)), b)


def _f32_up(a: np.ndarray) -> np.ndarray:
    b = a.astype(np.float32)
    return np.where(b.astype(np.float64) < a, np.nextafter(b, np.float32(np.inf)), b)


def _row_ids(a: np.ndarray) -> np.ndarray:
    """Integer id per row, equal for identical rows (collapsed embeddings: all ties)."""
    return np.unique(a, axis=0, return_inverse=True)[1].ravel().astype(np.int64)


def _counts_numba(x64: np.ndarray, y64: np.ndarray, tile_rows: int, tile_cols: int,
                  n_threads: int | None = None):
    """Tiles of (tile_rows x tile_cols); each worker thread owns a set of column strips and
    runs single-threaded BLAS + the numba kernel on them (no nested thread pools)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    kernel = _get_kernel()
    x64, y64, xc, yc, dd = _prepare(x64, y64)
    n = x64.shape[0]
    th = _thresholds(xc, yc, dd)
    f32 = {k: _f32_up(v) for k, v in th.items() if k in ("a", "g", "h", "yb")}
    f32.update({k: th[k].astype(np.float32) for k in ("xn", "yn")})
    # thresholds rounded outward keep the sure/impossible decisions valid
    f32["row_lo"], f32["col_lo"] = _f32_down(th["row_lo"]), _f32_down(th["col_lo"])
    f32["row_hi"], f32["col_hi"] = _f32_up(th["row_hi"]), _f32_up(th["col_hi"])
    x32 = np.ascontiguousarray(xc, dtype=np.float32)
    y32 = np.ascontiguousarray(yc, dtype=np.float32)
    xid, yid = _row_ids(x64), _row_ids(y64)
    n_threads = n_threads or _n_workers()
    strips = list(range(0, n, tile_cols))
    row_parts = np.zeros((n_threads, n), dtype=np.int64)
    col_cnt = np.zeros(n, dtype=np.int64)

    def work(w: int) -> None:
        row_cnt = row_parts[w]
        for j0 in strips[w::n_threads]:
            j1 = min(n, j0 + tile_cols)
            yt = np.ascontiguousarray(y32[j0:j1].T)
            acc = np.zeros(j1 - j0, dtype=np.int32)
            sl = slice(j0, j1)
            cols = tuple(f32[k][sl] for k in ("yn", "yb", "g", "col_lo", "col_hi"))
            for i0 in range(0, n, tile_rows):
                p = x32[i0 : i0 + tile_rows] @ yt
                kernel(p, i0, j0, x64, y64, xid, yid, dd, f32["a"], f32["xn"], f32["h"], f32["row_lo"],
                       f32["row_hi"], *cols, row_cnt, acc)
            col_cnt[sl] += acc

    with threadpool_limits(1, user_api="blas"):
        if n_threads == 1:
            work(0)
        else:
            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(work, range(n_threads)))
    return row_parts.sum(axis=0), col_cnt


# --------------------------------------------------------------------------------------------
# torch (GPU, or CPU without numba): float32 product, float64 decision arithmetic
# --------------------------------------------------------------------------------------------
def _exact_pairs_torch(X, Y, gi, gj):
    """float64 squared distances of pairs, summed in order k = 0..d-1 (same as the reference)."""
    out = None
    for k in range(X.shape[1]):
        diff = X[gi, k] - Y[gj, k]
        out = diff * diff if out is None else out + diff * diff
    return out


def _counts_torch(x64: np.ndarray, y64: np.ndarray, device: str, block_rows: int):
    import torch

    x64, y64, xc, yc, dd = _prepare(x64, y64)
    n = x64.shape[0]
    th = _thresholds(xc, yc, dd)
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        dev = torch.device(device)
        T = {k: torch.as_tensor(v, dtype=torch.float64, device=dev) for k, v in th.items()}
        DD = torch.as_tensor(dd, device=dev)
        x32 = torch.as_tensor(xc, dtype=torch.float32, device=dev)
        y32 = torch.as_tensor(yc, dtype=torch.float32, device=dev)
        X = torch.as_tensor(x64, device=dev)
        Y = torch.as_tensor(y64, device=dev)
        XID = torch.as_tensor(_row_ids(x64), device=dev)
        YID = torch.as_tensor(_row_ids(y64), device=dev)
        row_cnt = torch.zeros(n, dtype=torch.int64, device=dev)
        col_cnt = torch.zeros(n, dtype=torch.int64, device=dev)
        for i0 in range(0, n, block_rows):
            i1 = min(n, i0 + block_rows)
            rows = torch.arange(i0, i1, device=dev)
            p2 = 2.0 * (x32[i0:i1] @ y32.T).to(torch.float64)  # (B, n)
            e = T["a"][i0:i1, None] * T["yb"][None, :] + T["g"][None, :] + T["h"][i0:i1, None]
            # row direction
            v = T["yn"][None, :] - p2
            sure = (v + e) < T["row_lo"][i0:i1, None]
            band = ((v - e) <= T["row_hi"][i0:i1, None]) & ~sure
            band &= YID[None, :] != YID[i0:i1, None]  # identical vectors: exact ties
            band[rows - i0, rows] = False
            row_cnt[i0:i1] += sure.sum(dim=1)
            bi, bj = torch.nonzero(band, as_tuple=True)
            if bi.numel():
                gi = bi + i0
                ex = _exact_pairs_torch(X, Y, gi, bj)
                row_cnt.index_add_(0, gi, (ex < DD[gi]).to(torch.int64))
            del v, sure, band
            # column direction
            w = T["xn"][i0:i1, None] - p2
            sure = (w + e) < T["col_lo"][None, :]
            band = ((w - e) <= T["col_hi"][None, :]) & ~sure
            band &= XID[i0:i1, None] != XID[None, :]
            band[rows - i0, rows] = False
            col_cnt += sure.sum(dim=0)
            bi, bj = torch.nonzero(band, as_tuple=True)
            if bi.numel():
                gi = bi + i0
                ex = _exact_pairs_torch(X, Y, gi, bj)
                col_cnt.index_add_(0, bj, (ex < DD[bj]).to(torch.int64))
            del w, e, sure, band, p2
        return row_cnt.cpu().numpy(), col_cnt.cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32


# a GPU driver leaves one of these behind (NVIDIA; AMD ROCm, which torch.cuda also serves; WSL)
_GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def _gpu_driver_present() -> bool:
    """False when no GPU driver is loaded, so CUDA cannot be available: the caller then need
    not import torch (~3 s of every evaluation job on a CPU machine) only to ask. Unknown
    platforms answer True and torch decides."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in _GPU_DRIVER_PATHS)


def _default_device() -> str:
    if "torch" not in sys.modules and not _gpu_driver_present():
        return "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except ImportError:  # pragma: no cover
        pass
    return "cpu"


def foscttm_per_cell(
    x: np.ndarray,
    y: np.ndarray,
    *,
    device: str | None = None,
    backend: str | None = None,
    distance: str = "euclidean",
    tile_rows: int = 2048,
    tile_cols: int = 512,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-cell FOSCTTM ``(fx, fy)`` (each of length N), see the module docstring.

    ``device``: "cuda" or "cpu" (default: CUDA when available). ``backend``: "numba" (CPU
    default), "torch" (GPU default; CPU fallback without numba) or "bruteforce" (small N).
    ``distance``: "euclidean" (PROTOCOL) or "correlation" (see the module docstring).
    """
    x64, y64 = _as_pair(x, y)
    x64 = np.ascontiguousarray(_for_distance(x64, distance))
    y64 = np.ascontiguousarray(_for_distance(y64, distance))
    n = x64.shape[0]
    device = device or _default_device()
    if backend is None:
        backend = "torch" if device != "cpu" or _get_kernel() is None else "numba"
    if backend == "bruteforce":
        return foscttm_bruteforce(x64, y64)
    if backend == "numba":
        if _get_kernel() is None:
            raise ValueError("foscttm: backend 'numba' requested but numba is not installed")
        row, col = _counts_numba(x64, y64, tile_rows, tile_cols, n_threads)
    elif backend == "torch":
        # ~8 float64 temporaries of (block x n): 2^28 elements per block on GPU, 2^22 on CPU
        budget = 2**22 if device == "cpu" else 2**28
        block = max(1, min(n, budget // n))
        row, col = _counts_torch(x64, y64, device, block)
    else:
        raise ValueError(
            f"foscttm: unknown backend '{backend}'; valid backends are "
            "['bruteforce', 'numba', 'torch']"
        )
    return row / n, col / n


def foscttm(x: np.ndarray, y: np.ndarray, **kwargs) -> float:
    """FOSCTTM of paired embeddings ``x`` (modality A alone) and ``y`` (modality B alone).

    Lower is better; random embeddings give about 0.5. Exact and chunked (see module docs).
    """
    fx, fy = foscttm_per_cell(x, y, **kwargs)
    return float((fx.sum() + fy.sum()) / (2 * len(fx)))


__all__ = ["DISTANCES", "foscttm", "foscttm_per_cell", "foscttm_bruteforce", "foscttm_cdist"]
