"""The training loop and the ``train_model`` entry point (run_training)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dmmvae.constants import SPLIT, TEST
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.data.synthetic import simulate_shared_private
from dmmvae.io import InputError, Predictions
from dmmvae.methods import apply_recipe, build_model
from dmmvae.methods.training.loop import TrainingFailure, resolve_training
from dmmvae.runtime import resolve_device
from dmmvae.schema import schema_defaults
from dmmvae.train import run_training

MODS = {
    "rna": {"kind": "rna", "n_features": 120, "n_private": 2},
    "atac": {"kind": "atac", "n_features": 200, "n_private": 2},
}
FAST = {"n_hidden": 32, "n_latent": 6}
QUIET = {"progress_bar": False, "batch_size": 64}



@functools.cache
def _pre():
    return preprocess(simulate_shared_private(n_cells=250, modalities=MODS, seed=3), seed=0)


def scenario(kind="paired"):
    return make_scenario(_pre(), kind)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "paired.h5mu"
    scenario().write(str(path))  # the whole scenario, uns["scenario"]["patterns"] included
    return str(path)


def _outputs(tmp_path):
    return {
        "out_predictions": str(tmp_path / "predictions.h5"),
        "out_checkpoint": str(tmp_path / "model.pt"),
        "out_history": str(tmp_path / "history.csv"),
        "out_run_info": str(tmp_path / "run_info.yaml"),
    }


def test_run_training_writes_all_four_outputs(scenario_file, tmp_path):
    out = _outputs(tmp_path)
    run_training(
        scenario_file,
        model_name="mvae",
        params=FAST,
        training={**QUIET, "max_epochs": 4},
        seed=1,
        device="auto",
        **out,
    )
    preds = Predictions.read(out["out_predictions"])
    assert not preds.failed
    mdata = scenario()
    n_test = int((mdata.obs[SPLIT] == TEST).sum())
    assert preds.embeddings["rna"].shape == (n_test, 6)
    assert set(preds.embeddings) == {"rna", "atac", "joint"}
    assert set(preds.imputations) == {("rna", "atac"), ("atac", "rna")}
    hist = pd.read_csv(out["out_history"])
    assert len(hist) == 4 and {"train_loss", "validation_loss", "train_recon_rna"} <= set(
        hist.columns
    )
    info = yaml.safe_load(open(out["out_run_info"]))
    assert info["status"] == "ok" and info["device"] == "cpu" and info["seed"] == 1
    assert info["epochs_run"] == 4 and info["training"]["max_epochs"] == 4
    assert info["torch_version"] == torch.__version__ and info["max_rss_mb"] > 0
    ckpt = torch.load(out["out_checkpoint"], weights_only=False)
    assert ckpt["params"]["n_latent"] == 6 and ckpt["training"]["batch_size"] == 64
    assert ckpt["spec"]["modalities"]["atac"]["likelihood"] == "bernoulli"
    assert "state_dict" in ckpt


def test_a_recipe_applies_to_its_modality_pair_only(scenario_file, tmp_path):
    """A model entry's settings for RNA+ATAC reach an RNA+ATAC fit over its own params and
    training; the RNA+ADT recipe does not; run_info names the recipe applied."""
    out = _outputs(tmp_path)
    recipes = {"rna_atac": {"params": {"n_latent": 4}, "training": {"max_epochs": 2}},
               "cite": {"params": {"n_latent": 9}, "training": {"max_epochs": 7}}}
    run_training(scenario_file, model_name="mvae", params=FAST,
                 training={**QUIET, "max_epochs": 4}, seed=0, device="cpu", recipes=recipes, **out)
    preds = Predictions.read(out["out_predictions"])
    assert preds.embeddings["rna"].shape[1] == 4
    info = yaml.safe_load(open(out["out_run_info"]))
    assert info["recipe"] == "rna_atac" and info["epochs_run"] == 2
    assert info["training"]["max_epochs"] == 2 and info["training"]["batch_size"] == 64
    ckpt = torch.load(out["out_checkpoint"], weights_only=False)
    assert ckpt["params"]["n_latent"] == 4 and ckpt["params"]["n_hidden"] == 32
    # the same entry on data of no recipe's pair: its own settings
    assert apply_recipe(FAST, {"max_epochs": 4}, recipes, ("rna", "atac", "adt")) == (
        FAST, {"max_epochs": 4}, None)
    assert apply_recipe(FAST, {}, recipes, ("adt", "rna"))[2] == "cite"
    assert apply_recipe(FAST, {}, None, ("rna", "atac")) == (FAST, {}, None)


def test_controls_go_through_run_training_with_empty_history(scenario_file, tmp_path):
    out = _outputs(tmp_path)
    run_training(
        scenario_file, model_name="random", params={}, training={}, seed=0, device="cpu", **out
    )
    assert not Predictions.read(out["out_predictions"]).failed
    assert pd.read_csv(out["out_history"]).empty
    assert yaml.safe_load(open(out["out_run_info"]))["epochs_run"] == 0


def test_divergence_is_recorded_not_raised(scenario_file, tmp_path):
    out = _outputs(tmp_path)
    run_training(
        scenario_file,
        model_name="mmvae",
        params=FAST,
        training={**QUIET, "max_epochs": 5, "lr": 1e12, "grad_clip": 0},
        seed=0,
        device="cpu",
        **out,
    )
    preds = Predictions.read(out["out_predictions"])
    assert preds.failed and preds.failure["reason"] == "nan_loss"
    assert preds.failure["epoch"] >= 0 and "non-finite" in preds.failure["log"]
    info = yaml.safe_load(open(out["out_run_info"]))
    assert info["status"] == "failed" and info["failure"]["reason"] == "nan_loss"
    assert torch.load(out["out_checkpoint"], weights_only=False)["status"] == "failed"
    assert len(pd.read_csv(out["out_history"])) >= 1


def test_time_limit_is_recorded_not_raised(scenario_file, tmp_path):
    out = _outputs(tmp_path)
    run_training(
        scenario_file,
        model_name="mvae",
        params=FAST,
        training={**QUIET, "max_epochs": 1000, "time_limit_minutes": 1e-5},
        seed=0,
        device="cpu",
        **out,
    )
    preds = Predictions.read(out["out_predictions"])
    assert preds.failure["reason"] == "time_limit" and preds.failure["epoch"] == 0
    assert len(preds.obs_names) == int((scenario().obs[SPLIT] == TEST).sum())


def test_bad_input_raises_and_writes_nothing(tmp_path):
    out = _outputs(tmp_path)

    def train(model_name="mvae", training=None):
        run_training(
            str(tmp_path / "missing.h5mu"),
            model_name=model_name,
            params={},
            training=training or {},
            seed=0,
            device="cpu",
            **out,
        )

    with pytest.raises(InputError, match="cannot read the scenario"):
        train()
    with pytest.raises(ValueError, match="valid keys"):
        train(training={"epochs": 3})
    with pytest.raises(ValueError, match="valid models"):
        train(model_name="vae")
    assert list(tmp_path.iterdir()) == []


def test_same_seed_same_history_other_seed_other_history():
    sc = scenario("mosaic")
    cfg = {**QUIET, "max_epochs": 3}

    def hist(seed):
        return build_model("mopoe", FAST).fit(sc, seed=seed, training=cfg).drop(columns="seconds")

    a, b, c = hist(5), hist(5), hist(6)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["train_loss"], c["train_loss"])


def test_early_stopping_restores_the_best_epoch():
    sc = scenario()
    model = build_model("mmvae", FAST)
    hist = model.fit(
        sc,
        seed=0,
        training={
            **QUIET,
            "max_epochs": 200,
            "kl_warmup_epochs": 2,
            "early_stopping_patience": 3,
            "lr": 1e-2,
        },
    )
    assert len(hist) < 200
    best = model.train_info["best_epoch"]
    assert hist["validation_loss"].idxmin() == best
    assert len(hist) - 1 - best >= 3  # stopped after `patience` epochs without improvement


def test_kl_warmup_is_linear():
    sc = scenario()
    hist = build_model("mvae", FAST).fit(
        sc,
        seed=0,
        training={**QUIET, "max_epochs": 6, "kl_warmup_epochs": 4, "early_stopping_patience": 0},
    )
    np.testing.assert_allclose(hist["kl_weight"], [0, 0.25, 0.5, 0.75, 1, 1])


def test_training_config_validation_and_device():
    assert resolve_training(None) == schema_defaults("training")
    with pytest.raises(ValueError, match="valid keys"):
        resolve_training({"max_epoch": 3})
    assert resolve_training({"amp": True})["amp"] == "bf16"
    with pytest.raises(ValueError, match="valid values"):
        resolve_training({"amp": "fp8"})
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_training_failure_carries_history():
    sc = scenario()
    with pytest.raises(TrainingFailure) as err:
        build_model("mvae", FAST).fit(sc, seed=0, training={**QUIET, "lr": 1e12, "grad_clip": 0})
    assert err.value.reason == "nan_loss" and len(err.value.history) == err.value.epoch + 1


def test_lr_plateau_divides_the_rate_and_keeps_weights_only_after_it():
    """``lr_plateau_patience`` (GLUE's ReduceLROnPlateau + ``wait_n_lrs=1``): after more than
    that many epochs without a validation improvement every optimiser's learning rate is
    divided by 10 (the history's ``lr``); the weights kept and the early-stopping patience
    count only from the first reduction on, so the run trains at the reduced rate and the
    best epoch restored is one after the reduction, even where an earlier one was lower."""
    sc = scenario()
    cfg = {**QUIET, "max_epochs": 300, "kl_warmup_epochs": 2, "early_stopping_patience": 3,
           "lr": 1e-2, "lr_plateau_patience": 4}
    model = build_model("mmvae", FAST)
    hist = model.fit(sc, seed=0, training=cfg)
    lr = hist["lr"].to_numpy()
    drops = np.flatnonzero(lr[1:] < lr[:-1]) + 1  # the first epoch at each reduced rate
    assert len(drops) >= 1 and model.train_info["lr_reductions"] == len(drops)
    np.testing.assert_allclose(lr[drops], lr[drops - 1] / 10)
    val = hist["validation_loss"].to_numpy()
    first = drops[0]  # reduced after epoch first - 1, the 5th without improving on an earlier one
    assert val[first - 6] < val[first - 5 : first].min()
    best = model.train_info["best_epoch"]
    assert best >= first - 1 and val[best] == val[first - 1 :].min()
    assert len(hist) < 300 and len(hist) - 1 - best >= 3
    # no plateau long enough within the budget: no reduction, no early stop, the best epoch kept
    cfg = {**cfg, "max_epochs": 25, "lr_plateau_patience": 40}
    model = build_model("mmvae", FAST)
    hist = model.fit(sc, seed=0, training=cfg)
    assert len(hist) == 25 and model.train_info["lr_reductions"] == 0
    assert (hist["lr"] == 1e-2).all()
    assert model.train_info["best_epoch"] == hist["validation_loss"].iloc[2:].idxmin()


def test_rmsprop_optimiser_trains_every_player():
    """``optimizer: rmsprop`` (GLUE's): the VAE and its discriminators are updated by RMSprop
    and the loss falls; an unknown optimiser is refused with the valid ones."""
    sc = scenario("diagonal")
    cfg = resolve_training({**QUIET, "optimizer": "rmsprop", "max_epochs": 15})
    model = build_model("dmmvae", {**FAST, "latent_adversarial_weight": 0.01, "anchor_weight": 0.0,
                                   "guidance_graph": False})
    hist = model.fit(sc, seed=0, training=cfg)
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    opts = model.module.configure_optimizers(cfg)
    assert {type(o).__name__ for o in opts.values()} == {"RMSprop"} and len(opts) == 2
    with pytest.raises(ValueError, match="rmsprop"):
        resolve_training({"optimizer": "sgd"})


def test_glue_budget_counts_scglues_optimiser_steps_whatever_the_data_size():
    """``budget: glue`` (scglue's automatic budget): the epoch budget, the patience and the
    adversary's burn-in are set from the learning rate and this run's batches per epoch so that
    they are fixed numbers of optimiser steps (48 / 4 / 8 over the rate); the run keeps to them,
    keeps no weights inside the burn-in and records them. Twice the cells: half the epochs."""
    from dmmvae.methods.training.loop import glue_budget

    small = glue_budget(0.05, 200, 64)
    assert small == {"max_epochs": 308, "early_stopping_patience": 26, "lr_plateau_patience": 13,
                     "align_burnin": 52}
    assert glue_budget(0.05, 400, 64)["max_epochs"] == 154  # 960 steps either way
    assert glue_budget(2e-3, 3767, 256) == {"max_epochs": 1632, "early_stopping_patience": 136,
                                            "lr_plateau_patience": 68, "align_burnin": 272}
    assert glue_budget(1.0, 10**6, 256)["max_epochs"] == 48  # never under the progress itself

    sc = scenario("diagonal")
    cfg = {**QUIET, "budget": "glue", "lr": 0.05, "max_epochs": 5, "early_stopping_patience": 1,
           "kl_warmup_epochs": 2}
    model = build_model("dmmvae", {**FAST, "latent_adversarial_weight": 0.01, "anchor_weight": 0.0,
                                   "guidance_graph": False, "align_burnin": 1})
    hist = model.fit(sc, seed=0, training=cfg)
    info = model.train_info
    auto = glue_budget(0.05, info["n_train_cells"], 64)
    assert info["auto_budget"] == auto
    assert info["training"]["max_epochs"] == auto["max_epochs"]
    assert info["training"]["early_stopping_patience"] == auto["early_stopping_patience"]
    assert info["training"]["lr_plateau_patience"] == 0  # off stays off
    assert model.module.params["align_burnin"] == auto["align_burnin"]
    assert 2 + auto["align_burnin"] + auto["early_stopping_patience"] <= len(hist) <= auto["max_epochs"]
    assert info["best_epoch"] >= 2 + auto["align_burnin"]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    with pytest.raises(ValueError, match="budget"):
        resolve_training({"budget": "steps"})
