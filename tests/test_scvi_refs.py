"""scvi-tools reference methods (totalVI, MultiVI) through their public API.

The training tests need scvi-tools (``pip install -e .[refs]``) and are skipped without it;
the clear-error test runs everywhere.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

from dmmvae.constants import LABEL, SPLIT, TEST
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.data.synthetic import simulate_shared_private
from dmmvae.io import InputError
from dmmvae.methods import MODELS, build_model
from dmmvae.metrics import imputation_scores, label_transfer

SPECS = {
    "rna": {"kind": "rna", "n_features": 120, "n_private": 2},
    "atac": {"kind": "atac", "n_features": 200, "n_private": 2},
    "adt": {"kind": "adt", "n_features": 20, "n_private": 2},
}
FAST = {"max_epochs": 25, "lr": 3e-3, "early_stopping": False, "n_latent": 10}


@functools.cache
def _data(mods: tuple[str, ...], kind: str = "paired"):
    raw = simulate_shared_private(n_cells=400, modalities={m: SPECS[m] for m in mods}, seed=0)
    return make_scenario(preprocess(raw, seed=0), kind, seed=0)


def test_registered_and_clear_error_without_scvi(monkeypatch):
    assert {"totalvi", "multivi"} <= set(MODELS)
    monkeypatch.setitem(sys.modules, "scvi", None)  # makes `import scvi` fail
    for name in ("totalvi", "multivi"):
        with pytest.raises(ModuleNotFoundError, match=r"pip install -e \.\[refs\]"):
            build_model(name, {"max_epochs": 1}).fit(_data(("rna", "adt")), seed=0)


def test_run_training_records_missing_scvi_as_not_installed(monkeypatch, tmp_path):
    from dmmvae.io import Predictions
    from dmmvae.train import run_training

    monkeypatch.setitem(sys.modules, "scvi", None)
    path = tmp_path / "scenario.h5mu"
    _data(("rna", "adt")).write(path)
    out = {k: str(tmp_path / f) for k, f in (
        ("out_predictions", "p.h5"), ("out_checkpoint", "m.pt"),
        ("out_history", "h.csv"), ("out_run_info", "r.yaml"))}
    run_training(str(path), model_name="totalvi", params={"max_epochs": 1}, training={},
                 seed=0, device="cpu", **out)
    failure = Predictions.read(out["out_predictions"]).failure
    assert failure["reason"] == "not_installed"
    assert "pip install -e .[refs]" in failure["log"]


def test_wrong_modalities_are_a_clear_input_error():
    pytest.importorskip("scvi", reason="scvi-tools not installed (pip install -e .[refs])")
    with pytest.raises(InputError, match="needs modalities"):
        build_model("totalvi", FAST).fit(_data(("rna", "atac")), seed=0)


def _labels(sc):
    return sc.obs[LABEL].to_numpy()[sc.obs[SPLIT].to_numpy() == TEST]


def _truth(sc, mod):
    x = sc.mod[mod].X[sc.obs[SPLIT].to_numpy() == TEST]
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


@pytest.mark.parametrize("kind", ["paired", "mosaic"])
def test_totalvi_trains_and_predicts_in_scoring_normalization(kind):
    pytest.importorskip("scvi", reason="scvi-tools not installed (pip install -e .[refs])")
    sc = _data(("rna", "adt"), kind)
    model = build_model("totalvi", FAST)
    hist = model.fit(sc, seed=0)
    assert len(hist) == FAST["max_epochs"] and "elbo_train" in hist.columns
    assert hist["elbo_train"].iloc[-1] < hist["elbo_train"].iloc[0]
    p = model.predict(sc)
    n = int((sc.obs[SPLIT] == TEST).sum())
    assert set(p.embeddings) == {"joint", "rna"} and p.embeddings["joint"].shape == (n, 10)
    # the joint latent separates the cell types far above chance (6 types: ~0.17)
    lt = label_transfer(p.embeddings["joint"], p.embeddings["joint"], _labels(sc))
    assert lt["acc_mean"] > 0.5
    imp = p.imputations[("rna", "adt")]
    np.testing.assert_allclose(imp.mean(1), 0, atol=1e-4)  # CLR rows are centred
    assert imputation_scores(_truth(sc, "adt"), imp, "adt")["pearson_cell"] > 0.2
    assert any("needs RNA" in n for n in p.info["notes"])


def test_multivi_rna_atac_trains_and_predicts():
    pytest.importorskip("scvi", reason="scvi-tools not installed (pip install -e .[refs])")
    sc = _data(("rna", "atac"), "mosaic")
    model = build_model("multivi", FAST)
    hist = model.fit(sc, seed=0)
    assert hist["elbo_train"].iloc[-1] < hist["elbo_train"].iloc[0]
    p = model.predict(sc)
    assert set(p.embeddings) == {"joint", "rna", "atac"}
    lt = label_transfer(p.embeddings["rna"], p.embeddings["rna"], _labels(sc))
    assert lt["acc_mean"] > 0.4
    acc = p.imputations[("rna", "atac")]
    assert acc.shape == _truth(sc, "atac").shape and 0 <= acc.min() and acc.max() <= 1
    rna = p.imputations[("atac", "rna")]
    assert np.isfinite(rna).all() and rna.min() >= 0
    # scoring normalization: log1p(1e4 * f * rho) sums like the observed cells' log values
    assert abs(np.expm1(rna).sum(1).mean() / np.expm1(_truth(sc, "rna")).sum(1).mean() - 1) < 0.2


def test_multivi_rna_adt_where_the_api_allows():
    pytest.importorskip("scvi", reason="scvi-tools not installed (pip install -e .[refs])")
    sc = _data(("rna", "adt"))
    model = build_model("multivi", {**FAST, "max_epochs": 5})
    model.fit(sc, seed=0)
    p = model.predict(sc)
    assert set(p.embeddings) == {"joint", "rna", "adt"}
    assert ("adt", "rna") in p.imputations and ("rna", "adt") not in p.imputations
    assert any("no rna->adt" in n for n in p.info["notes"])
