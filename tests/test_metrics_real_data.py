"""Metrics on real CITE-seq data (TEA-seq PBMC RNA + ADT, 1262 cells, 11 cell types).

A simple, honest integration (per-modality PCA then CCA, fitted on train cells) must beat a
random control by a wide margin on every metric, and the random control must sit at chance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dmmvae.metrics import foscttm, imputation_scores, label_transfer

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def cite(shared_data):
    import scanpy as sc
    from sklearn.cross_decomposition import CCA
    from sklearn.decomposition import PCA

    name = "teaseq_matilda_train_rna_adt_1262"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicated gene names in the source
        a = sc.read_10x_h5(shared_data / "tenx" / f"{name}.filtered_feature_bc_matrix.h5",
                           gex_only=False)
    a.var_names_make_unique()
    labels = pd.read_csv(shared_data / "tenx" / f"{name}.labels.csv", index_col=0)["cell_type"]
    labels = labels.reindex(a.obs_names).astype(str).to_numpy()
    rna = a[:, a.var["feature_types"] == "Gene Expression"].copy()
    adt = a[:, a.var["feature_types"] == "Antibody Capture"].copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    x_rna = rna.X.toarray() if sp.issparse(rna.X) else np.asarray(rna.X)
    la = np.log1p(adt.X.toarray() if sp.issparse(adt.X) else np.asarray(adt.X))
    x_adt = la - la.mean(axis=1, keepdims=True)  # CLR, as PROTOCOL
    n = a.n_obs
    perm = np.random.default_rng(0).permutation(n)
    train, test = perm[: int(0.8 * n)], perm[int(0.8 * n):]
    hv = np.argsort(x_rna[train].var(axis=0))[-1000:]
    x_rna = x_rna[:, hv]
    p_rna = PCA(30, random_state=0).fit(x_rna[train])
    p_adt = PCA(20, random_state=0).fit(x_adt[train])
    cca = CCA(10, max_iter=1000).fit(p_rna.transform(x_rna[train]), p_adt.transform(x_adt[train]))
    e_rna, e_adt = cca.transform(p_rna.transform(x_rna[test]), p_adt.transform(x_adt[test]))
    return {"e_rna": e_rna, "e_adt": e_adt, "labels": labels[test], "x_rna": x_rna,
            "x_adt": x_adt, "train": train, "test": test}


def test_foscttm_and_label_transfer_on_real_data(cite):
    rng = np.random.default_rng(0)
    fos = foscttm(cite["e_rna"], cite["e_adt"])
    rand = foscttm(rng.normal(size=cite["e_rna"].shape), rng.normal(size=cite["e_adt"].shape))
    assert fos < 0.15 < 0.4 < rand < 0.6
    lt = label_transfer(cite["e_rna"], cite["e_adt"], cite["labels"])
    lt_rand = label_transfer(rng.normal(size=cite["e_rna"].shape), cite["e_adt"],
                             cite["labels"])
    assert lt["acc_mean"] > 0.6 > lt_rand["acc_mean"]
    assert lt["bacc_mean"] > lt_rand["bacc_mean"] + 0.2


def test_imputation_on_real_data(cite):
    """k-NN regression from RNA to ADT (the protocol's control) vs a shuffled prediction."""
    from sklearn.neighbors import KNeighborsRegressor

    tr, te = cite["train"], cite["test"]
    knn = KNeighborsRegressor(15).fit(cite["x_rna"][tr], cite["x_adt"][tr])
    pred = knn.predict(cite["x_rna"][te])
    truth = cite["x_adt"][te]
    good = imputation_scores(truth, pred, "adt")
    shuffled = imputation_scores(truth, pred[np.random.default_rng(1).permutation(len(te))],
                                 "adt")
    assert good["pearson_cell"] > shuffled["pearson_cell"] + 0.05
    assert good["pearson_feature"] > 0.3 > shuffled["pearson_feature"]
    assert good["cosine_cell"] > shuffled["cosine_cell"]
