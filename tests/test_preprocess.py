"""preprocess(): the data contract, train-only fitting, QC, extra genes, and bad input."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dmmvae.constants import (
    BATCH,
    COUNTS,
    LABEL,
    LIBRARY,
    LSI,
    MODALITY_KIND,
    PROVENANCE,
    SPLIT,
    TRUE_SHARED,
    true_private_key,
)
from dmmvae.data.preprocess import (
    clr,
    preprocess,
    resolve_params,
    seurat_v3_variances,
)
from dmmvae.data.scenarios import make_scenario, protocol_split
from dmmvae.data.synthetic import simulate_shared_private
from dmmvae.io import InputError

MODS = {
    "rna": {"kind": "rna", "n_features": 600, "n_private": 2},
    "atac": {"kind": "atac", "n_features": 800, "n_private": 2},
    "adt": {"kind": "adt", "n_features": 25, "n_private": 1},
}


@pytest.fixture(scope="module")
def raw() -> md.MuData:
    return simulate_shared_private(n_cells=500, modalities=MODS, n_batches=2, seed=3)


@pytest.fixture(scope="module")
def pre(raw) -> md.MuData:
    return preprocess(raw, {"rna": {"n_top_genes": 300, "extra_genes": 40}}, seed=0)


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _mudata(mods: dict[str, ad.AnnData], obs: pd.DataFrame | None = None) -> md.MuData:
    with md.set_options(pull_on_update=False):
        m = md.MuData(mods)
    if obs is not None:
        m.obs = obs
    return m


def _rna_adata(counts: np.ndarray, genes: list[str] | None = None) -> ad.AnnData:
    n, g = counts.shape
    a = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n)]),
        var=pd.DataFrame(index=genes or [f"g{j}" for j in range(g)]),
    )
    a.uns[MODALITY_KIND] = "rna"
    return a


def test_split_is_protocol_split_of_kept_cells(pre, raw):
    assert pre.n_obs == raw.n_obs
    np.testing.assert_array_equal(pre.obs[SPLIT].to_numpy(), protocol_split(raw.n_obs, seed=0))
    assert (pre.obs[SPLIT] == "train").sum() == int(0.8 * raw.n_obs)
    for m in MODS:
        np.testing.assert_array_equal(pre[m].obs_names, pre.obs_names)


def test_rna_normalisation_over_all_genes_then_kept(pre, raw):
    counts_all = _dense(raw["rna"].X).astype(np.float64)
    lib = counts_all.sum(1)
    expected_all = np.log1p(counts_all / lib[:, None] * 1e4)
    kept = raw["rna"].var_names.get_indexer(pre["rna"].var_names)
    assert (kept >= 0).all()
    np.testing.assert_allclose(_dense(pre["rna"].X), expected_all[:, kept], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_dense(pre["rna"].layers[COUNTS]), counts_all[:, kept])
    np.testing.assert_allclose(pre["rna"].obs[LIBRARY].to_numpy(), lib, rtol=1e-6)
    assert sp.isspmatrix_csr(pre["rna"].X) or isinstance(pre["rna"].X, sp.csr_array)
    assert pre["rna"].layers[COUNTS].dtype == np.float32 and sp.issparse(pre["rna"].layers[COUNTS])


def test_hvg_and_extra_genes(pre):
    var = pre["rna"].var
    assert var["highly_variable"].sum() == 300
    extra = var["extra_gene"].to_numpy()
    assert extra.sum() == 40
    assert not (extra & var["highly_variable"].to_numpy()).any()
    ranks = np.sort(var.loc[extra, "extra_gene_rank"].to_numpy())
    np.testing.assert_array_equal(ranks, np.arange(40))
    assert (var.loc[~extra, "extra_gene_rank"] == -1).all()
    # extras are the LEAST variable: every extra below every HVG, rank 0 the lowest
    nv = var["variances_norm"]
    assert nv[extra].max() <= nv[var["highly_variable"]].min()
    by_rank = var.loc[extra].sort_values("extra_gene_rank")["variances_norm"].to_numpy()
    assert np.all(np.diff(by_rank) >= -1e-6)


def test_scenario_step_selects_first_k_extra_genes(pre):
    sc10 = make_scenario(pre, "paired", extra_genes=10)
    var = sc10["rna"].var
    assert var["extra_gene"].sum() == 10 and var["highly_variable"].sum() == 300
    assert set(var.loc[var["extra_gene"], "extra_gene_rank"]) == set(range(10))


def test_atac_binary_filter_and_lsi(pre, raw):
    atac = pre["atac"]
    X = atac.X
    assert sp.issparse(X) and set(np.unique(X.data)) == {1.0}
    train = pre.obs[SPLIT].to_numpy() == "train"
    raw_bin = _dense(raw["atac"].X) > 0
    frac = raw_bin[train].mean(0)
    kept = raw["atac"].var_names.get_indexer(atac.var_names)
    np.testing.assert_array_equal(np.sort(kept), np.flatnonzero(frac >= 0.01))
    np.testing.assert_array_equal(_dense(X), raw_bin[:, kept].astype(np.float32))
    lsi = atac.obsm[LSI]
    assert lsi.shape == (pre.n_obs, 50) and np.isfinite(lsi).all()
    # LSI must separate the simulated cell types better than chance (real signal)
    from sklearn.neighbors import KNeighborsClassifier

    y = pre.obs[LABEL].to_numpy()
    acc = KNeighborsClassifier(5).fit(lsi[train], y[train]).score(lsi[~train], y[~train])
    assert acc > 2.0 / pre.obs[LABEL].nunique()


def test_adt_clr(pre, raw):
    x = _dense(raw["adt"].X).astype(np.float64)
    lx = np.log1p(x)
    np.testing.assert_allclose(pre["adt"].X, lx - lx.mean(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(pre["adt"].X.mean(1), 0, atol=1e-5)
    np.testing.assert_array_equal(_dense(pre["adt"].layers[COUNTS]), x)
    np.testing.assert_array_equal(clr(np.array([[0.0, 0.0]])), [[0.0, 0.0]])


def test_obs_obsm_and_provenance_carried(pre, raw):
    assert pre.obs[LABEL].dtype.name == "category"
    assert set(pre.obs[BATCH].astype(str)) == {"batch_0", "batch_1"}
    np.testing.assert_array_equal(pre.obsm[TRUE_SHARED], raw.obsm[TRUE_SHARED])
    for m in MODS:
        assert true_private_key(m) in pre.obsm
        assert pre[m].uns[MODALITY_KIND] == MODS[m]["kind"]
    prov = pre.uns[PROVENANCE]
    assert "synthetic" in prov["source"]
    assert prov["preprocessing"]["params"]["rna"]["extra_genes"] == 40
    assert prov["preprocessing"]["n_train"] == 400


def test_roundtrip_h5mu(pre, tmp_path):
    path = tmp_path / "pre.h5mu"
    pre.write(path)
    back = md.read_h5mu(path)
    assert back.shape == pre.shape
    np.testing.assert_array_equal(back.obs[SPLIT], pre.obs[SPLIT])
    assert back["atac"].obsm[LSI].shape == pre["atac"].obsm[LSI].shape


def test_everything_fitted_on_train_only(raw):
    """Changing TEST cells' counts must not change any fitted quantity (HVG, peaks, IDF, LSI)."""
    base = preprocess(raw, {"rna": {"n_top_genes": 200}}, seed=0)
    test = np.flatnonzero(base.obs[SPLIT].to_numpy() == "test")
    rng = np.random.default_rng(0)
    mods = {}
    for m in raw.mod:
        a = raw[m].copy()
        X = a.X.toarray()
        # test cells: blow up a random quarter of the features (huge variance, many open peaks)
        cols = rng.choice(X.shape[1], X.shape[1] // 4, replace=False)
        X[np.ix_(test, cols)] = rng.poisson(50, size=(test.size, cols.size))
        a.X = sp.csr_matrix(X)
        mods[m] = a
    changed = _mudata(mods, raw.obs.copy())
    other = preprocess(changed, {"rna": {"n_top_genes": 200}}, seed=0)
    for m in raw.mod:
        np.testing.assert_array_equal(other[m].var_names, base[m].var_names)
    np.testing.assert_allclose(other["atac"].var["idf"], base["atac"].var["idf"])
    np.testing.assert_allclose(
        np.abs(other["atac"].varm["lsi_loadings"]),
        np.abs(base["atac"].varm["lsi_loadings"]),
        atol=1e-4,
    )
    train = base.obs[SPLIT].to_numpy() == "train"
    np.testing.assert_allclose(
        np.abs(other["atac"].obsm[LSI][train]), np.abs(base["atac"].obsm[LSI][train]), atol=1e-3
    )


def test_qc_removes_cells_before_split():
    rng = np.random.default_rng(1)
    genes = [f"G{j}" for j in range(60)] + ["MT-CO1", "MT-ND1"]
    counts = rng.poisson(3.0, size=(100, 62)).astype(np.float32)
    counts[:, -2:] = 0
    counts[:10, -2:] = 500  # 10 cells with ~85% mito counts
    counts[10:15, :] = 0
    counts[10:15, 0] = 1  # 5 cells with one detected gene
    raw = _mudata({"rna": _rna_adata(counts, genes)})
    out = preprocess(raw, {"rna": {"min_genes": 5, "max_pct_mito": 20, "n_top_genes": 20}}, seed=2)
    assert out.n_obs == 85
    assert not set(out.obs_names) & {f"c{i}" for i in range(15)}
    np.testing.assert_array_equal(out.obs[SPLIT].to_numpy(), protocol_split(85, seed=2))
    qc = out.uns[PROVENANCE]["preprocessing"]["qc"]["rna"]
    assert qc["above_max_pct_mito"] == 10 and qc["below_min_genes"] == 5
    # library size counts all genes, mitochondrial included
    np.testing.assert_allclose(out["rna"].obs[LIBRARY], counts[15:].sum(1))


def test_auto_qc_thresholds_depend_on_transcriptome_size():
    rng = np.random.default_rng(1)
    genes = [f"G{j}" for j in range(60)] + ["MT-CO1", "MT-ND1"]
    counts = rng.poisson(3.0, size=(100, 62)).astype(np.float32)
    counts[:10, -2:] = 500
    raw = _mudata({"rna": _rna_adata(counts, genes)})
    # a 62-gene subset: "auto" applies no gene/mito thresholds
    assert preprocess(raw).n_obs == 100
    # treated as a whole transcriptome: min_genes 200 (> 62 genes) removes every cell
    with pytest.raises(InputError, match="QC removed all 100 cells"):
        preprocess(raw, {"rna": {"whole_transcriptome_genes": 50}})
    out = preprocess(raw, {"rna": {"whole_transcriptome_genes": 50, "min_genes": 0}})
    assert out.n_obs == 90  # auto mito threshold (20 %) now applies


def test_fewer_genes_than_n_top_keeps_all():
    counts = np.random.default_rng(0).poisson(2.0, size=(80, 30))
    out = preprocess(_mudata({"rna": _rna_adata(counts)}), {"rna": {"min_genes": 1}})
    assert out["rna"].n_vars == 30 and out["rna"].var["highly_variable"].all()


def test_gaussian_modalities_pass_through():
    rng = np.random.default_rng(0)
    mods = {}
    for name in ("a", "b"):
        x = rng.normal(size=(50, 7)).astype(np.float32)
        a = ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(50)]))
        a.uns[MODALITY_KIND] = "gaussian"
        mods[name] = a
    out = preprocess(_mudata(mods))
    np.testing.assert_array_equal(out["a"].X, mods["a"].X)
    assert COUNTS not in out["a"].layers and LIBRARY not in out["a"].obs


