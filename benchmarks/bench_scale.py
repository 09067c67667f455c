"""One training epoch at Hao CITE-seq scale: 161k cells x (2,000 genes + 228 ADT), timed.

Two subprocesses:

1. **build**: raw RNA counts (``--genes`` genes, about ``--rna-nnz`` detected per cell,
   cell-type-specific propensities) and ADT counts (``--adt`` proteins, dense-ish, NB-like)
   made in row chunks as CSR (``_common.sparse_counts``), then ``dmmvae.data.preprocess``
   and ``make_scenario("paired")``; writes the scenario ``.h5mu`` (cached).
2. **train**: :func:`dmmvae.train.run_training` with ``max_epochs=--epochs`` (default 1;
   ``--model``, default ``mvae``; ``n_hidden=128``, ``n_latent=20``, two layers, batch 256,
   one torch thread; ``--device``, default ``cpu``): prints each epoch's seconds (training +
   validation; on a GPU the first carries CUDA's start-up, so ask for two), cells per second,
   the whole job's seconds (read, fit, predict 32k test cells, write) and its peak RSS
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).

Other jobs share this 2-core machine: times carry their noise.

    .venv/bin/python benchmarks/bench_scale.py                 # ~1 min (+1 min input)
    .venv/bin/python benchmarks/bench_scale.py --amp bf16 --model mmvae
    python benchmarks/bench_scale.py --device cuda --epochs 2 --amp bf16
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


def build(path: str, n_cells: int, n_genes: int, n_adt: int, rna_nnz: int) -> dict:
    import anndata as ad
    import mudata as md
    import numpy as np
    import pandas as pd

    from dmmvae.constants import LABEL, MODALITY_KIND
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.scenarios import make_scenario

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    n_types = 20
    types = rng.integers(n_types, size=n_cells)
    obs = pd.DataFrame(
        {LABEL: pd.Categorical([f"type_{t}" for t in types])},
        index=[f"cell{i:06d}" for i in range(n_cells)],
    )
    base_g = rng.lognormal(0.0, 1.2, size=n_genes)
    gene_p = [base_g * rng.lognormal(0.0, 0.6, size=n_genes) for _ in range(n_types)]
    rna = sparse_counts(rng, types, gene_p, n_genes, 1.6 * rna_nnz, binary=False)
    base_a = rng.lognormal(0.0, 1.0, size=n_adt)
    adt_p = [base_a * rng.lognormal(0.0, 1.0, size=n_adt) for _ in range(n_types)]
    adt = sparse_counts(rng, types, adt_p, n_adt, 3000.0, binary=False)
    mods = {}
    for name, X, prefix in (("rna", rna, "gene"), ("adt", adt, "protein")):
        var = pd.DataFrame(index=[f"{prefix}{j}" for j in range(X.shape[1])])
        a = ad.AnnData(X=X, obs=obs.copy(), var=var)
        a.uns[MODALITY_KIND] = name
        mods[name] = a
    with md.set_options(pull_on_update=False):
        raw = md.MuData(mods)
    raw.obs = obs.copy()
    stats = {
        "rna_nnz_per_cell": rna.nnz / n_cells,
        "adt_nnz_per_cell": adt.nnz / n_cells,
        "build_s": time.perf_counter() - t0,
    }
    del rna, adt, mods
    t1 = time.perf_counter()
    sc = make_scenario(preprocess(raw, seed=0), "paired", seed=0)
    del raw
    sc.write(path)
    stats.update(
        preprocess_s=time.perf_counter() - t1,
        shapes={m: list(a.shape) for m, a in sc.mod.items()},
        max_rss_mb=peak_rss_mb(),
    )
    return stats


def train(path: str, model: str, out_dir: str, amp: str, device: str, epochs: int) -> dict:
    import torch

    torch.set_num_threads(1)
    import pandas as pd
    import yaml

    out = Path(out_dir)
    t0 = time.perf_counter()
    train_model_job(path, model, out, epochs=epochs, amp=amp, device=device)
    hist = pd.read_csv(out / "history.csv")
    info = yaml.safe_load(open(out / "run_info.yaml"))
    ckpt = torch.load(out / "model.pt", weights_only=False)
    return {
        "epoch_s": [float(x) for x in hist["seconds"]],
        "device": str(info.get("device")),
        "n_train": int(ckpt["train_info"]["n_train_cells"]),
        "n_validation": int(ckpt["train_info"]["n_validation_cells"]),
        "job_s": time.perf_counter() - t0,
        "status": info["status"],
        "amp": ckpt["train_info"].get("amp"),
        "max_rss_mb": peak_rss_mb(),
    }


def _run(args: list[str]) -> dict:
    return run_worker(__file__, args)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", type=int, default=161764)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--adt", type=int, default=228)
    ap.add_argument("--rna-nnz", type=int, default=700)
    ap.add_argument("--model", default="mvae")
    ap.add_argument("--amp", default="none")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "dmmvae_bench_cache"))
    ap.add_argument("--worker", choices=["build", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker == "build":
        print(json.dumps(build(a.path, a.cells, a.genes, a.adt, a.rna_nnz)))
        return
    if a.worker == "train":
        print(json.dumps(train(a.path, a.model, a.out, a.amp, a.device, a.epochs)))
        return
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"{a.cells}x{a.genes}genes+{a.adt}adt_r{a.rna_nnz}"
    path = cache / f"citeseq_{tag}.h5mu"
    print(
        f"# bench_scale: {a.cells} cells x ({a.genes} genes + {a.adt} ADT); host "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine)",
        flush=True,
    )
    if not path.exists():
        b = _run(
            worker_args(
                worker="build", path=path, cells=a.cells, genes=a.genes, adt=a.adt,
                rna_nnz=a.rna_nnz,
            )
        )
        print(
            f"# input: RNA {b['rna_nnz_per_cell']:.0f} genes/cell, ADT "
            f"{b['adt_nnz_per_cell']:.0f} proteins/cell; built in {b['build_s']:.0f} s, "
            f"preprocessed in {b['preprocess_s']:.0f} s (peak RSS {b['max_rss_mb']:.0f} MB, "
            f"not counted); shapes {b['shapes']}",
            flush=True,
        )
    else:
        print(f"# input: cached {path.name}", flush=True)
    out = cache / f"train_{tag}_{a.model}_{a.amp}_{a.device}"
    out.mkdir(exist_ok=True)
    r = _run(
        worker_args(
            worker="train", path=path, model=a.model, amp=a.amp, out=out, device=a.device,
            epochs=a.epochs,
        )
    )
    print(
        f"model {a.model} ({LAYERS}), batch 256, 1 thread, amp {r['amp']}, device {r['device']}: "
        f"status {r['status']}"
    )
    for i, s in enumerate(r["epoch_s"], 1):
        print(
            f"  epoch {i} (train {r['n_train']} + validation {r['n_validation']} cells): "
            f"{s:.1f} s = {r['n_train'] / s:.0f} train cells/s"
        )
    print(
        f"  train_model job (read, {len(r['epoch_s'])} epoch(s), predict the test cells, write): "
        f"{r['job_s']:.0f} s"
    )
    print(f"  peak RSS of the job: {r['max_rss_mb']:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
