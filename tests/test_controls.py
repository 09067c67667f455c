"""Controls of the PROTOCOL: pca_cca aligns paired data, random does not, knn imputes."""

import numpy as np
import pytest
import scipy.sparse as sp

from dmmvae.constants import JOINT, SPLIT
from dmmvae.data.scenarios import make_scenario, protocol_split
from dmmvae.data.synthetic import simulate_shared_private
from dmmvae.methods import MODELS, build_model, get_model_class


def _foscttm(x, y):
    d = ((x[:, None] - y[None]) ** 2).sum(-1)
    t = np.diag(d)
    return ((d < t[:, None]).mean() + (d < t[None, :]).mean()) / 2


@pytest.fixture(scope="module")
def mdata():
    m = simulate_shared_private(n_cells=800, seed=2)
    m.obs[SPLIT] = protocol_split(m.n_obs, 0)
    for k in m.mod:  # a scoring-like normalisation is enough for the controls
        m[k].X = sp.csr_matrix(np.log1p(m[k].X.toarray()))
    return m


def test_registry_names_and_errors():
    assert {"pca_cca", "knn_regression", "random"} <= set(MODELS)
    with pytest.raises(ValueError, match="valid models are"):
        get_model_class("pca_cka")
    with pytest.raises(ValueError, match="valid parameters are"):
        build_model("pca_cca", {"n_comps": 3})


def test_pca_cca_beats_random_on_paired_data(mdata):
    s = make_scenario(mdata, "paired")
    cca = build_model("pca_cca")
    cca.fit(s, seed=0)
    p = cca.predict(s)
    rnd = build_model("random")
    rnd.fit(s, seed=0)
    q = rnd.predict(s)
    assert p.embeddings["rna"].shape == (160, 20)
    f_cca = _foscttm(p.embeddings["rna"], p.embeddings["atac"])
    f_rnd = _foscttm(q.embeddings["rna"], q.embeddings["atac"])
    assert f_cca < 0.3 < 0.4 < f_rnd < 0.6
    assert JOINT in p.embeddings


def test_pca_cca_refuses_diagonal_data(mdata):
    s = make_scenario(mdata, "diagonal")
    with pytest.raises(RuntimeError, match="needs train cells showing both"):
        build_model("pca_cca").fit(s)


def test_knn_regression_imputes_better_than_the_mean(mdata):
    s = make_scenario(mdata, "paired")
    knn = build_model("knn_regression")
    knn.fit(s, seed=0)
    pred = knn.predict(s).imputations[("rna", "atac")]
    test = (s.obs[SPLIT] == "test").to_numpy()
    truth = s["atac"].X[test].toarray()
    mean = s["atac"].X[~test].toarray().mean(0, keepdims=True)
    # per-cell Pearson beats a constant prediction of the train mean profile
    def cell_r(a, b):
        a = a - a.mean(1, keepdims=True)
        b = b - b.mean(1, keepdims=True)
        return ((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))).mean()

    assert cell_r(pred, truth) > cell_r(np.repeat(mean, len(truth), 0), truth) + 0.02
