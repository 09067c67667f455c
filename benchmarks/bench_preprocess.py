"""Time and peak memory of preprocessing: every stand-in of ../shared/data, and a synthetic
100k cells x 100k sparse binary features (the scale target of the ATAC path).

Each case runs in its own subprocess; peak memory = ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
of that subprocess (whole process: Python, libraries, the input and the output), reported with
the peak reached before preprocessing started (reading / generating the input), so the
difference is what preprocessing itself adds. Times are wall seconds of ``preprocess`` only.

    .venv/bin/python benchmarks/bench_preprocess.py                 # stand-ins + 100k x 100k
    .venv/bin/python benchmarks/bench_preprocess.py --skip-large
    .venv/bin/python benchmarks/bench_preprocess.py --large-cells 20000 --large-features 20000
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from _common import (  # benchmarks/ is on sys.path when a script runs
    SHARED,
    peak_rss_mb,
    run_worker,
)

TENX = {
    "neurips2021_bmmc_cite_600": (("rna", "adt"), "batch"),
    "teaseq_matilda_train_rna_adt_1262": (("rna", "adt"), None),
    "muon_test_pbmc_multiome_1000": (("rna", "atac"), False),
    "simba_test_pbmc_multiome_100": (("rna", "atac"), False),
}


def standin_specs(root: Path) -> dict[str, dict]:
    specs: dict[str, dict] = {}
    for stem, (mods, batch) in TENX.items():
        path = str(root / f"tenx/{stem}.filtered_feature_bc_matrix.h5")
        spec = {
            "source": "local",
            "modalities": {m: {"format": "10x_h5", "path": path} for m in mods},
        }
        labels = root / f"tenx/{stem}.labels.csv"
        if labels.exists():
            spec["labels"] = {"path": str(labels), "column": "cell_type"}
            if batch:
                spec["labels"]["batch_column"] = batch
        specs[stem] = spec
    up = root / "upstream"
    specs["neurips2021_bmmc_cite_starter (h5ad pair)"] = {
        "source": "local",
        "modalities": {
            "rna": {
                "format": "h5ad",
                "path": str(
                    up
                    / "neurips2021_bmmc_cite_starter/openproblems_bmmc_cite_starter.output_rna.h5ad"
                ),
            },
            "adt": {
                "format": "h5ad",
                "kind": "adt",
                "path": str(
                    up
                    / "neurips2021_bmmc_cite_starter/openproblems_bmmc_cite_starter.output_mod2.h5ad"
                ),
            },
        },
        "labels": {"modality": "rna", "column": "cell_type", "batch_column": "batch"},
    }
    tar = str(up / "scvi_tools_pbmc_10k_protein_v3_mtx/filtered_feature_bc_matrix.tar.gz")
    specs["scvi_tools_pbmc_10k_protein_v3 (mtx tarball)"] = {
        "source": "local",
        "modalities": {
            "rna": {"format": "mtx", "path": tar},
            "adt": {"format": "mtx", "path": tar},
        },
    }
    specs["scanpy_10x_v3 (h5, RNA only)"] = {
        "source": "local",
        "modalities": {
            "rna": {
                "format": "10x_h5",
                "path": str(up / "scanpy_10x_v3/filtered_feature_bc_matrix.h5"),
            }
        },
    }
    return specs


# ----------------------------------------------------------------------------------------
# child process bodies
# ----------------------------------------------------------------------------------------
def _child_standin(name: str, spec: dict) -> dict:
    import time
    import warnings

    warnings.filterwarnings("ignore")
    from dmmvae.data.prepare import prepare_dataset
    from dmmvae.data.preprocess import preprocess

    raw = prepare_dataset(name, spec, cache_dir="/tmp/dmmvae_bench_cache")
    rss_in = peak_rss_mb()
    t0 = time.perf_counter()
    pre = preprocess(raw)
    secs = time.perf_counter() - t0
    return {
        "case": name,
        "cells_in": raw.n_obs,
        "cells_out": pre.n_obs,
        "features_in": {m: a.n_vars for m, a in raw.mod.items()},
        "features_out": {m: a.n_vars for m, a in pre.mod.items()},
        "seconds": round(secs, 3),
        "peak_rss_mb_before": round(rss_in, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def random_binary_csr(
    n_cells: int, n_features: int, density: float, seed: int = 0, chunk: int = 2000
):
    """Random sparse ATAC-like counts (CSR float32, values 1 or, at a duplicate, 2), built in
    row chunks: per-row Binomial(n_features, density) draws of random columns."""
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, n_cells, chunk):
        rows = min(chunk, n_cells - start)
        k = rng.binomial(n_features, density, size=rows)
        cols = rng.integers(0, n_features, size=int(k.sum()), dtype=np.int32)
        indptr = np.concatenate([[0], np.cumsum(k)]).astype(np.int64)
        block = sp.csr_matrix(
            (np.ones(cols.size, dtype=np.float32), cols, indptr), shape=(rows, n_features)
        )
        block.sum_duplicates()
        blocks.append(block)
    data = np.concatenate([b.data for b in blocks])
    indices = np.concatenate([b.indices.astype(np.int32) for b in blocks])
    offsets = np.cumsum([0] + [b.nnz for b in blocks[:-1]])
    indptr = np.concatenate(
        [b.indptr[:-1] + o for b, o in zip(blocks, offsets, strict=True)] + [[data.size]]
    )
    del blocks
    idx_dtype = np.int32 if data.size < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix((data, indices, indptr.astype(idx_dtype)), shape=(n_cells, n_features))


def _child_large(n_cells: int, n_features: int, density: float) -> dict:
    import time
    import warnings

    warnings.filterwarnings("ignore")
    import anndata as ad
    import mudata as md
    import pandas as pd

    from dmmvae.data.preprocess import preprocess

    t0 = time.perf_counter()
    X = random_binary_csr(n_cells, n_features, density)
    gen_secs = time.perf_counter() - t0
    a = ad.AnnData(
        X=X,
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"p{j}" for j in range(n_features)]),
    )
    a.uns["modality_kind"] = "atac"
    with md.set_options(pull_on_update=False):
        raw = md.MuData({"atac": a})
    rss_in = peak_rss_mb()
    t0 = time.perf_counter()
    pre = preprocess(raw)
    secs = time.perf_counter() - t0
    return {
        "case": f"synthetic sparse binary {n_cells} x {n_features} (density {density})",
        "nnz": int(X.nnz),
        "input_mb": round((X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20, 1),
        "generate_seconds": round(gen_secs, 1),
        "cells_in": n_cells,
        "features_in": {"atac": n_features},
        "cells_out": pre.n_obs,
        "features_out": {m: b.n_vars for m, b in pre.mod.items()},
        "seconds": round(secs, 1),
        "peak_rss_mb_before": round(rss_in, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _run_child(args: list[str]) -> dict:
    try:  # every core: preprocessing's BLAS and scanpy threads, as in the workflow's job
        return run_worker(__file__, ["--child", *args], threads=len(os.sched_getaffinity(0)))
    except RuntimeError as err:
        return {"case": args[0], "error": str(err).strip().splitlines()[-1:]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--large-cells", type=int, default=100_000)
    parser.add_argument("--large-features", type=int, default=100_000)
    parser.add_argument("--density", type=float, default=0.02)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    if args.child:
        kind = args.child[0]
        if kind == "standin":
            name = args.child[1]
            print(json.dumps(_child_standin(name, standin_specs(SHARED)[name])))
        else:
            n, f, d = int(args.child[1]), int(args.child[2]), float(args.child[3])
            print(json.dumps(_child_large(n, f, d)))
        return

    results = []
    if (SHARED / "SHA256SUMS").exists():
        for name in standin_specs(SHARED):
            results.append(_run_child(["standin", name]))
            print(json.dumps(results[-1]), flush=True)
    else:
        print(f"stand-in data not found at {SHARED}; skipping them", flush=True)
    if not args.skip_large:
        results.append(
            _run_child(
                ["large", str(args.large_cells), str(args.large_features), str(args.density)]
            )
        )
        print(json.dumps(results[-1]), flush=True)

    print(
        "\n| case | cells in -> out | features in -> out | preprocess s | peak RSS MB (before -> peak) |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['case']} | error: {r['error']} | | | |")
            continue
        fin = r.get("features_in", {})
        feats = ", ".join(f"{m} {fin.get(m, '?')} -> {v}" for m, v in r["features_out"].items())
        cells = f"{r.get('cells_in', r['cells_out'])} -> {r['cells_out']}"
        print(
            f"| {r['case']} | {cells} | {feats} | {r['seconds']} | {r['peak_rss_mb_before']} -> {r['peak_rss_mb']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
