"""evaluate_predictions / evaluate_run on a synthetic scenario following the data contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmmvae.constants import SPLIT, TEST
from dmmvae.data.toy import toy_predictions, toy_scenario
from dmmvae.evaluate import evaluate_predictions, evaluate_run, resolve_params
from dmmvae.io import InputError, Predictions

FAST = {"families": ["foscttm", "label_transfer", "imputation", "recovery"]}


@pytest.fixture(scope="module")
def mdata():
    return toy_scenario(400, seed=0)


def _values(df: pd.DataFrame) -> dict[str, float]:
    return dict(zip(df["metric"], df["value"], strict=True))


def test_all_families_and_names(mdata):
    preds = toy_predictions(mdata, noise=0.3)
    v = _values(evaluate_predictions(mdata, preds, {"families": [*FAST["families"], "realism"]}))
    for name in ["foscttm/rna-adt", "foscttm/rna-atac", "foscttm/adt-atac", "foscttm/mean",
                 "label_transfer_acc/rna->adt", "label_transfer_bacc/atac->rna",
                 "label_transfer_acc/rna-adt", "label_transfer_acc/mean",
                 "imputation_pearson_cell/rna->adt", "imputation_pearson_feature/atac->rna",
                 "imputation_cosine_cell/adt->rna", "imputation_auroc/rna->atac",
                 "imputation_pearson_cell/adt->atac", "recovery_shared_r2/mean",
                 "recovery_shared_r2/rna", "recovery_shared_r2/rna->adt",
                 "recovery_shared_r2/joint", "recovery_private_r2/rna", "realism_c2st_auroc/prior/rna",
                 "realism_c2st_auroc/rna->adt", "realism_c2st_auroc/mean"]:
        assert name in v, name
    assert "imputation_pearson_feature/rna->atac" not in v  # ATAC target: AUROC + per-cell
    assert v["foscttm/mean"] == pytest.approx(np.mean([v["foscttm/rna-adt"],
                                                       v["foscttm/rna-atac"],
                                                       v["foscttm/adt-atac"]]))
    assert v["foscttm/mean"] < 0.1
    assert v["label_transfer_acc/mean"] > 0.9
    assert v["recovery_shared_r2/mean"] > 0.9 and v["recovery_shared_r2/adt->atac"] > 0.9
    assert v["recovery_private_r2/mean"] < 0.2  # shared factors carry no private signal


def test_quality_moves_metrics_in_the_right_direction(mdata):
    good = _values(evaluate_predictions(mdata, toy_predictions(mdata, noise=0.1), FAST))
    bad = _values(evaluate_predictions(mdata, toy_predictions(mdata, noise=3.0), FAST))
    assert good["foscttm/mean"] < bad["foscttm/mean"]
    assert good["label_transfer_acc/mean"] > bad["label_transfer_acc/mean"]
    assert good["imputation_pearson_cell/mean"] > bad["imputation_pearson_cell/mean"]
    assert good["imputation_auroc/mean"] > bad["imputation_auroc/mean"]
    assert good["recovery_shared_r2/mean"] > bad["recovery_shared_r2/mean"]


def test_random_embeddings_are_at_chance(mdata):
    test = np.asarray(mdata.obs[SPLIT] == TEST)
    rng = np.random.default_rng(0)
    emb = {m: rng.normal(size=(test.sum(), 8)).astype(np.float32) for m in mdata.mod}
    preds = Predictions(mdata.obs_names[test], emb)
    v = _values(evaluate_predictions(mdata, preds, FAST))
    assert abs(v["foscttm/mean"] - 0.5) < 0.08
    assert v["label_transfer_acc/mean"] < 0.5  # 4 balanced-ish types: chance ~ 0.25
    assert not any(k.startswith("imputation") for k in v)


def test_partial_predictions_only_score_what_is_there(mdata):
    full = toy_predictions(mdata, noise=0.3)
    only_imp = Predictions(full.obs_names, imputations={("rna", "adt"): full.imputations[
        ("rna", "adt")]})
    df = evaluate_predictions(mdata, only_imp, FAST)
    assert set(df["metric"]) == {"imputation_pearson_cell/rna->adt",
                                 "imputation_pearson_feature/rna->adt",
                                 "imputation_cosine_cell/rna->adt",
                                 "imputation_pearson_cell/mean", "imputation_pearson_feature/mean",
                                 "imputation_cosine_cell/mean"}
    # no labels: no label transfer, the rest still works
    m2 = mdata.copy()
    del m2.obs["cell_type"]
    v = _values(evaluate_predictions(m2, full, FAST))
    assert "foscttm/mean" in v and not any(k.startswith("label_transfer") for k in v)
    # some test cells unlabelled: label transfer on the labelled ones, said in the note
    m3 = mdata.copy()
    lab = m3.obs["cell_type"].astype(object)
    test_names = np.asarray(m3.obs_names[m3.obs[SPLIT] == TEST])
    lab[test_names[:5]] = np.nan
    m3.obs["cell_type"] = lab
    df = evaluate_predictions(m3, full, {"families": ["label_transfer"]})
    n_lab = len(test_names) - 5
    assert (df["note"] == f"k=5 labelled cells={n_lab}").all()
    assert df.set_index("metric").loc["label_transfer_acc/mean", "value"] > 0.9


def test_shared_dims_select_the_shared_latent(mdata):
    """The RNA embedding holds the true RNA-private factors in columns 0-1 and the noisy
    shared factors in columns 2-5: only ``shared_dims`` tells recovery which columns are shared,
    so ignoring it (or reading other columns) changes both R^2 in a known direction."""
    test = np.asarray(mdata.obs[SPLIT] == TEST)
    shared = np.asarray(mdata.obsm["true_shared"])[test]
    private = np.asarray(mdata.obsm["true_private_rna"])[test]
    noise = np.random.default_rng(0).normal(scale=0.1, size=shared.shape)
    rna = np.hstack([private, shared + noise]).astype(np.float32)
    preds = Predictions(mdata.obs_names[test], {"rna": rna}, info={"shared_dims": [2, 3, 4, 5]})
    fam = {"families": ["recovery"]}
    right = _values(evaluate_predictions(mdata, preds, fam))
    assert right["recovery_shared_r2/rna"] > 0.9
    assert right["recovery_private_r2/rna"] < 0.1  # the private columns were left out
    preds.info = {}  # whole embedding: the private columns leak
    whole = _values(evaluate_predictions(mdata, preds, fam))
    assert whole["recovery_private_r2/rna"] > 0.9
    preds.info = {"shared_dims": [0, 1]}  # the private columns named as shared
    wrong = _values(evaluate_predictions(mdata, preds, fam))
    assert wrong["recovery_shared_r2/rna"] < 0.5 < 0.9 < wrong["recovery_private_r2/rna"]


def test_recovery_and_mixing_see_alignment(mdata):
    """True shared factors in each modality's embedding (aligned) vs the same embeddings with
    the cells of one modality shuffled (each cell's ATAC code is another cell's: unaligned).
    Per-modality recovery cannot tell them apart for the unshuffled modality; cross recovery,
    FOSCTTM and modality mixing can."""
    aligned = toy_predictions(mdata, noise=0.2)
    shuffled = toy_predictions(mdata, noise=0.2)
    perm = np.random.default_rng(5).permutation(len(shuffled.obs_names))
    shuffled.embeddings["atac"] = shuffled.embeddings["atac"][perm]
    fam = {"families": ["recovery", "foscttm"]}
    a = _values(evaluate_predictions(mdata, aligned, fam))
    s = _values(evaluate_predictions(mdata, shuffled, fam))
    assert a["recovery_shared_r2/rna"] > 0.8 and s["recovery_shared_r2/rna"] > 0.8
    assert a["recovery_shared_r2/rna->atac"] > 0.8 > 0.1 > s["recovery_shared_r2/rna->atac"]
    assert a["foscttm/rna-atac"] < 0.1 < 0.4 < s["foscttm/rna-atac"]


def test_non_finite_embedding_gives_nan_with_reason(mdata):
    preds = toy_predictions(mdata, noise=0.3)
    preds.embeddings["adt"][0, 0] = np.nan
    df = evaluate_predictions(mdata, preds, {"families": ["foscttm"]})
    row = df.set_index("metric").loc["foscttm/rna-adt"]
    assert np.isnan(row["value"]) and "non-finite" in row["reason"]
    assert np.isfinite(df.set_index("metric").loc["foscttm/rna-atac", "value"])


def test_failed_predictions_give_failed_row(mdata):
    preds = Predictions(["a"], failure={"reason": "NaN loss", "epoch": 3, "log": "x.log"})
    df = evaluate_predictions(mdata, preds)
    assert df["metric"].tolist() == ["failed"]
    assert np.isnan(df["value"].iloc[0]) and df["reason"].iloc[0] == "NaN loss"


def test_wrong_cells_raise_input_error(mdata):
    preds = toy_predictions(mdata, noise=0.3)
    preds.obs_names = preds.obs_names[:-1]
    with pytest.raises(InputError, match="another split"):
        evaluate_predictions(mdata, preds, FAST)


def test_realism_only_for_methods_that_generate_cells(mdata):
    """Imputations that are averages of real cells (knn_regression) are not scored for
    realism; the same imputations with prior samples beside them are."""
    full = toy_predictions(mdata, noise=0.3)
    imp_only = Predictions(full.obs_names, imputations=full.imputations)
    fam = {"families": ["imputation", "realism"]}
    assert not any(m.startswith("realism") for m in evaluate_predictions(mdata, imp_only, fam)
                   ["metric"])
    gen = Predictions(full.obs_names, imputations=full.imputations, generated=full.generated,
                      cross_generated=full.cross_generated)
    v = _values(evaluate_predictions(mdata, gen, fam))
    assert "realism_c2st_auroc/prior/rna" in v and "realism_c2st_auroc/rna->adt" in v


def test_default_families_are_every_registered_family():
    from dmmvae.metrics import computed_families

    assert resolve_params(None)["families"] == computed_families(), (
        "the default of evaluation.families in the config schema must be null (= every "
        "registered family)")


def test_unknown_params_raise():
    with pytest.raises(ValueError, match="valid parameters"):
        resolve_params({"kk": 3})
    with pytest.raises(ValueError, match="valid families"):
        resolve_params({"families": ["foscttm", "magic"]})


def test_evaluate_run_writes_tidy_csv(tmp_path, mdata):
    scen = tmp_path / "scenario.h5mu"
    mdata.write(scen)
    preds = toy_predictions(mdata, noise=0.3)
    # predictions in another cell order are matched by name
    order = np.random.default_rng(0).permutation(len(preds.obs_names))
    preds = Predictions(preds.obs_names[order],
                        {k: v[order] for k, v in preds.embeddings.items()},
                        {k: v[order] for k, v in preds.imputations.items()}, info=preds.info)
    pp = tmp_path / "predictions.h5"
    preds.write(pp)
    hist = tmp_path / "history.csv"
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [3.0, 2.0, 1.5]}).to_csv(hist, index=False)
    out = tmp_path / "out" / "metrics.csv"
    evaluate_run(scen, pp, out, dataset="toy", scenario="paired", model="m", seed=2,
                 params=FAST, history_path=hist)
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["dataset", "scenario", "model", "seed", "metric", "value",
                                "reason", "note"]
    assert (df["dataset"] == "toy").all() and (df["seed"] == 2).all()
    v = dict(zip(df["metric"], df["value"], strict=True))
    assert float(v["epochs"]) == 3.0
    assert float(v["foscttm/mean"]) < 0.1  # order was matched, not taken positionally
    assert (df.loc[df["metric"].str.startswith("label_transfer"), "note"] == "k=5").all()


def test_evaluate_run_failed_and_missing_inputs(tmp_path, mdata):
    scen = tmp_path / "scenario.h5mu"
    mdata.write(scen)
    pp = tmp_path / "predictions.h5"
    Predictions([], failure={"reason": "out of memory", "epoch": 1, "log": "l"}).write(pp)
    out = tmp_path / "metrics.csv"
    evaluate_run(scen, pp, out, dataset="d", scenario="s", model="m", seed=0)
    df = pd.read_csv(out)
    assert df["metric"].tolist() == ["failed"] and df["reason"].tolist() == ["out of memory"]
    out2 = tmp_path / "none.csv"
    with pytest.raises(InputError, match="not found"):
        evaluate_run(tmp_path / "nope.h5mu", pp, out2, dataset="d", scenario="s", model="m",
                     seed=0)
    assert not out2.exists()
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(InputError, match="predictions file"):
        evaluate_run(scen, bad, out2, dataset="d", scenario="s", model="m", seed=0)
    assert not out2.exists()


def test_tiny_test_set_reports_reasons_instead_of_crashing():
    small = toy_scenario(30, modalities=("rna", "adt"), seed=3)  # 6 test cells
    preds = toy_predictions(small, noise=0.3)
    df = evaluate_predictions(small, preds, {"families": ["foscttm", "label_transfer",
                                                          "realism"]})
    real = df[df["metric"].str.startswith("realism_c2st_auroc/")]
    assert len(real) and real["value"].isna().all()
    assert real["reason"].str.contains("at least 10 cells").all()
    assert np.isfinite(df.set_index("metric").loc["foscttm/rna-adt", "value"])


def test_paper_variants_are_options_of_the_same_metrics(mdata):
    """One direction and correlation distance for FOSCTTM (MaxFuse), flattened correlations
    (seed 002): options in `evaluation`, rows beside the PROTOCOL ones, which stay the same."""
    preds = toy_predictions(mdata, noise=0.5)
    fams = {"families": ["foscttm", "imputation"]}
    base = _values(evaluate_predictions(mdata, preds, fams))
    var = _values(evaluate_predictions(
        mdata, preds, {**fams, "foscttm_distance": "correlation", "imputation_variants": True}))
    # the two directions average to the pair value
    assert base["foscttm/rna-adt"] == pytest.approx(
        (base["foscttm/rna->adt"] + base["foscttm/adt->rna"]) / 2)
    assert var["foscttm/rna-adt"] != base["foscttm/rna-adt"]   # another distance, another value
    assert var["foscttm/mean"] < 0.3                            # still a good alignment
    assert "imputation_pearson_flat/rna->adt" not in base
    for row in ("imputation_pearson_flat/rna->adt", "imputation_cosine_flat/mean",
                "imputation_cosine_cell/rna->atac"):
        assert row in var, row
    assert var["imputation_pearson_cell/rna->adt"] == base["imputation_pearson_cell/rna->adt"]
