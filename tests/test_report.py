"""The summary folder and report.html: self-contained, complete, owned by aggregation (nothing
stale survives), rendered in a real headless browser, and a newly registered metric shows up
everywhere with no other edit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmmvae.aggregate import aggregate
from dmmvae.data.toy import toy_predictions, toy_scenario
from dmmvae.evaluate import evaluate_run, resolve_params
from dmmvae.io import InputError, Predictions, replaced_dir
from dmmvae.metrics import METRICS, EvalInputs, Metric, Score, mean_row
from dmmvae.report import write_report, write_summary

CHROMIUM = "/usr/bin/chromium"
FAMILIES = ["foscttm", "label_transfer", "imputation"]


def _make_runs(root: Path, mdata, models, params=None, scenario="paired") -> list[dict]:
    """Predictions, history and evaluated metrics of each (model, noise) for seeds 0 and 1."""
    scen = root / "data" / "toy" / scenario / "scenario.h5mu"
    if not scen.exists():
        scen.parent.mkdir(parents=True)
        mdata.write(scen)
    runs = []
    for model, noise in models:
        for seed in (0, 1):
            d = root / "models" / "toy" / scenario / model / f"seed{seed}"
            d.mkdir(parents=True)
            if noise is None:
                p = Predictions([], failure={"reason": "NaN loss at epoch 2", "epoch": 2,
                                             "log": "train.log"})
            else:
                p = toy_predictions(mdata, noise=noise, seed=seed)
            p.write(d / "predictions.h5")
            pd.DataFrame({"epoch": range(10), "loss": np.linspace(3, 1, 10)}).to_csv(
                d / "history.csv", index=False)
            evaluate_run(scen, d / "predictions.h5", d / "metrics.csv", dataset="toy",
                         scenario=scenario, model=model, seed=seed,
                         params=params if params is not None else {"families": FAMILIES},
                         history_path=d / "history.csv")
            runs.append({"dataset": "toy", "scenario": scenario, "model": model, "seed": seed,
                         "metrics": str(d / "metrics.csv"), "history": str(d / "history.csv"),
                         "predictions": str(d / "predictions.h5")})
    return runs


@pytest.fixture(scope="module")
def toy_data():
    return toy_scenario(300, modalities=("rna", "adt"), seed=0)


@pytest.fixture(scope="module")
def summary(tmp_path_factory, toy_data) -> Path:
    root = tmp_path_factory.mktemp("results")
    runs = _make_runs(root, toy_data, [("good", 0.2), ("bad", 2.0), ("diverges", None)])
    scen = [{"dataset": "toy", "scenario": "paired",
             "path": str(root / "data" / "toy" / "paired" / "scenario.h5mu")}]
    out = root / "summary"
    out.mkdir()
    (out / "overview_olddataset_paired.png").write_bytes(b"stale, from an earlier config")
    config = {"aggregation": {"weights": {"cost": 0}}, "datasets": ["toy"]}
    write_summary(aggregate(runs, config), out, runs=runs, scenarios=scen, config=config)
    return out


def test_summary_folder_is_replaced_whole(summary):
    """A figure of an earlier config's dataset does not survive beside the new ones."""
    names = sorted(p.name for p in summary.iterdir())
    assert names == ["metrics.csv", "metrics_toy_paired.png", "overview_toy_paired.png",
                     "ranking.png", "rankings.csv", "report.html", "reproduction.md", "summary.md"]
    for p in summary.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in summary.parent.iterdir() if p.name.startswith(".summary")]
    assert (summary.stat().st_mode & 0o777) != 0o700  # not mkdtemp's private mode


def test_replaced_dir_leaves_the_old_folder_on_error(tmp_path):
    out = tmp_path / "summary"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), replaced_dir(out) as tmp:
        (tmp / "half.txt").write_text("half-written")
        raise RuntimeError("plotting failed")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary"]


def test_report_is_complete_and_self_contained(summary):
    text = (summary / "report.html").read_text()
    for heading in ("Overall ranking", "Failed runs", "toy / paired", "Overview",
                    "Per-metric, seed spread", "foscttm per modality pair",
                    "do the modalities mix", "Imputation: predicted vs observed",
                    "Training curves", "Metrics", "Provenance", "Package versions", "Config",
                    "Protocol"):
        assert heading in text, heading
    assert "NaN loss at epoch 2" in text
    assert "takes the worst rank" in text  # the ranking rule beside the ranking
    assert "scib-metrics" in text and "dmmvae.data.toy:toy_scenario" in text
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(srcs) >= 8
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:|file:|//)', text)  # nothing external
    assert "<script" not in text


def test_report_shows_the_summary_folders_figures(summary):
    """The overview, seed-spread and ranking figures of the report are the very images of the
    summary folder (drawn once, not redrawn for the page)."""
    import base64

    text = (summary / "report.html").read_text()
    for name in ("ranking.png", "overview_toy_paired.png", "metrics_toy_paired.png"):
        assert base64.b64encode((summary / name).read_bytes()).decode() in text, name


def test_report_rejects_missing_inputs(tmp_path, summary):
    agg = aggregate([])
    run = {"dataset": "x", "scenario": "y", "model": "m", "seed": 0,
           "metrics": str(summary / "metrics.csv"),
           "predictions": str(tmp_path / "nope" / "predictions.h5")}
    with pytest.raises(InputError, match="not found"):
        write_report(agg, tmp_path / "r.html", runs=[run])
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(InputError, match="not found"):
        write_summary(agg, tmp_path / "s", runs=[run])
    assert not (tmp_path / "s").exists()


