"""aggregate(): one tidy table, cost rows from benchmark files, failures shown, rankings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmmvae.aggregate import aggregate, rank_models, read_benchmarks
from dmmvae.io import InputError

BENCH = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _run_csv(tmp: Path, dataset, scenario, model, seed, values: dict, failed: str = ""):
    rows = []
    if failed:
        rows.append({"metric": "failed", "value": np.nan, "reason": failed, "note": ""})
    for k, v in values.items():
        rows.append({"metric": k, "value": v, "reason": "", "note": ""})
    df = pd.DataFrame(rows)
    for col, val in (("seed", seed), ("model", model), ("scenario", scenario),
                     ("dataset", dataset)):
        df.insert(0, col, val)
    path = tmp / f"{dataset}_{scenario}_{model}_{seed}.csv"
    df.to_csv(path, index=False)
    return str(path)


def _bench(tmp: Path, kind, dataset, scenario, model, seed, secs, rss):
    p = tmp / "benchmarks" / kind / dataset / scenario / model / f"seed{seed}.tsv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(BENCH + f"{secs}\t0:00:10\t{rss}\t1\t1\t1\t0\t0\t50\t3\n")
    return str(p)


@pytest.fixture
def grid(tmp_path):
    csvs, bench = [], []
    for seed in (0, 1):
        for model, fos, acc in (("good", 0.05, 0.9), ("bad", 0.4, 0.5)):
            csvs.append(_run_csv(tmp_path, "ds1", "paired", model, seed,
                                 {"foscttm/mean": fos + 0.01 * seed,
                                  "label_transfer_acc/mean": acc, "epochs": 10}))
            bench.append(_bench(tmp_path, "train_model", "ds1", "paired", model, seed,
                                10 + seed, 200))
            bench.append(_bench(tmp_path, "evaluate_model", "ds1", "paired", model, seed, 3, 50))
        csvs.append(_run_csv(tmp_path, "ds1", "paired", "diverges", seed, {},
                             failed="NaN loss at epoch 4"))
        csvs.append(_run_csv(tmp_path, "ds1", "paired", "knn", seed,
                             {"imputation_pearson_cell/mean": 0.7}))
    return tmp_path, csvs, bench


def test_aggregate_writes_everything(grid):
    tmp, csvs, bench = grid
    out = tmp / "summary"
    aggregate(csvs, out, benchmark_tsvs=bench, config={"aggregation": {"weights": {"cost": 0}}})
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False, na_values=[""])
    assert list(metrics.columns) == ["dataset", "scenario", "model", "seed", "metric", "value",
                                     "reason", "note"]
    cost = metrics[metrics["metric"] == "train_seconds"].set_index(["model", "seed"])["value"]
    assert cost[("good", 1)] == 11.0
    rss = metrics[metrics["metric"] == "eval_max_rss_mb"]["value"]
    assert (rss == 50.0).all() and len(rss) == 4
    failed = metrics[metrics["metric"] == "failed"]
    assert len(failed) == 2 and (failed["reason"] == "NaN loss at epoch 4").all()
    text = (out / "summary.md").read_text()
    assert "failed: NaN loss at epoch 4" in text
    assert "0.055 ± 0.007" in text  # good: foscttm mean +/- sd over two seeds
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["metrics_ds1_paired.png", "overview_ds1_paired.png", "ranking.png"]
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ranks = pd.read_csv(out / "rankings.csv").set_index("model")
    assert ranks.loc["good", "position"] == 1
    assert ranks.loc["diverges", "score"] == 4  # worst on everything it should have
    # knn only has imputation: ranked there, not on FOSCTTM
    assert np.isnan(ranks.loc["knn", "rank_foscttm"]) and ranks.loc["knn", "rank_imputation"] == 1


def test_benchmark_files_and_bad_paths(tmp_path):
    p = _bench(tmp_path, "train_model", "d", "s", "m", 3, 5.5, 123.4)
    df = read_benchmarks([p])
    v = dict(zip(df["metric"], df["value"], strict=True))
    assert v == {"train_seconds": 5.5, "train_max_rss_mb": 123.4}
    assert df["seed"].tolist() == [3, 3]
    assert set(df["model"]) == {"m"} and set(df["dataset"]) == {"d"}
    odd = tmp_path / "x.tsv"
    odd.write_text(BENCH)
    with pytest.raises(InputError, match="cannot tell which run"):
        read_benchmarks([str(odd)])


def test_bad_metric_csv_leaves_no_output(grid):
    tmp, csvs, bench = grid
    bad = tmp / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    out = tmp / "summary2"
    with pytest.raises(InputError, match="missing column"):
        aggregate([*csvs, str(bad)], out, benchmark_tsvs=bench)
    assert not (out / "metrics.csv").exists()
    with pytest.raises(InputError, match="not found"):
        aggregate([str(tmp / "nope.csv")], out)


def test_ranking_direction_and_weights(grid):
    tmp, csvs, _ = grid
    from dmmvae.aggregate import read_metric_csvs

    m = read_metric_csvs(csvs)
    per, overall = rank_models(m)
    assert overall["model"].iloc[0] in ("good", "knn")
    g = per.set_index("model")
    assert g.loc["good", "rank_foscttm"] == 1 and g.loc["bad", "rank_foscttm"] == 2
    with pytest.raises(ValueError, match="valid families"):
        rank_models(m, {"speed": 1})
