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
