"""The MMVAE++ reproduction: the GP toy generator, the claim file, the verdict logic, and one
model end to end on the toy data (dmmvae.data.toy_gp, dmmvae.reproduce,
benchmarks/bench_reproduce_mmvae_plus.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsRegressor

from dmmvae.constants import (
    LABEL,
    MODALITY_KIND,
    PROVENANCE,
    SPLIT,
    TEST,
    TRAIN,
    TRUE_SHARED,
    true_private_key,
)
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.data.toy_gp import rbf_kernel, simulate_gp_toy
from dmmvae.reproduce import (
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    ClaimsError,
    load_claims,
    reproduction_table,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "config" / "reproduce" / "mmvae_plus_2024.yaml"
BENCH = ROOT / "benchmarks" / "bench_reproduce_mmvae_plus.py"


@pytest.fixture(scope="module")
def toy():
    return simulate_gp_toy(n_cells=1000, n_private_1=50, seed=3)


def _knn_r2(z: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Cross-validated (5-fold) k-NN prediction of ``x`` from ``z``: (R^2, residual rms)."""
    pred = cross_val_predict(KNeighborsRegressor(10), z, x, cv=5)
    return float(r2_score(x, pred)), float(np.sqrt(np.mean((x - pred) ** 2)))


# ---------------------------------------------------------------------------- generator
def test_generator_shapes_kinds_and_ground_truth(toy):
    assert list(toy.mod) == ["mod1", "mod2"]
    assert toy.mod["mod1"].shape == (1000, 10 + 50)
    assert toy.mod["mod2"].shape == (1000, 10 + 100)
    for m in ("mod1", "mod2"):
        a = toy.mod[m]
        assert a.uns[MODALITY_KIND] == "gaussian"
        assert a.X.dtype == np.float32 and np.isfinite(a.X).all()
        assert list(a.var["driver"][:10]) == ["shared"] * 10
        assert set(a.var["driver"][10:]) == {"private"}
        assert toy.obsm[true_private_key(m)].shape == (1000, 2)
    zs = np.asarray(toy.obsm[TRUE_SHARED])
    assert zs.shape == (1000, 2)
    assert zs.min() >= -2.0 and zs.max() <= 2.0  # Uniform(-2, 2)
    # label = 1[z_shared_1 > 0], balanced near 0.5
    np.testing.assert_array_equal(toy.obs["y"].to_numpy(), (zs[:, 0] > 0).astype(int))
    assert abs(toy.obs["y"].mean() - 0.5) < 0.05
    assert set(toy.obs[LABEL].astype(str)) == {"y0", "y1"}
    params = toy.uns[PROVENANCE]["params"]
    assert params["n_private_1"] == 50 and params["noise_sd"] == 0.15
    assert "2403.06338" in toy.uns[PROVENANCE]["reference"]["arxiv"]


