"""The SCOT reproduction bench (benchmarks/bench_reproduce_scot.py) end to end on SCOT-format
files served over HTTP on 127.0.0.1: checksum-verified download, SCOT's fixed call, FOSCTTM on
SCOT's N - 1 scale and the verdict. The real files (rsinghlab/SCOT data/SNARE) are not
reachable offline; these are two nonlinear views of one cell manifold in SCOT's shapes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _httpserver import serve

from dmmvae.data.toy import manifold, nonlinear_view

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_reproduce_scot.py"
SHIPPED = ROOT / "config" / "reproduce" / "scot_snare_cellline.yaml"


def _scot_files(folder: Path, n: int = 300) -> dict[str, Path]:
    """ATAC-like (n x 19) and RNA-like (n x 10) nonlinear views of one clustered cell manifold,
    saved as SCOT ships them (npy matrices, one label per line)."""
    z = manifold(n, seed=0)
    paths = {"atac": folder / "SNAREseq_atac_feat.npy", "rna": folder / "SNAREseq_rna_feat.npy",
             "atac_types": folder / "SNAREseq_atac_types.txt",
             "rna_types": folder / "SNAREseq_rna_types.txt"}
    np.save(paths["atac"], nonlinear_view(z, 19, seed=1))
    np.save(paths["rna"], nonlinear_view(z, 10, seed=2))
    labels = np.argmin(((z[:, None] - z.mean(0)) ** 2).sum(-1), axis=1) + 1
    for key in ("atac_types", "rna_types"):
        np.savetxt(paths[key], labels, fmt="%d")
    return paths


def _claims(tmp_path: Path, url: str, paths: dict[str, Path], published: float) -> Path:
    """The shipped claim file with the served files, their sha256, and a test setting."""
    claims = yaml.safe_load(SHIPPED.read_text())
    for key, path in paths.items():
        entry = claims["dataset"]["files"][key]
        entry["url"] = f"{url}/{path.name}"
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    claims["protocol"]["fixed_setting"] = {"k": 20, "epsilon": 5e-3, "tol": 1e-9}
    for c in claims["claims"]:
        c["published"] = published
    out = tmp_path / "claims.yaml"
    out.write_text(yaml.safe_dump(claims))
    return out


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_scot_reproduction_downloads_verifies_aligns_and_judges(tmp_path):
    pytest.importorskip("ot", reason="POT not installed")
    served = tmp_path / "served"
    served.mkdir()
    paths = _scot_files(served)
    with serve(served) as server:
        claims = _claims(tmp_path, server.url, paths, published=0.05)
        out = tmp_path / "scot.csv"
        r = _run("--claims", str(claims), "--only", "fixed", "--cache", str(tmp_path / "dl"),
                 "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    row = pd.read_csv(out).iloc[0]
    n = len(np.load(paths["rna"]))
    # SCOT's scale divides by N - 1, ours by N
    assert row["foscttm_scot_scale"] == pytest.approx(row["foscttm"] * n / (n - 1))
    assert row["foscttm"] < 0.2  # the shared manifold is found (random: ~0.5)
    assert row["verdict"] == ("reproduced" if abs(row["foscttm_scot_scale"] - 0.05) <= 0.02
                              else "not reproduced")
    assert (tmp_path / "scot.md").read_text().startswith("# SCOT v1")


def test_scot_reproduction_stops_on_a_file_that_does_not_match_its_checksum(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    paths = _scot_files(served)
    with serve(served) as server:
        claims = _claims(tmp_path, server.url, paths, published=0.15)
        np.save(paths["rna"], np.load(paths["rna"])[:, ::-1])  # changed after its sha256
        r = _run("--claims", str(claims), "--only", "fixed", "--cache", str(tmp_path / "dl"),
                 "--out", str(tmp_path / "scot.csv"))
    assert r.returncode != 0
    assert "checksum mismatch for file SNAREseq_rna_feat.npy" in r.stderr
    assert not (tmp_path / "scot.csv").exists()
    assert not list((tmp_path / "dl").glob("SNAREseq_rna_feat.npy*"))
