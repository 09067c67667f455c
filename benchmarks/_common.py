"""Shared helpers of the benchmark scripts: the stand-in scenarios, peak memory and fresh
worker subprocesses."""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the stand-in data (``../shared/data`` beside the project; ``DMMVAE_SHARED_DATA`` overrides)
SHARED = Path(os.environ.get("DMMVAE_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def one_thread_per_fit() -> None:
    """Run every method of this process on one BLAS / OpenMP / numba thread (call it before numpy
    loads; a variable the caller set wins): train times on equal terms, two benchmark processes
    side by side do not oversubscribe the cores, and numba's OpenMP pool (scanpy's neighbour
    search) starts on one thread instead of resetting the ``libgomp`` it shares with torch to
    every core."""
    for var in (*THREAD_VARS, "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
#: the layer sizes and batch size every training benchmark uses (ours and scvi-tools alike)
LAYERS = {"n_hidden": 128, "n_latent": 20, "n_layers": 2}
BATCH_SIZE = 256
#: the stand-ins every selection grid is asked on (bench_dmmvae_sweep, bench_reference_sweep)
SELECTION_DATASETS = ["cite_bmmc600", "teaseq_pbmc1262", "genesplit_link0.1", "snare_mop5232"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_threads():
    """In a worker: set torch's thread count to the one :func:`run_worker` gave the process
    (``OMP_NUM_THREADS``); returns the ``torch`` module."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return torch


def worker_args(**options) -> list[str]:
    """Command-line arguments of a worker call: ``atac_density=0.04`` -> ``--atac-density 0.04``."""
    out: list[str] = []
    for key, value in options.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def run_worker(
    script: str,
    args: list[str],
    *,
    python: str | None = None,
    pythonpath: str | None = None,
    threads: int = 1,
    env: dict[str, str] | None = None,
) -> dict:
    """Run ``script args`` in a fresh process limited to ``threads`` BLAS/OpenMP threads (the
    worker sets torch's own count); return the last JSON line it prints.

    A fresh process makes each case's peak memory its own and keeps imports out of the timing
    of the caller. ``pythonpath`` is put first on PYTHONPATH (e.g. an older dmmvae to compare);
    ``env``: further environment variables.
    """
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, str(threads)), "PYTHONWARNINGS": "ignore",
           **(env or {})}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")]).rstrip(":")
    proc = subprocess.run(
        [python or sys.executable, script, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise RuntimeError(f"worker {script} {args[:3]} failed (rc={proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def train_model_job(path, model: str, out_dir, *, epochs: int, amp: str, device: str = "cpu") -> None:
    """The ``train_model`` job (:func:`dmmvae.train.run_training`) with the benchmark settings:
    :data:`LAYERS`, batch :data:`BATCH_SIZE`, one thread, no early stopping, on ``device``; its
    four outputs (predictions, checkpoint, history, run info) go to ``out_dir``."""
    from pathlib import Path

    from dmmvae import train

    out = Path(out_dir)
    train.run_training(
        str(path),
        model_name=model,
        params=dict(LAYERS),
        training={
            "max_epochs": epochs,
            "batch_size": BATCH_SIZE,
            "early_stopping_patience": 0,
            "num_threads": 1,
            "amp": amp,
            "progress_bar": False,
        },
        seed=0,
        device=device,
        out_predictions=str(out / "predictions.h5"),
        out_checkpoint=str(out / "model.pt"),
        out_history=str(out / "history.csv"),
        out_run_info=str(out / "run_info.yaml"),
    )


def diagonal_scenario(config: dict, dataset: str, split: int, kind: str = "diagonal"):
    """The scenario MuData of ``dataset`` (an entry of ``config``) on split seed ``split``: the
    workflow's steps (prepare, preprocess with ``seed=split`` so that the split and everything
    fitted on its train cells change together, scenario masks with the same seed). Relative
    paths of the config are read from the working directory, as Snakemake does."""
    from dmmvae.config import preprocessing_params
    from dmmvae.data.prepare import prepare_dataset
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.scenarios import make_scenario

    spec = config["datasets"][dataset]
    raw = prepare_dataset(dataset, spec, cache_dir=tempfile.gettempdir())
    params = {**preprocessing_params(config, dataset),
              "train_fraction": config["split"]["train_fraction"]}
    return make_scenario(preprocess(raw, params, seed=split), kind, seed=split)


def configurations(grid: dict) -> list[dict]:
    """Every configuration of ``grid`` (the product of its values); a key ``"a,b"`` with tuples
    ``(va, vb)`` sets both; keys that start with ``training.`` set the training loop. A
    parameter set by two keys that both vary is refused (the product would repeat
    configurations under one name); with one value a later key overrides an earlier one."""
    varying: dict[str, str] = {}
    for key, values in grid.items():
        for name in key.split(","):
            if len(values) > 1 and name in varying:
                raise ValueError(f"grid: '{name}' varies in both '{varying[name]}' and '{key}'; "
                                 "drop one of them")
            if len(values) > 1:
                varying[name] = key
    out = []
    for values in itertools.product(*grid.values()):
        params = {}
        for key, value in zip(grid, values, strict=True):
            params.update(zip(key.split(","), value, strict=True) if "," in key else {key: value})
        out.append(params)
    return out


def sparse_counts(
    rng, types, propensity, n_features: int, per_cell: float, binary: bool, chunk: int = 1000
):
    """CSR (float32) with about ``per_cell`` draws per cell from its type's ``propensity``.

    Draws feature indices with replacement (``searchsorted`` on the cumulative propensity):
    binary -> the set of drawn features; counts -> how often each feature was drawn.
    Built chunk by chunk; memory stays O(nnz).
    """
    import numpy as np
    import scipy.sparse as sp

    cdfs = [np.cumsum(p / p.sum()) for p in propensity]
    indptr = [0]
    indices, data = [], []
    nnz = 0
    for start in range(0, len(types), chunk):
        t_chunk = types[start : start + chunk]
        sizes = rng.poisson(per_cell * rng.lognormal(0.0, 0.25, size=len(t_chunk)))
        for t, k in zip(t_chunk, sizes, strict=True):
            draws = np.searchsorted(cdfs[t], rng.random(k), side="right")
            cols, cnt = np.unique(np.minimum(draws, n_features - 1), return_counts=True)
            indices.append(cols.astype(np.int32))
            data.append(np.ones(len(cols), np.float32) if binary else cnt.astype(np.float32))
            nnz += len(cols)
            indptr.append(nnz)
    X = sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.asarray(indptr, dtype=np.int64)),
        shape=(len(types), n_features),
    )
    return X


LR = 1e-3


REFERENCE = {"adt": "totalvi", "atac": "multivi"}


def make_paired(path: Path, second: str, n_cells: int, n_genes: int, n_second: int, seed=0):
    """Write the paired RNA + ``second`` scenario MuData (synthetic -> preprocess -> scenario)."""
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.scenarios import make_scenario
    from dmmvae.data.synthetic import simulate_shared_private

    raw = simulate_shared_private(
        n_cells=n_cells,
        n_shared=6,
        n_types=8,
        modalities={
            "rna": {"kind": "rna", "n_features": n_genes, "n_private": 2},
            second: {"kind": second, "n_features": n_second, "n_private": 2},
        },
        seed=seed,
    )
    sc = make_scenario(preprocess(raw, seed=seed), "paired", seed=seed)
    sc.write(path)
