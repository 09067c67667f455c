"""report.html: self-contained, complete, and it renders in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmmvae.aggregate import aggregate
from dmmvae.evaluate import evaluate_run
from dmmvae.io import InputError, Predictions
from dmmvae.metrics._toy import toy_predictions, toy_scenario
from dmmvae.report import write_report

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    mdata = toy_scenario(300, modalities=("rna", "adt"), seed=0)
    scen = root / "data" / "toy" / "paired" / "scenario.h5mu"
    scen.parent.mkdir(parents=True)
    mdata.write(scen)
    csvs, preds, hists = [], [], []
    for model, noise in (("good", 0.2), ("bad", 2.0), ("diverges", None)):
        for seed in (0, 1):
            d = root / "models" / "toy" / "paired" / model / f"seed{seed}"
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
                         scenario="paired", model=model, seed=seed,
                         params={"families": ["foscttm", "label_transfer", "imputation"]},
                         history_path=d / "history.csv")
            csvs.append(str(d / "metrics.csv"))
            preds.append(str(d / "predictions.h5"))
            hists.append(str(d / "history.csv"))
    out = root / "summary"
    aggregate(csvs, out, histories=hists, predictions=preds, scenarios=[str(scen)],
              config={"aggregation": {"weights": {"cost": 0}}, "datasets": ["toy"]},
              report=True)
    return out / "report.html"


def test_report_is_complete_and_self_contained(report):
    text = report.read_text()
    for heading in ("Overall ranking", "Failed runs", "toy / paired", "Overview",
                    "Per-metric, seed spread", "FOSCTTM per modality pair",
                    "do the modalities mix", "Imputation: predicted vs observed",
                    "Training curves", "Provenance", "Package versions", "Config", "Protocol"):
        assert heading in text, heading
    assert "NaN loss at epoch 2" in text
    assert "scib-metrics" in text and "dmmvae.metrics._toy.toy_scenario" in text
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(srcs) >= 8
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:|file:|//)', text)  # nothing external


def test_report_rejects_missing_inputs(tmp_path, report):
    with pytest.raises(InputError, match="not found"):
        write_report(report.parent / "metrics.csv", tmp_path / "r.html",
                     predictions=[str(tmp_path / "x" / "y" / "m" / "seed0" / "predictions.h5")])
    assert not (tmp_path / "r.html").exists()


@pytest.mark.browser
def test_report_renders_in_chromium(report, tmp_path):
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
    page.write_text(report.read_text().replace("</body>", probe + "</body>"))
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
