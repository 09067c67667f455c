"""aggregate(): runs handed over with their wildcards -> one tidy table, cost rows, failures,
rankings (fair to methods without some results) and summary.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmmvae.aggregate import aggregate, read_benchmarks, read_metric_csvs
from dmmvae.io import InputError
from dmmvae.ranking import RANKING_RULE, rank_models
from dmmvae.tables import summary_markdown

BENCH = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _run(tmp: Path, dataset, scenario, model, seed, values: dict, failed: str = "",
         secs: float | None = None) -> dict:
    """A run record as the rule hands it over; files anywhere (nothing is parsed from paths)."""
    rows = []
    if failed:
        rows.append({"metric": "failed", "value": np.nan, "reason": failed, "note": ""})
    for k, v in values.items():
        rows.append({"metric": k, "value": v, "reason": "", "note": ""})
    df = pd.DataFrame(rows, columns=["metric", "value", "reason", "note"])
    for col, val in (("seed", seed), ("model", model), ("scenario", scenario),
                     ("dataset", dataset)):
        df.insert(0, col, val)
    run = {"dataset": dataset, "scenario": scenario, "model": model, "seed": seed,
           "metrics": str(tmp / f"m_{dataset}_{scenario}_{model}_{seed}.csv")}
    df.to_csv(run["metrics"], index=False)
    if secs is not None:
        for kind, s, rss in (("train_benchmark", secs, 200), ("eval_benchmark", 3, 50)):
            p = tmp / f"{kind}_{model}_{seed}.tsv"
            p.write_text(BENCH + f"{s}\t0:00:10\t{rss}\t1\t1\t1\t0\t0\t50\t3\n")
            run[kind] = str(p)
    return run


@pytest.fixture
def grid(tmp_path):
    runs = []
    for seed in (0, 1):
        for model, fos, acc, imp in (("good", 0.05, 0.9, 0.6), ("bad", 0.4, 0.5, 0.3)):
            runs.append(_run(tmp_path, "ds1", "paired", model, seed,
                             {"foscttm/mean": fos + 0.01 * seed,
                              "label_transfer_acc/mean": acc,
                              "imputation_pearson_cell/mean": imp, "epochs": 10},
                             secs=10 + seed))
        runs.append(_run(tmp_path, "ds1", "paired", "diverges", seed, {},
                         failed="NaN loss at epoch 4"))
        # imputation only, and the best at it (the knn_regression control)
        runs.append(_run(tmp_path, "ds1", "paired", "knn", seed,
                         {"imputation_pearson_cell/mean": 0.7}))
    return tmp_path, runs


def test_aggregate_reads_runs_cost_and_failures(grid):
    _, runs = grid
    agg = aggregate(runs, config={"aggregation": {"weights": {"cost": 0}}})
    m = agg.metrics
    assert list(m.columns) == ["dataset", "scenario", "model", "seed", "metric", "value",
                               "reason", "note"]
    cost = m[m["metric"] == "train_seconds"].set_index(["model", "seed"])["value"]
    assert cost[("good", 1)] == 11.0  # keys from the run record, not from the path
    rss = m[m["metric"] == "eval_max_rss_mb"]["value"]
    assert (rss == 50.0).all() and len(rss) == 4
    failed = m[m["metric"] == "failed"]
    assert len(failed) == 2 and (failed["reason"] == "NaN loss at epoch 4").all()
    assert agg.weights["cost"] == 0 and agg.weights["realism"] == 0.5  # schema default kept


def test_method_without_a_family_takes_its_worst_rank(grid):
    """The knn_regression case: best at imputation, no embeddings. Averaged over the only
    family it has it would come first; it takes the worst rank on the families it lacks."""
    _, runs = grid
    per, overall = rank_models(read_metric_csvs(runs))
    g = per.set_index("model")
    n = len(g)  # 4 methods
    assert g.loc["knn", "rank_imputation"] == 1
    assert g.loc["knn", "rank_foscttm"] == n and g.loc["knn", "rank_label_transfer"] == n
    assert g.loc["knn", "missing"] == "foscttm, label_transfer"
    assert g.loc["good", "missing"] == "" and g.loc["diverges", "missing"] == ""
    assert g.loc["diverges", "failed"] == "NaN loss at epoch 4"
    assert g.loc["diverges", "score"] == n  # worst on everything it should have
    # good: 1, 1, 2 -> 4/3; knn: 4, 4, 1 -> 3; bad: 2, 2, 3 -> 7/3
    assert g.loc["good", "score"] == pytest.approx(4 / 3)
    assert g.loc["knn", "score"] == pytest.approx(3.0)
    assert overall["model"].tolist() == ["good", "bad", "knn", "diverges"]
    assert overall["position"].tolist() == [1, 2, 3, 4]
    # a family nobody has in a group (recovery, realism here) is not ranked at all
    assert per["rank_recovery"].isna().all() and per["rank_realism"].isna().all()


def test_ranking_direction_and_weights(grid):
    _, runs = grid
    m = read_metric_csvs(runs)
    per, _ = rank_models(m)
    g = per.set_index("model")
    assert g.loc["good", "rank_foscttm"] == 1 and g.loc["bad", "rank_foscttm"] == 2
    # only imputation counts: knn is first
    only_imp = {"foscttm": 0, "label_transfer": 0}
    _, overall = rank_models(m, only_imp)
    assert overall["model"].iloc[0] == "knn"
    with pytest.raises(ValueError, match="valid families"):
        rank_models(m, {"speed": 1})


def test_summary_markdown_prints_integers_and_short_scores(grid):
    _, runs = grid
    agg = aggregate(runs)
    text = summary_markdown(agg, ["ranking.png"])
    assert RANKING_RULE in text and "realism=0.5" in text
    assert "failed: NaN loss at epoch 4" in text
    assert "0.055 ± 0.007" in text  # good: foscttm mean +/- sd over two seeds
    assert "![ranking](ranking.png)" in text
    overall = text.split("## Overall ranking")[1].split("##")[0]
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in overall.splitlines() if ln.startswith("|") and "---" not in ln}
    header = rows.pop("model")
    good = dict(zip(header, rows["good"], strict=True))
    assert good == {"score": "1.33", "n_groups": "1", "position": "1"}
    assert dict(zip(header, rows["diverges"], strict=True))["score"] == "4"
    # no raw floats anywhere in the rankings (e.g. 2.2516835016835017 or 4.0)
    for block in text.split("### Ranking")[1:]:
        table = block.split("###")[0]
        assert not re.search(r"\d\.\d{4,}", table), table
        assert not re.search(r"\|\s*\d+\.0\s*\|", table), table


def test_bad_runs_are_refused(grid, tmp_path):
    tmp, runs = grid
    bad = tmp / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="missing column"):
        aggregate([*runs, {**runs[0], "seed": 7, "metrics": str(bad)}])
    with pytest.raises(InputError, match="not found"):
        aggregate([{**runs[0], "metrics": str(tmp / "nope.csv")}])
    # a metrics file listed for another run than the one it holds
    with pytest.raises(InputError, match="was listed for run"):
        aggregate([{**runs[0], "model": "other"}])
    with pytest.raises(ValueError, match="missing key"):
        aggregate([{"dataset": "d", "metrics": runs[0]["metrics"]}])
    with pytest.raises(ValueError, match="listed twice"):
        aggregate([runs[0], runs[0]])


def test_benchmark_files(tmp_path):
    run = _run(tmp_path, "d", "s", "m", 3, {"foscttm/mean": 0.1}, secs=5.5)
    df = read_benchmarks([run])
    v = dict(zip(df["metric"], df["value"], strict=True))
    assert v == {"train_seconds": 5.5, "train_max_rss_mb": 200.0, "eval_seconds": 3.0,
                 "eval_max_rss_mb": 50.0}
    assert df["seed"].tolist() == [3] * 4 and set(df["model"]) == {"m"}
    Path(run["train_benchmark"]).write_text("x\ty\n1\t2\n")
    with pytest.raises(InputError, match="no 's' column"):
        read_benchmarks([run])
