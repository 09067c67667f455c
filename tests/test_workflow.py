"""The Snakemake workflow itself: lint, dry runs, config errors before any job, a tiny real run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from _workflow import TINY_RUN_ARGS, snakemake, workflow_copy


def with_config(cwd: Path, name: str, edit) -> str:
    cfg = yaml.safe_load((cwd / "config" / name).read_text())
    edit(cfg)
    path = cwd / "config" / "edited.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return "config/edited.yaml"


def test_lint_is_clean(tmp_path):
    wf = workflow_copy(tmp_path)
    res = snakemake(wf, "--lint", "--configfile", "config/demo.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_full_benchmark_dag_builds_offline(tmp_path):
    wf = workflow_copy(tmp_path)
    res = snakemake(wf, "-n", "--cores", "2", "--quiet", "rules")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    for rule in ("download_dataset", "prepare_dataset", "train_model", "aggregate_results"):
        assert rule in out


def test_demo_dag_builds(tmp_path):
    wf = workflow_copy(tmp_path)
    res = snakemake(
        wf, "-n", "--cores", "2", "--configfile", "config/demo.yaml"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "download_dataset" not in res.stdout  # the demo needs no download


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(trainig={}), "trainig"),
        (lambda c: c["models"].update(x={"model": "mvea"}), "valid models are"),
        (lambda c: c.update(run={"datasets": ["nope"]}), "defined datasets"),
        (lambda c: c["scenarios"].update(s={"kind": "vertical"}), "vertical"),
    ],
    ids=["unknown-key", "unknown-model", "unknown-dataset", "unknown-scenario-kind"],
)
def test_bad_config_stops_before_any_job(tmp_path, edit, message):
    wf = workflow_copy(tmp_path)
    cfg = with_config(wf, "test.yaml", edit)
    res = snakemake(wf, "-n", "--cores", "1", "--configfile", cfg)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr
    assert not (wf / "results").exists()


def test_a_model_sets_its_own_cluster_time_and_memory(tmp_path):
    """A model's `resources` are the base of its training jobs' SLURM time limit and memory;
    the dataset's size adds to it; the other models keep the size-scaled default."""
    wf = workflow_copy(tmp_path)

    def slow_model(cfg):
        cfg["datasets"]["tiny"]["size"] = 3000
        cfg["models"]["mvae"]["resources"] = {"runtime": 240, "mem_mb": 6000}
        cfg["run"] = {"models": ["mvae", "random"]}

    res = snakemake(wf, "-n", "--cores", "1", "--configfile", with_config(wf, "test.yaml", slow_model))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    jobs = {}
    for block in out.split("rule train_model:")[1:]:
        lines = block.split("\n\n")[0]
        model = lines.split("model=")[1].split(",")[0].strip()
        resources = lines.split("resources:")[1].split("\n")[0]
        jobs[model] = dict(kv.strip().split("=") for kv in resources.split(",") if "=" in kv)
    assert set(jobs) == {"mvae", "random"}, out
    assert jobs["mvae"]["runtime"] == "243" and jobs["mvae"]["mem_mb"] == "6150", jobs
    assert jobs["random"]["runtime"] == "33" and jobs["random"]["mem_mb"] == "2150", jobs
    # the data and scoring jobs are sized by the dataset alone: 2,000 MB + 20 MB per 1,000 cells
    for rule in ("preprocess_dataset", "evaluate_model"):
        block = out.split(f"rule {rule}:")[1].split("\n\n")[0]
        assert "mem_mb=2060" in block.split("resources:")[1].split("\n")[0], block


def _missing_local_file(c):
    """A valid config whose only dataset is a local file that does not exist."""
    c["datasets"] = {
        "mine": {
            "source": "local",
            "modalities": {
                "rna": {"format": "10x_h5", "path": "data/my_cite.h5"},
                "adt": {"format": "10x_h5", "path": "data/my_cite.h5"},
            },
        }
    }


def test_missing_local_file_is_named(tmp_path):
    wf = workflow_copy(tmp_path)
    cfg = with_config(wf, "test.yaml", _missing_local_file)
    res = snakemake(wf, "-n", "--cores", "1", "--configfile", cfg)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "dataset 'mine': the file 'data/my_cite.h5' does not exist" in out, out
    assert "Invalid configuration" in out and "Fix:" in out