def test_generator_standardises_then_adds_noise_of_sd_015():
    clean = simulate_gp_toy(n_cells=500, n_private_1=20, noise_sd=0.0, seed=7)
    noisy = simulate_gp_toy(n_cells=500, n_private_1=20, noise_sd=0.15, seed=7)
    for m in ("mod1", "mod2"):
        x0 = np.asarray(clean.mod[m].X, np.float64)
        np.testing.assert_allclose(x0.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(x0.std(0), 1.0, atol=1e-4)
        resid = np.asarray(noisy.mod[m].X, np.float64) - x0
        assert resid.std(0).min() > 0.13 and resid.std(0).max() < 0.17
        assert abs(resid.std() - 0.15) < 0.005
        # noise AFTER standardising: column sd ~ sqrt(1 + 0.15^2) = 1.011, not 1
        sd_noisy = np.asarray(noisy.mod[m].X, np.float64).std(0).mean()
        assert abs(sd_noisy - np.sqrt(1 + 0.15**2)) < 0.004


def test_features_depend_on_the_factors_of_their_block(toy):
    x1, x2 = np.asarray(toy.mod["mod1"].X), np.asarray(toy.mod["mod2"].X)
    zs = np.asarray(toy.obsm[TRUE_SHARED])
    z1 = np.asarray(toy.obsm[true_private_key("mod1")])
    z2 = np.asarray(toy.obsm[true_private_key("mod2")])
    # smooth function of the shared factors + noise sd 0.15 (k-NN residual ~0.15-0.2)
    r2, rms = _knn_r2(zs, x1[:, :10])
    assert r2 > 0.8 and 0.13 < rms < 0.25
    assert _knn_r2(zs, x2[:, :10])[0] > 0.8
    # private features: functions of the modality's own private factors only (authors' design)
    assert _knn_r2(zs, x1[:, 10:])[0] < 0.2
    assert _knn_r2(z1, x1[:, 10:])[0] > 0.8
    assert _knn_r2(z2, x2[:, 10:])[0] > 0.8
    assert _knn_r2(z1, x2[:, 10:])[0] < 0.2
    # shared features carry nothing of the private factors
    assert _knn_r2(z1, x1[:, :10])[0] < 0.2


def test_rbf_kernel_matches_its_definition():
    z = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    k = rbf_kernel(z, lengthscale=1.0)
    assert k[0, 1] == pytest.approx(np.exp(-0.5))
    assert k[0, 2] == pytest.approx(np.exp(-2.0))
    assert k[1, 2] == pytest.approx(np.exp(-2.5))
    np.testing.assert_allclose(np.diag(k), 1.0)
    assert rbf_kernel(z, lengthscale=2.0)[0, 2] == pytest.approx(np.exp(-0.5))


def test_generator_is_seeded_and_goes_through_preprocess_and_scenario():
    a = simulate_gp_toy(n_cells=200, n_private_1=20, seed=1)
    b = simulate_gp_toy(n_cells=200, n_private_1=20, seed=1)
    c = simulate_gp_toy(n_cells=200, n_private_1=20, seed=2)
    np.testing.assert_array_equal(a.mod["mod1"].X, b.mod["mod1"].X)
    assert not np.allclose(a.mod["mod1"].X, c.mod["mod1"].X)
    sc = make_scenario(preprocess(a, seed=0), "paired", seed=0)
    assert sc.n_obs == 200  # no QC on gaussian modalities
    np.testing.assert_array_equal(sc.mod["mod1"].X, a.mod["mod1"].X)  # values kept as given
    assert set(sc.obs[SPLIT]) == {"train", "test"}
    assert sc.obs["visible_mod1"].sum() == (sc.obs[SPLIT] == "train").sum()
    assert TRUE_SHARED in sc.obsm and sc.mod["mod2"].uns[MODALITY_KIND] == "gaussian"
    with pytest.raises(ValueError, match="at least one feature"):
        simulate_gp_toy(n_cells=10, n_private_1=0)


# ---------------------------------------------------------------------------- verdict
@pytest.mark.parametrize(
    ("published", "sd", "ours", "expected", "in_note"),
    [
        (0.80, 0.05, 0.78, REPRODUCED, "<= published sd"),
        (0.80, 0.05, 0.85, REPRODUCED, "<= published sd"),  # boundary: |gap| == sd
        (0.80, 0.05, 0.70, NOT_REPRODUCED, "gap -0.1"),
        (0.80, 0.05, 0.95, NOT_REPRODUCED, "gap +0.15"),
        (0.80, None, 0.75, REPRODUCED, "10 %"),  # within 10 % of 0.8 = 0.08
        (0.80, None, 0.70, NOT_REPRODUCED, "10 %"),
        (-0.5, None, -0.56, NOT_REPRODUCED, "gap -0.06"),  # 10 % of |published|
        (0.80, 0.05, None, NOT_RUN, "no measurement"),
        (0.80, 0.05, float("nan"), NOT_RUN, "no measurement"),
        ("keeps", None, "keeps", REPRODUCED, "qualitative"),
        ("drops", None, "keeps", NOT_REPRODUCED, "published 'drops', ours 'keeps'"),
    ],
)
def test_verdict_cases(published, sd, ours, expected, in_note):
    v, note = verdict(published, sd, ours)
    assert v == expected
    assert in_note in note


def test_verdict_not_run_carries_the_reason():
    assert verdict(0.5, None, None, reason="model crashed") == (NOT_RUN, "model crashed")
    with pytest.raises(TypeError):
        verdict(0.5, None, [0.4])


# ---------------------------------------------------------------------------- claim file
def test_load_claims_on_the_shipped_file():
    claims = load_claims(CLAIMS)
    assert claims["source"]["arxiv"] == "2403.06338"
    assert claims["dataset"]["grid"]["n_private_1"] == [20, 50, 100, 250]
    assert set(claims["protocol"]["models"]) == {"mvae", "mmvae", "mopoe", "mmvae_plus"}
    assert claims["protocol"]["models"]["mmvae_plus"] == {"n_latent": 2, "n_private": 2}
    assert claims["protocol"]["seeds"] >= 5
    by_model = {}
    for c in claims["claims"]:
        by_model.setdefault(c["model"], set()).add(c["published"])
    assert by_model == {"mmvae_plus": {"keeps"}, "mmvae": {"drops"}, "mvae": {"drops"}}
    assert "qualitative claim only" in CLAIMS.read_text()
    # every model of the protocol can be built with the protocol's parameters
    from dmmvae.methods import build_model

    for name, params in claims["protocol"]["models"].items():
        build_model(name, {**claims["protocol"]["architecture"], **params})


def test_load_claims_names_the_file_and_the_missing_key(tmp_path):
    data = yaml.safe_load(CLAIMS.read_text())
    broken = dict(data)
    del broken["protocol"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(ClaimsError, match=r"broken\.yaml: missing required key 'protocol'"):
        load_claims(path)
    bad_claim = dict(data)
    bad_claim["claims"] = [dict(c) for c in data["claims"]]
    del bad_claim["claims"][2]["published"]
    path.write_text(yaml.safe_dump(bad_claim))
    with pytest.raises(ClaimsError, match=r"broken\.yaml: missing required key 'claims\[2\]\.published'"):
        load_claims(path)
    path.write_text("paper: [unclosed")
    with pytest.raises(ClaimsError, match="not valid YAML"):
        load_claims(path)


def test_reproduction_table_lays_claims_and_measurements_side_by_side():
    claims = {"claims": [
        {"id": "a", "published": 0.8, "sd": 0.05},
        {"id": "b", "published": 0.8, "sd": None, "note": "read off a figure"},
        {"id": "c", "published": "keeps"},
        {"id": "d", "published": 0.3},
    ]}
    measured = {"a": 0.7, "b": {"value": 0.78, "note": "5 seeds"}, "c": "keeps"}
    t = reproduction_table(claims, measured)
    assert list(t.columns) == ["published", "ours", "abs_difference", "verdict", "note"]
    assert list(t.index) == ["a", "b", "c", "d"]
    assert t.loc["a", "verdict"] == NOT_REPRODUCED
    assert t.loc["a", "abs_difference"] == pytest.approx(0.1)
    assert t.loc["b", "verdict"] == REPRODUCED and "5 seeds" in t.loc["b", "note"]
    assert "read off a figure" in t.loc["b", "note"]
    assert t.loc["c", "verdict"] == REPRODUCED and np.isnan(t.loc["c", "abs_difference"])
    assert t.loc["d", "verdict"] == NOT_RUN and "not measured" in t.loc["d", "note"]


# ---------------------------------------------------------------------------- end to end
def test_a_model_learns_the_shared_features_across_modalities():
    """MMVAE on the toy data (20 private features): cross-modal R^2 of the shared-driven
    features beats the control that predicts zeros (R^2 ~ 0) in both directions."""
    from dmmvae.methods import build_model

    sc = make_scenario(preprocess(simulate_gp_toy(n_private_1=20, seed=0), seed=0), "paired")
    model = build_model(
        "mmvae", {"n_latent": 6, "n_hidden": 128, "n_layers": 1, "dropout": 0.0, "norm": "none"}
    )
    model.fit(sc, seed=0, device="cpu", training={
        "max_epochs": 150, "batch_size": 128, "lr": 1e-3, "kl_warmup_epochs": 50,
        "early_stopping_patience": 25, "validation_fraction": 0.1, "progress_bar": False,
    })
    pred = model.predict(sc, seed=0)
    test = sc.obs[SPLIT].to_numpy() == TEST
    for src, tgt in (("mod1", "mod2"), ("mod2", "mod1")):
        obs = np.asarray(sc.mod[tgt].X)[test][:, :10]
        r2_model = r2_score(obs, pred.imputations[(src, tgt)][:, :10])
        r2_zeros = r2_score(obs, np.zeros_like(obs))
        assert r2_zeros < 0.05
        assert r2_model > r2_zeros + 0.2, (src, tgt, r2_model, r2_zeros)


def test_benchmark_quick_run_writes_csv_table_and_verdicts(tmp_path):
    out = tmp_path / "r.csv"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--epochs", "2", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(out)
    assert list(df.columns) == ["model", "n_private_1", "seed", "metric", "value"]
    assert set(df.model) == {"mvae", "mmvae", "mopoe", "mmvae_plus", "true_shared"}
    assert set(df.n_private_1) == {20, 250}
    got = set(df[df.model == "mmvae_plus"].metric)
    assert {"auc_shared", "accuracy_shared", "r2_1to2_shared", "r2_2to1_shared",
            "r2_1to2_shared_flat", "r2_1to2_all", "r2_2to1_all_flat", "epochs"} <= got
    auc = df[df.metric == "auc_shared"].value
    assert auc.between(0, 1).all()
    md_text = out.with_suffix(".md").read_text()
    assert "## Claim table" in md_text and "mmvae_plus/auc_shared" in md_text
    assert "Claim table" in proc.stdout and ("drops" in proc.stdout or "keeps" in proc.stdout)


def test_ci_sized_reproduction_shows_the_direction_of_the_effect():
    """The MMVAE++ reproduction at CI size (3 seeds, 20 vs 250 private features, MMVAE and
    MMVAE++, the claim file's converged protocol): MMVAE's shared-latent AUC and 1->2 R^2
    drop as private features grow, and MMVAE++ keeps more of both at 250 (the direction of
    the committed 5-seed run: AUC 0.77 vs 0.56, R^2 0.15 vs -0.02)."""
    import importlib.util

    sys.path.insert(0, str(BENCH.parent))  # the script imports its helpers from benchmarks/
    try:
        spec = importlib.util.spec_from_file_location("bench_mmvae_plus", BENCH)
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(BENCH.parent))
    claims = load_claims(CLAIMS)
    training = bench.training_config(claims["protocol"], "converged", None)
    rows = []
    for seed in range(3):
        for p in (20, 250):
            rows += bench.run_cell({"n_private_1": p, "seed": seed, "n_cells": 1000,
                                    "models": ["mmvae", "mmvae_plus"],
                                    "protocol": claims["protocol"], "training": training})
    df = pd.DataFrame(rows)
    m = df.groupby(["model", "n_private_1", "metric"])["value"].mean()
    assert m["mmvae", 20, "auc_shared"] - m["mmvae", 250, "auc_shared"] > 0.15, m
    assert m["mmvae", 20, "r2_1to2_shared"] - m["mmvae", 250, "r2_1to2_shared"] > 0.15, m
    assert m["mmvae_plus", 250, "auc_shared"] > m["mmvae", 250, "auc_shared"] + 0.05, m
    assert m["mmvae_plus", 250, "r2_1to2_shared"] > m["mmvae", 250, "r2_1to2_shared"] + 0.03, m
    verd = bench.verdicts(df).set_index(["model", "metric"])["verdict"]
    assert verd["mmvae", "auc_shared"] == "drops" and verd["mmvae", "r2_1to2_shared"] == "drops"


# ---------------------------------------------------------------------------- single-cell arm
SC_BENCH = ROOT / "benchmarks" / "bench_reproduce_mmvae_plus_sc.py"


def _sc_bench():
    import importlib.util

    sys.path.insert(0, str(SC_BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_mmvae_plus_sc", SC_BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.shared_data
def test_single_cell_arm_features_are_markers_unrelated_genes_and_distal_peaks(shared_data,
                                                                               tmp_path):
    """On the SNARE-seq stand-in (target L6 vs rest), chosen on train cells only: the 10
    markers are up in the target, the unrelated genes are the least variable detected ones,
    and no distal peak lies within 2 kb of a TSS of the annotation."""
    from dmmvae.data.links import parse_intervals, read_gene_annotation
    from dmmvae.data.prepare import prepare_dataset
    from dmmvae.data.scenarios import protocol_split

    sc_bench = _sc_bench()
    spec = {"source": "local", "labels": {
        "path": str(shared_data / "tenx" / "mop_snareseq_half_a_5232.labels.csv"),
        "column": "cluster (remapped)"},
        "modalities": {k: {"format": "10x_h5", "path": str(
            shared_data / "tenx" / "mop_snareseq_half_a_5232.filtered_feature_bc_matrix.h5")}
            for k in ("rna", "atac")}}
    raw = prepare_dataset("snare", spec, cache_dir=str(tmp_path))
    ann = str(shared_data / "annotation" / "mm10_genes.bed")
    y = (raw.obs[LABEL].astype(str).to_numpy() == "L6").astype(int)
    train = protocol_split(raw.n_obs, 0) == TRAIN
    markers, unrelated, distal = sc_bench.select_features(raw, y, train, 100, ann)
    assert len(markers) == 10 and len(unrelated) == 100 and len(set(markers) & set(unrelated)) == 0
    x = sc_bench._lognorm(raw.mod["rna"].X[train])
    up = x[y[train] == 1][:, markers].mean(0) - x[y[train] == 0][:, markers].mean(0)
    assert (up > 0.3).all(), up
    detected = (x > 0).sum(0) >= 3
    assert x[:, unrelated].var(0).max() <= np.quantile(x[:, detected].var(0), 0.2)
    assert 1000 <= len(distal) <= 5000
    peaks = parse_intervals(raw.mod["atac"].var["interval"].to_numpy()[distal],
                            raw.mod["atac"].var_names[distal], where="peaks")
    genes = read_gene_annotation(ann)
    tss = np.where(genes["strand"] == "-", genes["end"], genes["start"]).astype(float)
    for chrom in peaks["chrom"].unique()[:5]:
        t = np.sort(tss[(genes["chrom"] == chrom).to_numpy()])
        p = peaks[peaks["chrom"] == chrom]
        for lo, hi in zip(p["start"].to_numpy(float), p["end"].to_numpy(float), strict=True):
            k = np.searchsorted(t, lo)
            near = t[max(k - 1, 0):k + 1]
            assert not ((near >= lo - 2000) & (near <= hi + 2000)).any()


@pytest.mark.shared_data
def test_single_cell_arm_runs_on_its_standin_with_standin_verdicts(shared_data, tmp_path):
    out = tmp_path / "sc.csv"
    proc = subprocess.run(
        [sys.executable, str(SC_BENCH), "--dataset", "snare_mop5232", "--unrelated", "10", "100",
         "--seeds", "1", "--epochs", "20", "--models", "mmvae", "mmvae_plus", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(out)
    auc = df[df.metric == "auc_shared"].set_index(["model", "n_unrelated"])["value"]
    assert (auc > 0.75).all(), auc  # markers and distal peaks carry the target type
    assert set(df[df.model == "data"].metric) == {"n_markers_kept", "n_distal_peaks"}
    text = out.with_suffix(".md").read_text()
    assert "stand-in" in text and "sc/mmvae_plus/auc_shared" in text
