"""FOSCTTM: exact against a brute-force reference, including ties and float32 near-ties."""

from __future__ import annotations

import numpy as np
import pytest

from dmmvae.metrics import foscttm, foscttm_bruteforce, foscttm_cdist, foscttm_per_cell

BACKENDS = [("numba", "cpu"), ("torch", "cpu")]


def _assert_same(x, y, **kw):
    ref = foscttm_bruteforce(x, y)
    for backend, device in BACKENDS:
        got = foscttm_per_cell(x, y, backend=backend, device=device, **kw)
        np.testing.assert_array_equal(got[0], ref[0], err_msg=f"{backend} fx")
        np.testing.assert_array_equal(got[1], ref[1], err_msg=f"{backend} fy")
    return ref


def test_hand_computed_examples():
    x = np.array([[0.0], [1.0], [2.0]])
    assert foscttm(x, x) == 0.0
    # swapped matches: each cell's true match is the farther one
    x = np.array([[0.0], [1.0]])
    y = np.array([[1.0], [0.0]])
    fx, fy = foscttm_per_cell(x, y)
    np.testing.assert_array_equal(fx, [0.5, 0.5])
    np.testing.assert_array_equal(fy, [0.5, 0.5])
    assert foscttm(x, y) == 0.5


def test_ties_are_not_closer():
    # d(x0, y0) = d(x0, y1) = 1 exactly: strict "<" does not count the tie
    x = np.array([[0.0], [0.0]])
    y = np.array([[1.0], [-1.0]])
    fx, fy = foscttm_per_cell(x, y)
    np.testing.assert_array_equal(fx, [0.0, 0.0])
    np.testing.assert_array_equal(fy, [0.0, 0.0])
    # duplicated cells: every distance ties with the true match
    x = np.ones((5, 3))
    assert foscttm(x, x.copy()) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_matches_bruteforce_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(20, 200)), int(rng.integers(1, 6))
    x = rng.integers(-2, 3, (n, d)).astype(np.float64)  # small integers: lots of exact ties
    y = rng.integers(-2, 3, (n, d)).astype(np.float64)
    _assert_same(x, y, tile_rows=17, tile_cols=29)


@pytest.mark.parametrize("seed", range(4))
def test_matches_bruteforce_continuous_and_tiles(seed):
    rng = np.random.default_rng(100 + seed)
    n = 257
    x = rng.normal(size=(n, 32))
    y = x + rng.normal(scale=0.5, size=(n, 32))
    ref = _assert_same(x, y, tile_rows=64, tile_cols=100)
    for tr, tc in [(1, 1), (300, 300), (7, 256)]:
        got = foscttm_per_cell(x, y, backend="numba", device="cpu", tile_rows=tr, tile_cols=tc)
        np.testing.assert_array_equal(got[0], ref[0])


def test_float32_near_ties_are_decided_exactly():
    """Distances that differ below float32 resolution: the float64 recheck must decide them."""
    rng = np.random.default_rng(7)
    n, d = 60, 16
    x = rng.normal(size=(n, d)) * 100.0
    y = x + rng.normal(size=(n, d))
    # make y_j (j = i + 1) almost exactly as far from x_i as y_i is: rotate y_i - x_i in the
    # plane of two coordinates, and perturb the radius by +-1e-12 relative
    for i in range(0, n - 1, 2):
        r = y[i] - x[i]
        rot = r.copy()
        rot[0], rot[1] = r[1], r[0]
        eps = (1e-12 if i % 4 == 0 else -1e-12) * np.linalg.norm(r)
        y[i + 1] = x[i] + rot * (1 + eps / np.linalg.norm(r))
    fx, fy = _assert_same(x, y)
    # the construction really produced both answers among the near-ties
    assert fx.sum() > 0


def test_extreme_scales_match_bruteforce():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 8))
    y = x + rng.normal(scale=0.7, size=(80, 8))
    ref = foscttm_bruteforce(x, y)
    for scale in (1e-30, 1e30):
        got = foscttm_per_cell(x * scale, y * scale, backend="numba", device="cpu")
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_random_embeddings_give_about_half_and_agree_with_cdist():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 10)).astype(np.float32)
    y = rng.normal(size=(800, 10)).astype(np.float32)
    v = foscttm(x, y)
    assert abs(v - 0.5) < 0.03
    assert v == pytest.approx(foscttm_cdist(x, y), abs=1e-12)


def test_better_alignment_gives_lower_foscttm():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 8))
    vals = [foscttm(z + rng.normal(scale=s, size=z.shape), z) for s in (0.05, 0.5, 2.0)]
    assert vals[0] < vals[1] < vals[2]


def test_bad_inputs_raise():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="same shape"):
        foscttm(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        foscttm(x, np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="valid backends"):
        foscttm(x, x, backend="magic")


def test_collapsed_and_partly_duplicated_embeddings():
    """Posterior collapse (all embeddings equal) and duplicated rows: all exact ties."""
    x = np.ones((300, 4), dtype=np.float32)
    assert foscttm(x, x.copy()) == 0.0
    rng = np.random.default_rng(5)
    base = rng.normal(size=(6, 4))
    x = base[rng.integers(0, 6, 200)]
    y = base[rng.integers(0, 6, 200)] + (rng.random((200, 1)) < 0.5) * 1e-3
    _assert_same(x, y, tile_rows=50, tile_cols=70)


def test_correlation_distance_matches_a_bruteforce_on_one_minus_pearson():
    """MaxFuse's variant: rank by 1 - corr(x_i, y_j); the Euclidean kernel on centred, unit-norm
    rows gives the same fractions as counting on the correlation matrix directly."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 8))
    y = x + rng.normal(scale=0.8, size=x.shape)
    c = np.corrcoef(x, y)[:60, 60:]          # c[i, j] = corr(x_i, y_j)
    d = 1 - c
    diag = np.diag(d)
    ref_x = (d < diag[:, None]).sum(axis=1) / 60
    ref_y = (d < diag[None, :]).sum(axis=0) / 60
    for backend, device in [*BACKENDS, ("bruteforce", "cpu")]:
        fx, fy = foscttm_per_cell(x, y, backend=backend, device=device, distance="correlation")
        np.testing.assert_allclose(fx, ref_x, atol=1 / 60 / 2, err_msg=backend)
        np.testing.assert_allclose(fy, ref_y, atol=1 / 60 / 2, err_msg=backend)
    # a scale change of one cell's row changes Euclidean FOSCTTM, not the correlation one
    y2 = y.copy()
    y2[0] *= 10
    assert foscttm(x, y2, distance="correlation") == pytest.approx(
        foscttm(x, y, distance="correlation"))
    assert foscttm(x, y2) != foscttm(x, y)
    with pytest.raises(ValueError, match="valid distances"):
        foscttm(x, y, distance="cosine")
    with pytest.raises(ValueError, match="constant embedding row"):
        foscttm(np.ones((5, 3)), y[:5, :3], distance="correlation")


def test_default_device_skips_torch_without_a_gpu_driver(monkeypatch):
    """No GPU driver -> "cpu" without importing torch (a CPU evaluation job saves ~3 s); with a
    driver node present torch is asked."""
    import subprocess
    import sys

    from dmmvae.metrics import _foscttm

    code = ("import sys; from dmmvae.metrics import _foscttm as f; "
            "f._GPU_DRIVER_PATHS = ('/nonexistent/gpu-node',); "
            "print(f._default_device(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["cpu", "False"]
    monkeypatch.setattr(_foscttm, "_GPU_DRIVER_PATHS", ("/",))  # a "driver" that exists
    import torch

    assert _foscttm._default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
