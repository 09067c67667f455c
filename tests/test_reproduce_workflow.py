"""Reproduction configs of the workflow (config/reproduce/*.yaml with a `reproduction`
section): their claims, the stand-in switch, the verdict table, the dry runs offline and one
stand-in run end to end (reproduction.md, reproduction.csv, the report section)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _workflow import snakemake, workflow_copy
from snakemake.utils import validate

from dmmvae.metrics import metric_of
from dmmvae.reproduce import (
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    STANDIN,
    ClaimsError,
    apply_standins,
    check_workflow_claims,
    reproduction_markdown,
    workflow_reproduction,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "src" / "dmmvae" / "schemas" / "config.schema.yaml")
CONFIGS = sorted(p for p in (ROOT / "config" / "reproduce").glob("*.yaml")
                 if "datasets" in yaml.safe_load(p.read_text()))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_three_published_benchmarks_have_workflow_configs():
    assert {p.stem for p in CONFIGS} == {"seed002_pbmc_multiome", "scmodal_hao2021",
                                         "scmmib_pbmc10k_diagonal"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid_and_every_claim_names_a_metric_row(path):
    cfg = _load(path)
    validate(cfg, SCHEMA)
    check_workflow_claims(cfg)
    for c in cfg["reproduction"]["claims"]:
        assert metric_of(c["metric"]) is not None, c["metric"]
        assert isinstance(c["published"], float), c["id"]
    for name, spec in cfg["datasets"].items():
        assert spec["source"] == "download" and spec["standin"]["source"] == "local", name
    # the stand-in switch renames and keeps the claims valid
    sw = copy.deepcopy(cfg)
    sw["use_standins"] = True
    apply_standins(sw)
    check_workflow_claims(sw)
    assert all(n.endswith("_standin") and s["source"] == "local" for n, s in sw["datasets"].items())


def test_apply_standins_needs_a_standin_for_every_dataset():
    cfg = {"use_standins": True, "datasets": {"a": {"source": "download", "standin": {
        "source": "local"}}, "b": {"source": "download"}}}
    with pytest.raises(ClaimsError, match=r"\['b'\] have no 'standin'"):
        apply_standins(cfg)
    cfg = {"datasets": {"b": {"source": "download"}}}
    apply_standins(cfg)                       # off: nothing changes
    assert list(cfg["datasets"]) == ["b"]


def test_claims_naming_an_undefined_model_stop_with_the_list():
    cfg = _load(ROOT / "config" / "reproduce" / "scmodal_hao2021.yaml")
    cfg["reproduction"]["claims"][0]["model"] = "scmodall"
    with pytest.raises(ClaimsError, match=r"model 'scmodall' is not defined.*\['scmodal'\]"):
        check_workflow_claims(cfg)


def _metrics(rows):
    return pd.DataFrame(rows, columns=["dataset", "scenario", "model", "seed", "metric", "value",
                                       "reason", "note"])


CFG = {
    "reproduction": {"paper": {"title": "T"}, "claims": [
        {"id": "a", "dataset": "d", "scenario": "s", "model": "m", "metric": "foscttm/x-y",
         "published": 0.10},
        {"id": "b", "dataset": "d", "scenario": "s", "model": "m", "metric": "foscttm/x-y",
         "published": 0.30, "sd": 0.01},
        {"id": "c", "dataset": "d", "scenario": "s", "model": "broken",
         "metric": "foscttm/x-y", "published": 0.1},
        {"id": "e", "dataset": "d", "scenario": "s", "model": "m", "metric": "imputation_x",
         "published": 0.1}]},
}
METRICS = _metrics([
    ["d", "s", "m", 0, "foscttm/x-y", 0.104, "", ""],
    ["d", "s", "m", 1, "foscttm/x-y", 0.106, "", ""],
    ["d", "s", "broken", 0, "failed", np.nan, "not_installed: pip install -e .[refs]", ""],
])


def test_workflow_reproduction_verdicts_and_markdown():
    t = workflow_reproduction(CFG, METRICS).set_index("id")
    assert t.loc["a", "ours"] == pytest.approx(0.105) and t.loc["a", "n_seeds"] == 2
    assert t.loc["a", "verdict"] == REPRODUCED            # within 10 % of 0.10
    assert t.loc["a", "abs_difference"] == pytest.approx(0.005)
    assert t.loc["b", "verdict"] == NOT_REPRODUCED        # 0.195 away, sd 0.01
    assert "gap" in t.loc["b", "note"]
    assert t.loc["c", "verdict"] == NOT_RUN and "not_installed" in t.loc["c", "note"]
    assert t.loc["e", "verdict"] == NOT_RUN and "no such row" in t.loc["e", "note"]
    md = reproduction_markdown(CFG, t.reset_index())
    assert "| a | d | s | m | foscttm/x-y | 0.1 | 0.105 ± 0.0014 (n=2) | 0.005 | reproduced" in md
    # stand-in: same measurements, compared with nothing
    sw = {**CFG, "use_standins": True}
    st = workflow_reproduction(sw, METRICS.assign(dataset="d_standin")).set_index("id")
    assert st.loc["a", "verdict"] == STANDIN and st.loc["a", "dataset"] == "d_standin"
    assert st.loc["c", "verdict"] == NOT_RUN
    assert "Stand-in run" in reproduction_markdown(sw, st.reset_index())
    assert "carries no published numbers" in reproduction_markdown({}, workflow_reproduction(
        {}, METRICS))


def _dry_run(tmp_path, path, standin, shared=None):
    wf = workflow_copy(tmp_path / "repo")
    args = ["-n", "--cores", "2", "--configfile", f"config/reproduce/{path.name}"]
    if standin:
        (tmp_path / "shared").symlink_to(shared.parent)  # stand-in paths are ../shared/data/...
        args += ["--config", "use_standins=True"]
    res = snakemake(wf, *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert ("download_dataset" in out) != standin   # stand-ins never download
    assert "aggregate_results" in out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_reproduction_configs_dry_run_offline(tmp_path, path):
    _dry_run(tmp_path, path, standin=False)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_reproduction_configs_dry_run_on_their_standins(tmp_path, path, shared_data):
    _dry_run(tmp_path, path, standin=True, shared=shared_data)


def test_a_standin_reproduction_runs_end_to_end(tmp_path, shared_data):
    """scMODAL's reproduction config on its stand-in (CITE-seq 600 cells), a few epochs:
    reproduction.md/.csv carry the claims with `stand-in` verdicts, the report the section."""
    wf = workflow_copy(tmp_path / "repo")
    (tmp_path / "shared").symlink_to(shared_data.parent)
    # a second --configfile overrides keys of the first (snakemake merges them in order)
    (wf / "quick.yaml").write_text(yaml.safe_dump({
        "use_standins": True, "seeds": [0],
        "training": {"max_epochs": 15, "kl_warmup_epochs": 3, "progress_bar": False}}))
    res = snakemake(wf, "--cores", "2", "--configfile", "config/reproduce/scmodal_hao2021.yaml",
                    "quick.yaml")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    summary = wf / "results" / "summary"
    table = pd.read_csv(summary / "reproduction.csv").set_index("id")
    assert set(table["verdict"]) == {STANDIN}
    assert table.loc["scmodal/foscttm", "dataset"] == "hao2021_cite_p1_standin"
    # the stand-in aligned RNA and ADT better than chance (0.5) with links and no pairs
    assert table.loc["scmodal/foscttm", "ours"] < 0.4
    assert 0 <= table.loc["scmodal/label_transfer_acc", "ours"] <= 1
    md = (summary / "reproduction.md").read_text()
    assert "Stand-in run" in md and "0.00092" in md
    html = (summary / "report.html").read_text()
    assert 'id="reproduction"' in html and "scMODAL" in html