def test_seurat_v3_ranks_overdispersed_genes_first():
    # Poisson genes (mean = var) plus 5 overdispersed genes: those 5 must rank highest
    rng = np.random.default_rng(0)
    means = np.exp(rng.uniform(-2, 2, size=200))
    X = rng.poisson(means, size=(1000, 200)).astype(np.float32)
    X[:, :5] = rng.negative_binomial(0.5, 0.5 / (0.5 + means[:5]), size=(1000, 5))
    train = np.ones(1000, dtype=bool)
    train[::5] = False  # test rows do not take part
    nv = seurat_v3_variances(sp.csr_matrix(X), train)
    assert set(np.argsort(-nv)[:5]) == set(range(5))


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_nan_raises():
    counts = np.random.default_rng(0).poisson(2.0, size=(20, 10)).astype(np.float32)
    counts[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN/inf"):
        preprocess(_mudata({"rna": _rna_adata(counts)}))


def test_inf_raises():
    counts = np.ones((20, 10), dtype=np.float32)
    counts[0, 0] = np.inf
    with pytest.raises(InputError, match="'rna'.*NaN/inf"):
        preprocess(_mudata({"rna": _rna_adata(counts)}))


def test_non_integer_counts_raise_with_fix():
    counts = np.random.default_rng(0).poisson(2.0, size=(20, 10)).astype(np.float32) + 0.37
    with pytest.raises(InputError, match=r"non-integer values.*layers\['counts'\]"):
        preprocess(_mudata({"rna": _rna_adata(counts)}))


def test_negative_counts_raise():
    counts = np.ones((20, 10), dtype=np.float32)
    counts[0, 0] = -1
    with pytest.raises(InputError, match="negative"):
        preprocess(_mudata({"rna": _rna_adata(counts)}))


def test_zero_cells_after_qc_raise():
    counts = np.random.default_rng(0).poisson(0.5, size=(30, 50))
    with pytest.raises(InputError, match=r"QC removed all 30 cells.*rna.min_genes"):
        preprocess(_mudata({"rna": _rna_adata(counts)}), {"rna": {"min_genes": 49}})


def test_unknown_kind_and_params():
    a = _rna_adata(np.ones((10, 3)))
    a.uns[MODALITY_KIND] = "proteomics"
    with pytest.raises(InputError, match="modality_kind"):
        preprocess(_mudata({"x": a}))
    with pytest.raises(ValueError, match="valid"):
        resolve_params({"rna": {"n_top_gene": 10}})
    with pytest.raises(ValueError, match="valid"):
        resolve_params({"hvg": 10})


def test_preprocessing_defaults_come_from_the_config_schema():
    from dmmvae.data.preprocess import resolve_params
    from dmmvae.schema import schema_defaults

    resolved = resolve_params(None)
    assert resolved == {"train_fraction": 0.8, **schema_defaults("preprocessing")}
    assert resolve_params({"rna": {"n_top_genes": 50}})["rna"]["min_cells"] == 3
    with pytest.raises(ValueError, match="valid"):
        resolve_params({"rna": {"n_top_gene": 50}})


def test_lsi_over_all_peaks_is_glues_fitted_on_train_cells():
    """obsm["X_lsi_all"]: GLUE's LSI recipe (scglue.data.lsi) over every peak, fitted on the
    train cells: on them it equals the exact SVD of GLUE's TF-IDF; test cells do not move it."""
    import scipy.sparse as sp

    from dmmvae.data.preprocess._atac import lsi_all_peaks

    rng = np.random.default_rng(0)
    n, p, k = 300, 400, 4
    # six cell types with their own open peaks: a spectrum whose top components are signal
    types = rng.integers(0, 6, n)
    rate = rng.gamma(0.3, 0.5, size=(6, p)) * (rng.random((6, p)) < 0.3) * 8
    X = sp.lil_matrix(rng.poisson(rate[types] + 0.02).astype(np.float32))
    X[:, 7] = 0  # a peak never open: skipped
    X = X.tocsr()
    train = np.zeros(n, bool)
    train[:240] = True
    z, info = lsi_all_peaks(X, train, k, seed=0)
    open_in_train = np.asarray(X[:240].sum(0)).ravel() > 0
    assert not open_in_train[7] and z.shape == (n, k) and info["n_peaks"] == open_in_train.sum()
    # the recipe by hand, on the train cells, exact SVD
    Xt = X[:240].toarray()[:, np.asarray(X[:240].sum(0)).ravel() > 0].astype(float)
    tfidf = Xt / Xt.sum(1, keepdims=True) * (240 / Xt.sum(0))
    u = np.linalg.svd(np.log1p(tfidf / tfidf.sum(1, keepdims=True) * 1e4), full_matrices=False)[0][:, :k]
    signs = np.sign(np.sum(u * z[:240], 0))  # an SVD fixes each component up to its sign
    u = u * signs
    u = (u - u.mean(1, keepdims=True)) / u.std(1, ddof=1, keepdims=True)
    corr = [np.corrcoef(u[:, c], z[:240, c])[0, 1] for c in range(k)]
    assert min(corr) > 0.99, corr
    assert np.allclose(z.mean(1), 0, atol=1e-5) and np.allclose(z.std(1, ddof=1), 1, atol=1e-4)
    # fitted on train cells only: other test cells leave the train cells' LSI unchanged
    X2 = sp.vstack([X[:240], sp.csr_matrix(rng.poisson(2.0, size=(60, p)).astype(np.float32))]).tocsr()
    z2, _ = lsi_all_peaks(X2, train, k, seed=0)
    assert np.allclose(z2[:240], z[:240], atol=1e-4)
