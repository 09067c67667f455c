"""Benchmark: evaluation of one model on a 10k-cell synthetic dataset, all metrics.

Builds a synthetic CITE-seq + ATAC scenario (:mod:`dmmvae.data.toy`; 10,000 cells, 20 % test,
RNA 2000 genes, ADT 134 proteins, ATAC 5000 peaks, 2 batches, 8 cell types), predictions with
32-dim embeddings, imputations for all 6 ordered pairs and prior samples, writes them to disk
and times :func:`dmmvae.evaluate.evaluate_run` (reading included) per metric family and in
total, in a fresh process per measurement so that one-off compilation (numba, jax) counts.
No assertions: figures only.

    .venv/bin/python benchmarks/bench_evaluate.py [--cells 10000] [--out /tmp/bench_eval]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from _common import run_worker  # benchmarks/ is on sys.path when a script runs


def worker(scen: str, pred: str, families: str, out: str) -> dict:
    """One evaluation in a fresh process, imports included: wall and CPU seconds."""
    t0 = time.perf_counter()
    from dmmvae.evaluate import evaluate_run

    evaluate_run(scen, pred, out, dataset="synthetic", scenario="paired", model="toy", seed=0,
                 params={"families": families.split(",")})
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=10_000)
    ap.add_argument("--out", default="/tmp/dmmvae_bench_evaluate")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import warnings

    warnings.filterwarnings("ignore")
    from dmmvae.metrics import computed_families

    FAMILIES = computed_families()
    from dmmvae.data.toy import toy_predictions, toy_scenario

    scen, pred = out / "scenario.h5mu", out / "predictions.h5"
    t = time.perf_counter()
    mdata = toy_scenario(args.cells, n_genes=2000, n_proteins=134, n_peaks=5000, n_types=8,
                         n_shared=8, seed=0)
    mdata.write(scen)
    toy_predictions(mdata, noise=0.5, dim=32).write(pred)
    n_test = int((mdata.obs["split"] == "test").sum())
    print(f"setup {time.perf_counter() - t:.1f} s: {args.cells:,} cells ({n_test:,} test), "
          f"modalities {list(mdata.mod)}; cpus {len(os.sched_getaffinity(0))}, load average "
          f"{os.getloadavg()}")
    del mdata

    env = {"JAX_COMPILATION_CACHE_DIR": str(out / "jax-cache")}
    shutil.rmtree(out / "jax-cache", ignore_errors=True)
    cores = len(os.sched_getaffinity(0))

    def run(fams: list[str]) -> tuple[float, float]:
        t = time.perf_counter()
        r = run_worker(__file__, ["--worker", str(scen), str(pred), ",".join(fams),
                                  str(out / "metrics.csv")], threads=cores, env=env)
        return time.perf_counter() - t, float(r["cpu"])

    for fam in FAMILIES:
        wall, cpu = run([fam])
        print(f"  {fam:15s} {wall:6.1f} s wall, {cpu:6.1f} s CPU (fresh process, incl. reading "
              "+ imports)")
    shutil.rmtree(out / "jax-cache", ignore_errors=True)
    for label in ("cold jax cache", "warm jax cache (later models/seeds of a dataset)"):
        wall, cpu = run(list(FAMILIES))
        print(f"ALL metrics, {label}: {wall:.1f} s wall, {cpu:.1f} s CPU in one fresh process "
              f"(target < 60 s on 2 cores); load average now {os.getloadavg()}")


if __name__ == "__main__":
    main()