def test_a_misspelt_parameter_value_stops_the_dry_run(tmp_path):
    """Checked when the config is read: no DAG is built, nothing is prepared."""
    wf = workflow_copy(tmp_path)

    def misspell(cfg):
        cfg["models"]["dmmvae_typo"] = {"model": "dmmvae", "params": {"anchor_scope": "globl"}}

    res = snakemake(wf, "-n", "--cores", "1", "--configfile", with_config(wf, "test.yaml", misspell))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "models.dmmvae_typo.params" in out and "anchor_scope 'globl'" in out, out
    assert "['batch', 'global']" in out, out
    assert "Job stats" not in out and not (wf / "results").exists()


def test_missing_local_file_beats_stale_results(tmp_path):
    """An earlier run's summary must not make a missing input look like 'Nothing to be done'."""
    wf = workflow_copy(tmp_path)
    cfg = with_config(wf, "test.yaml", _missing_local_file)
    stale = wf / "results" / "summary"
    stale.mkdir(parents=True)
    for name in ("metrics.csv", "summary.md", "report.html"):
        (stale / name).write_text("stale\n")
    res = snakemake(wf, "-n", "--cores", "1", "--configfile", cfg)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Nothing to be done" not in out
    assert "data/my_cite.h5" in out


@pytest.mark.slow
def test_tiny_benchmark_runs_end_to_end(tiny_run):
    wf, res = tiny_run
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    summary = wf / "results" / "summary"
    metrics = pd.read_csv(summary / "metrics.csv")
    assert {"dataset", "scenario", "model", "seed", "metric", "value"} <= set(metrics.columns)
    assert set(metrics["model"]) == {"mvae", "pca_cca", "random", "mvae_diverging"}
    failed = metrics[metrics["metric"] == "failed"]
    assert failed["model"].tolist() == ["mvae_diverging"]
    assert failed["reason"].str.contains("nan").all()
    fos = metrics[metrics["metric"] == "foscttm/mean"].set_index("model")["value"]
    assert 0.4 < fos["random"] < 0.6
    assert fos["pca_cca"] < fos["random"] - 0.1
    assert fos["mvae"] < fos["random"] - 0.1
    md = (summary / "summary.md").read_text()
    ranking = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in ranking[0].strip("|").split("|")]
    assert "model" in header and "score" in header, header
    rows = {ln.split("|")[header.index("model") + 1].strip(): ln for ln in ranking[2:]}
    assert {"mvae", "pca_cca", "random"} <= set(rows), md
    score = rows["mvae"].split("|")[header.index("score") + 1].strip()
    assert float(score) > 0 and len(score) <= 5, score  # printed to 3 significant digits
    assert "failed" in md
    assert (summary / "report.html").stat().st_size > 10_000
    assert list(summary.glob("*.png"))
    # every rule logged; training and evaluation benchmarked
    assert list((wf / "results" / "logs" / "train_model").rglob("*.log"))
    assert list((wf / "results" / "benchmarks" / "evaluate_model").rglob("*.tsv"))
    # nothing half-written left behind
    assert not list((wf / "results").rglob("*.tmp"))
    # the annotated outputs make a Snakemake report too
    rep = snakemake(wf, "--configfile", "config/test.yaml", "--report", "report.zip")
    assert rep.returncode == 0, rep.stdout[-2000:] + rep.stderr[-2000:]
    assert (wf / "report.zip").stat().st_size > 10_000
    # a rerun has nothing left to do
    again = snakemake(wf, "-n", *TINY_RUN_ARGS)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_standins_run_through_the_workflow_as_local_data(tmp_path, shared_data):
    """The bring-your-own-data path, end to end on real CITE-seq (two models, paired)."""
    wf = workflow_copy(tmp_path / "repo")
    (tmp_path / "shared").symlink_to(shared_data.parent)  # config paths are ../shared/data/...

    def edit(c):
        c["run"] = {"datasets": ["cite_bmmc600"], "scenarios": ["paired"],
                    "models": ["mvae", "random"]}
        c["training"]["max_epochs"] = 30

    cfg = with_config(wf, "standins.yaml", edit)
    res = snakemake(wf, "--cores", "2", "--configfile", cfg)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    metrics = pd.read_csv(wf / "results" / "summary" / "metrics.csv")
    fos = metrics[metrics["metric"] == "foscttm/mean"].set_index("model")["value"]
    acc = metrics[metrics["metric"] == "label_transfer_acc/mean"].set_index("model")["value"]
    assert fos["mvae"] < fos["random"] - 0.2
    assert acc["mvae"] > acc["random"] + 0.1
    # the donor batches reach the integration metrics
    assert (metrics["metric"] == "scib/batch_correction").any()
