"""Peak memory and epoch time of training at 10x-Multiome scale (12k cells x 108k peaks + 36k genes).

Three subprocesses, so that each peak is its own:

1. **build** the raw input in row chunks straight into CSR (no dense matrix at any point):
   ATAC binary peaks at ``--atac-density`` (default 4 %; cell-type-specific peak propensities)
   and RNA counts with about ``--rna-nnz`` detected genes per cell (type-specific gene
   propensities, negative-binomial-like over-dispersion), then ``dmmvae.data.preprocess``
   (``atac.n_lsi=0``: LSI is not used by training) and ``make_scenario("paired")``; writes
   the scenario ``.h5mu``. Its peak RSS is printed but is NOT the figure.
2. **train**: :func:`dmmvae.train.run_training` (the ``train_model`` job: read the ``.h5mu``,
   fit, predict the test cells, write the four outputs) with ``--model`` (default ``mvae``,
   ``n_hidden=128``, ``n_latent=20``, two layers), ``--epochs`` epochs, batch 256, one torch
   thread. Peak RSS = ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of this process, taken
   after reading, after ``fit`` and at the end (predictions written), plus seconds per epoch.

Target: peak RSS under 4 GiB. Other jobs share this 2-core machine: times carry their noise.

    .venv/bin/python benchmarks/bench_memory.py                    # ~2 min (+20 s input)
    .venv/bin/python benchmarks/bench_memory.py --cells 3000 --peaks 20000 --genes 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (  # benchmarks/ is on sys.path when a script runs
    LAYERS,
    peak_rss_mb,
    run_worker,
    sparse_counts,
    train_model_job,
    worker_args,
)


def build(path: str, n_cells: int, n_peaks: int, n_genes: int, density: float, rna_nnz: int):
    import anndata as ad
    import mudata as md
    import numpy as np
    import pandas as pd

    from dmmvae.constants import LABEL, MODALITY_KIND
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.scenarios import make_scenario

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    n_types = 8
    types = rng.integers(n_types, size=n_cells)
    obs = pd.DataFrame(
        {LABEL: pd.Categorical([f"type_{t}" for t in types])},
        index=[f"cell{i:06d}" for i in range(n_cells)],
    )
    # moderate spread: nearly every peak stays open in >= 1 % of cells (kept by preprocessing)
    base_p = rng.lognormal(0.0, 0.5, size=n_peaks)
    peak_p = [base_p * rng.lognormal(0.0, 0.5, size=n_peaks) for _ in range(n_types)]
    # draws per cell so that the expected number of DISTINCT peaks is density * n_peaks
    atac = sparse_counts(rng, types, peak_p, n_peaks, 1.15 * density * n_peaks, binary=True)
    base_g = rng.lognormal(0.0, 1.6, size=n_genes)
    gene_p = [base_g * rng.lognormal(0.0, 0.6, size=n_genes) for _ in range(n_types)]
    rna = sparse_counts(rng, types, gene_p, n_genes, 1.3 * rna_nnz, binary=False)
    mods = {}
    for name, X, prefix in (("rna", rna, "gene"), ("atac", atac, "peak")):
        a = ad.AnnData(
            X=X, obs=obs.copy(), var=pd.DataFrame(index=[f"{prefix}{j}" for j in range(X.shape[1])])
        )
        a.uns[MODALITY_KIND] = name
        mods[name] = a
    with md.set_options(pull_on_update=False):
        raw = md.MuData(mods)
    raw.obs = obs.copy()
    t_build = time.perf_counter() - t0
    stats = {
        "atac_density": atac.nnz / (n_cells * n_peaks),
        "rna_nnz_per_cell": rna.nnz / n_cells,
        "build_s": t_build,
    }
    del atac, rna, mods
    t1 = time.perf_counter()
    pp = preprocess(raw, params={"atac": {"n_lsi": 0}}, seed=0)
    del raw
    sc = make_scenario(pp, "paired", seed=0)
    del pp
    sc.write(path)
    stats.update(
        preprocess_s=time.perf_counter() - t1,
        shapes={m: list(a.shape) for m, a in sc.mod.items()},
        max_rss_mb=peak_rss_mb(),
    )
    return stats


def train(path: str, model: str, epochs: int, out_dir: str, amp: str) -> dict:
    import torch

    torch.set_num_threads(1)
    import mudata as md

    from dmmvae.methods import _model as vae_mod  # VAEModel.fit calls _model.fit_model

    # peak after reading the input alone (the same read run_training does)
    t0 = time.perf_counter()
    md.read_h5mu(path)
    read = {"read_s": time.perf_counter() - t0, "rss_after_read_mb": peak_rss_mb()}
    import gc

    gc.collect()
    seen: dict = {}
    fit = vae_mod.fit_model

    def fit_and_record(*args, **kwargs):  # peak at the end of fit, before predict
        hist = fit(*args, **kwargs)
        seen["rss_after_fit_mb"] = peak_rss_mb()
        seen["epoch_s"] = [round(float(s), 1) for s in hist["seconds"]]
        return hist

    vae_mod.fit_model = fit_and_record
    t1 = time.perf_counter()
    train_model_job(path, model, out_dir, epochs=epochs, amp=amp)
    return {
        **read,
        **seen,
        "train_model_s": time.perf_counter() - t1,
        "max_rss_mb": peak_rss_mb(),
    }


def _run(args: list[str]) -> dict:
    return run_worker(__file__, args)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", type=int, default=12000)
    ap.add_argument("--peaks", type=int, default=108000)
    ap.add_argument("--genes", type=int, default=36000)
    ap.add_argument("--atac-density", type=float, default=0.04)
    ap.add_argument("--rna-nnz", type=int, default=1500)
    ap.add_argument("--model", default="mvae")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--amp", default="none")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "dmmvae_bench_cache"))
    ap.add_argument("--worker", choices=["build", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker == "build":
        print(json.dumps(build(a.path, a.cells, a.peaks, a.genes, a.atac_density, a.rna_nnz)))
        return
    if a.worker == "train":
        print(json.dumps(train(a.path, a.model, a.epochs, a.out, a.amp)))
        return

    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"v2_{a.cells}x{a.peaks}peaks+{a.genes}genes_d{a.atac_density}_r{a.rna_nnz}"
    path = cache / f"multiome_{tag}.h5mu"
    print(
        f"# bench_memory: {a.cells} cells x ({a.peaks} peaks + {a.genes} genes); host "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine)",
        flush=True,
    )
    if not path.exists():
        b = _run(
            worker_args(
                worker="build", path=path, cells=a.cells, peaks=a.peaks, genes=a.genes,
                atac_density=a.atac_density, rna_nnz=a.rna_nnz,
            )
        )
        print(
            f"# input: ATAC density {b['atac_density']:.3%}, RNA {b['rna_nnz_per_cell']:.0f} "
            f"genes/cell; built in {b['build_s']:.0f} s, preprocessed in "
            f"{b['preprocess_s']:.0f} s (peak RSS of that process {b['max_rss_mb']:.0f} MB, "
            f"not counted); scenario shapes {b['shapes']}",
            flush=True,
        )
    else:
        print(f"# input: cached {path.name}", flush=True)
    out = cache / f"train_{tag}"
    out.mkdir(exist_ok=True)
    r = _run(
        worker_args(
            worker="train", path=path, model=a.model, epochs=a.epochs, amp=a.amp, out=out
        )
    )
    gib = r["max_rss_mb"] / 1024
    print(f"model {a.model} ({LAYERS}), batch 256, 1 thread, amp {a.amp}")
    print(f"  peak RSS after reading the .h5mu : {r['rss_after_read_mb']:8.0f} MB")
    print(f"  peak RSS after fit               : {r['rss_after_fit_mb']:8.0f} MB")
    print(
        f"  peak RSS of train_model (end)    : {r['max_rss_mb']:8.0f} MB = {gib:.2f} GiB "
        f"({'under' if gib < 4 else 'OVER'} the 4 GiB target)"
    )
    print(f"  seconds per epoch (train + val)  : {r['epoch_s']}")
    print(
        f"  train_model wall seconds         : {r['train_model_s']:.0f} (read, fit, predict, write)"
    )


if __name__ == "__main__":
    sys.exit(main())
