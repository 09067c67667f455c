"""Ground-truth recovery (held-out R^2) and the classifier two-sample test."""

from __future__ import annotations

import numpy as np
import pytest

from dmmvae.metrics import c2st_auroc, ground_truth_recovery, r2_linear


def test_r2_linear_known_answers():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 3))
    z = f @ rng.normal(size=(3, 5)) + 2.0  # an invertible linear image of the factors
    assert r2_linear(z, f) == pytest.approx(1.0, abs=1e-9)
    noise = rng.normal(size=(400, 5))
    assert -0.15 < r2_linear(noise, f) < 0.05  # unrelated latent explains nothing held out
    half = np.hstack([f[:, :1], rng.normal(size=(400, 2))])
    assert r2_linear(half, f) == pytest.approx(1 / 3, abs=0.05)  # 1 of 3 factors recovered


def test_recovery_shared_versus_leakage():
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(300, 4))
    private = rng.normal(size=(300, 2))
    clean = ground_truth_recovery(shared + 0.01 * rng.normal(size=shared.shape), shared,
                                  {"rna": private})
    leaky = ground_truth_recovery(np.hstack([shared, private]), shared, {"rna": private})
    assert clean["shared_r2"] > 0.99 and leaky["shared_r2"] > 0.99
    assert clean["private_r2/rna"] < 0.05 < 0.99 < leaky["private_r2/rna"]
    with pytest.raises(ValueError, match="NaN"):
        r2_linear(np.full((10, 2), np.nan), shared[:10])


def test_c2st_identical_vs_shifted_distributions():
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(400, 30))
    same = rng.normal(size=(400, 30))
    shifted = rng.normal(size=(400, 30)) + 1.0
    a_same = c2st_auroc(obs, same, n_pcs=10)
    a_shift = c2st_auroc(obs, shifted, n_pcs=10)
    assert abs(a_same - 0.5) < 0.1
    assert a_shift > 0.95
    assert c2st_auroc(obs, np.full((400, 30), np.nan)) == 1.0
    with pytest.raises(ValueError, match="same features"):
        c2st_auroc(obs, same[:, :5])