def _toy_norm(inp: EvalInputs) -> list[Score]:
    """A made-up metric: norm ratio of the RNA-alone and ADT-alone embeddings."""
    r = float(np.linalg.norm(inp.embeddings["rna"]) / np.linalg.norm(inp.embeddings["adt"]))
    return [Score("toy_norm/rna-adt", r, "", "toy"), *mean_row("toy_norm", [r], "toy")]


def test_a_registered_metric_appears_everywhere(tmp_path, monkeypatch):
    """One function + one registry entry: evaluated by default, ranked, in metrics.csv, the
    summary (ranking, headline and family tables) and the report, with no other edit."""
    monkeypatch.setitem(METRICS, "toy_norm", Metric(
        "toy_norm", "toy", "half", _toy_norm, requires=frozenset({"embeddings"}),
        description="made-up norm ratio", per_pair_figure=True))
    assert "toy" in resolve_params({})["families"], (
        "the default of evaluation.families in the config schema must be null (= every "
        "registered family), else a new metric needs a schema edit to be computed")
    data = toy_scenario(300, modalities=("rna", "adt"), n_batches=1, seed=0)  # no kBET: fast
    runs = _make_runs(tmp_path, data, [("good", 0.2), ("bad", 2.0)], params={})
    out = tmp_path / "summary"
    write_summary(aggregate(runs), out, runs=runs, report=True)
    metrics = pd.read_csv(out / "metrics.csv")
    toy = metrics[metrics["metric"] == "toy_norm/mean"]
    assert len(toy) == 4 and toy["value"].between(0.5, 2).all()
    ranks = pd.read_csv(out / "rankings.csv")
    assert ranks["rank_toy"].notna().all()
    text = (out / "summary.md").read_text()
    assert "### toy" in text and "toy_norm/rna-adt" in text and "rank_toy" in text
    headline = text.split("### Headline metrics")[1].split("###")[0]
    assert "toy_norm/mean" in headline and "toy=1" in text  # default weight 1
    html = (out / "report.html").read_text()
    comparison = html.split("Comparison (mean ± sd over seeds)")[1].split("<h3>")[0]
    assert "toy_norm/mean" in comparison and "made-up norm ratio" in html
    assert "<h3>toy_norm per modality pair</h3>" in html  # its per-pair figure, from the entry


@pytest.mark.browser
def test_report_renders_in_chromium(summary, tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} not found; install Debian's chromium "
                    "(apt-get install -y chromium) to run the browser check")
    probe = (
        "<script>window.addEventListener('load', function () {"
        "var imgs = Array.from(document.images);"
        "var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });"
        "var d = document.createElement('div'); d.id = 'imgcheck';"
        "d.textContent = 'images=' + imgs.length + ' broken=' + bad.length;"
        "document.body.appendChild(d); });</script>"
    )
    page = tmp_path / "check.html"
    page.write_text((summary / "report.html").read_text().replace("</body>", probe + "</body>"))
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<div id="imgcheck">images=(\d+) broken=(\d+)</div>', res.stdout)
    assert m, "the page did not finish loading in chromium:\n" + res.stdout[-1000:]
    n_img, n_broken = int(m.group(1)), int(m.group(2))
    assert n_img >= 8 and n_broken == 0
    assert "Multimodal integration benchmark" in res.stdout


def test_report_umap_uses_exact_neighbours_and_keeps_clusters(monkeypatch):
    """The report's UMAP hands umap-learn scikit-learn's exact neighbours (umap-learn's own kNN
    code, numba-compiled in every report process, is never called) and still separates three
    well-apart clusters."""
    import umap.umap_
    from sklearn.metrics import silhouette_score

    from dmmvae.analysis import umap_coords

    def no_knn(*args, **kwargs):
        raise AssertionError("umap-learn computed neighbours itself")

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", no_knn)
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6.0, size=(3, 10))
    labels = np.repeat([0, 1, 2], 100)
    x = (centres[labels] + rng.normal(size=(300, 10))).astype(np.float32)
    coords = umap_coords(x, seed=0)
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    assert silhouette_score(coords, labels) > 0.5


def test_report_sections_drawn_in_forked_processes_equal_the_serial_report(tmp_path, toy_data):
    """With n_jobs 2 the groups' UMAPs, scatter plots and curves are drawn in forked worker
    processes (the parent never loads numba) and the page is the one drawn serially. In a fresh
    interpreter: pytest's own process has loaded numba, where the report draws serially."""
    import json
    import subprocess
    import sys

    runs = [*_make_runs(tmp_path, toy_data, [("good", 0.2), ("bad", 2.0)]),
            *_make_runs(tmp_path, toy_data, [("good", 0.3)], scenario="diagonal")]
    scen = [{"dataset": "toy", "scenario": s,
             "path": str(tmp_path / "data" / "toy" / s / "scenario.h5mu")}
            for s in ("paired", "diagonal")]
    (tmp_path / "inputs.json").write_text(json.dumps({"runs": runs, "scenarios": scen}))
    code = (
        "import json, sys\n"
        "from dmmvae.aggregate import aggregate\n"
        "from dmmvae.report import write_report\n"
        "root = sys.argv[1]\n"
        "inp = json.load(open(root + '/inputs.json'))\n"
        "agg = aggregate(inp['runs'], {})\n"
        "write_report(agg, root + '/forked.html', runs=inp['runs'], scenarios=inp['scenarios'],"
        " n_jobs=2)\n"
        "print('numba' in sys.modules)\n"
        "write_report(agg, root + '/serial.html', runs=inp['runs'], scenarios=inp['scenarios'])\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "True"]  # forked: drawn in the workers; serial: in the parent

    def page(name):
        text = (tmp_path / name).read_text()
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", text)

    forked, serial = page("forked.html"), page("serial.html")
    assert forked == serial
    assert "toy / diagonal" in forked and forked.count("data:image/png;base64,") >= 10
