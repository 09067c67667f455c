"""The shared/private generator: ground truth is really shared / really private."""

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression

from dmmvae.constants import TRUE_SHARED, true_private_key
from dmmvae.data.synthetic import simulate_shared_private


def _r2_from(x, target):
    x = np.log1p(x.toarray() if sp.issparse(x) else x)
    half = len(x) // 2
    reg = LinearRegression().fit(x[:half], target[:half])
    return reg.score(x[half:], target[half:])


def test_shapes_types_and_sparsity():
    m = simulate_shared_private(n_cells=300, seed=1)
    assert m["rna"].shape == (300, 500) and m["atac"].shape == (300, 1000)
    assert sp.issparse(m["rna"].X) and sp.issparse(m["atac"].X)
    x = m["rna"].X.data
    assert np.all(x == np.round(x)) and x.min() >= 0
    assert set(np.unique(m["atac"].X.data)) == {1.0}
    assert 0.01 < m["atac"].X.mean() < 0.3
    assert m.obs["cell_type"].nunique() == 6


def test_private_factors_drive_only_their_modality():
    m = simulate_shared_private(n_cells=3000, private_variance_ratio=2.0, seed=0)
    z_rna = m.obsm[true_private_key("rna")]
    # RNA carries its own private factors and the shared ones, but not ATAC's private factors
    assert _r2_from(m["rna"].X, z_rna) > 0.5
    assert _r2_from(m["rna"].X, m.obsm[TRUE_SHARED]) > 0.5
    assert _r2_from(m["rna"].X, m.obsm[true_private_key("atac")]) < 0.1


def test_seeded_and_chunk_independent_shapes():
    a = simulate_shared_private(n_cells=200, seed=3)
    b = simulate_shared_private(n_cells=200, seed=3)
    assert (a["rna"].X != b["rna"].X).nnz == 0
    c = simulate_shared_private(n_cells=200, seed=3, chunk_cells=50)
    assert c["atac"].shape == a["atac"].shape


def test_linked_features_are_linkable_and_carry_the_same_signal():
    """``n_linked``: the first features of every modality are driven by the shared factors
    through one common map; preprocessing links them (gene-peak overlap, same-name proteins),
    and a linked RNA gene tracks its linked peak far better than an unlinked pair does."""
    from dmmvae.data.preprocess import preprocess

    mods = {"rna": {"kind": "rna", "n_features": 120, "n_private": 2},
            "atac": {"kind": "atac", "n_features": 200, "n_private": 2},
            "adt": {"kind": "adt", "n_features": 30, "n_private": 2}}
    plain = simulate_shared_private(n_cells=400, modalities=mods, seed=3)
    zero = simulate_shared_private(n_cells=400, modalities=mods, n_linked=0, seed=3)
    for m in mods:  # n_linked=0 is the earlier generator, draw for draw
        assert (plain.mod[m].X != zero.mod[m].X).nnz == 0
    raw = simulate_shared_private(n_cells=400, modalities=mods, n_linked=20, seed=3)
    rna = np.log1p(raw.mod["rna"].X[:, :40].toarray())
    atac = raw.mod["atac"].X[:, :40].toarray()
    corr = np.corrcoef(rna.T, atac.T)[:40, 40:]
    linked, unlinked = np.diag(corr)[:20].mean(), np.diag(corr)[20:].mean()
    assert linked > 0.2 and linked > unlinked + 0.15, (linked, unlinked)
    report = preprocess(raw, seed=3).uns["links_report"]
    assert report["rna-atac"]["links"] >= 15, report
    assert report["rna-adt"]["links"] == 20, report
