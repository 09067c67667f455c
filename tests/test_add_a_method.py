"""Adding a method is one new file plus one registry line (README "Add a model").

The "new file" here is the small class below (a method that embeds every modality by a PCA of
its own train cells, fitted per modality: no alignment, so its FOSCTTM is near chance, yet it
is a real method through the whole contract). The registry line is ``MODELS["toy_pca"] =
ToyPCA``; nothing else is edited, and the method runs through the ``train_model`` job and the
``evaluate_model`` job, whose outputs carry its rows and its provenance.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import yaml
from sklearn.decomposition import PCA

from dmmvae.constants import SPLIT, TEST, TRAIN
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.data.synthetic import simulate_shared_private
from dmmvae.evaluate import evaluate_run
from dmmvae.io import Predictions
from dmmvae.methods import MODELS, Method
from dmmvae.train import run_training


class ToyPCA(Method):
    """Per-modality PCA of the train cells that show the modality."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"n_dims": 5}
    TRAINING_KEYS: ClassVar[frozenset[str]] = frozenset({"max_epochs"})

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        self.pcas = {}
        for m in mdata.mod:
            shows = train & mdata.obs[f"visible_{m}"].to_numpy(bool)
            x = mdata.mod[m].X[shows]
            self.pcas[m] = PCA(self.params["n_dims"], random_state=seed).fit(
                x.toarray() if hasattr(x, "toarray") else x
            )
        return pd.DataFrame({"epoch": [0], "max_epochs_seen": [training["max_epochs"]]})

    def predict(self, mdata) -> Predictions:
        test = mdata.obs[SPLIT].to_numpy() == TEST
        emb = {}
        for m, pca in self.pcas.items():
            x = mdata.mod[m].X[test]
            emb[m] = pca.transform(x.toarray() if hasattr(x, "toarray") else x)
        return Predictions(mdata.obs_names[test], embeddings=emb)


def test_a_registered_toy_method_runs_through_train_and_evaluate(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "toy_pca", ToyPCA)  # the one registry line
    mods = {"rna": {"kind": "rna", "n_features": 80, "n_private": 1},
            "atac": {"kind": "atac", "n_features": 120, "n_private": 1}}
    pre = preprocess(simulate_shared_private(n_cells=300, modalities=mods, seed=1), seed=0)
    scen = tmp_path / "scenario.h5mu"
    make_scenario(pre, "diagonal").write(scen)
    out = {k: tmp_path / f"{k}" for k in ("predictions.h5", "model.pt", "history.csv",
                                          "run_info.yaml", "metrics.csv")}
    run_training(
        str(scen), model_name="toy_pca", params={"n_dims": 4},
        training={"max_epochs": 7, "lr": 0.5}, seed=0, device="auto",
        out_predictions=str(out["predictions.h5"]), out_checkpoint=str(out["model.pt"]),
        out_history=str(out["history.csv"]), out_run_info=str(out["run_info.yaml"]),
    )
    info = yaml.safe_load(out["run_info.yaml"].read_text())
    assert info["status"] == "ok" and info["params"] == {"n_dims": 4}
    # provenance: what the method applied, and what it ignored (lr is not a toy_pca knob)
    assert info["training"] == {"max_epochs": 7}
    assert "lr" in info["training_ignored"] and "max_epochs" not in info["training_ignored"]
    assert info["device"] == "cpu"  # the method says it does not use the job's device
    assert pd.read_csv(out["history.csv"])["max_epochs_seen"].tolist() == [7]

    evaluate_run(scen, out["predictions.h5"], out["metrics.csv"], dataset="toy", scenario="diagonal",
                 model="toy_pca", seed=0, history_path=out["history.csv"])
    metrics = pd.read_csv(out["metrics.csv"])
    assert set(metrics["model"]) == {"toy_pca"}
    fos = metrics.set_index("metric")["value"]["foscttm/mean"]
    assert 0.3 < fos < 0.7  # unaligned per-modality PCAs: near chance, and computed
    assert np.isfinite(metrics.set_index("metric")["value"]["label_transfer_acc/mean"])
    # it has no imputations: no imputation row claims a value
    assert not metrics["metric"].str.startswith("imputation").any() or metrics[
        metrics["metric"].str.startswith("imputation")]["value"].isna().all()
