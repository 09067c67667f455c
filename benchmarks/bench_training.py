"""Training throughput of our MVAE / MMVAE against scvi-tools totalVI and MultiVI, same data.

One driver, one subprocess per (dataset, method), every subprocess pinned to the same number
of threads (``--threads``, default one: ``torch.set_num_threads(n)`` and
``OMP/MKL_NUM_THREADS=n``) so that the methods share the machine alike; ``--threads 0`` gives
every process all the machine's cores (what a user gets without setting anything). Ours run
in the interpreter that runs this script, scvi-tools with ``--scvi-python`` (default: the same
interpreter, which has it after ``make test``, or ``$DMMVAE_SCVI_PYTHON``); a missing
scvi-tools leaves its rows out with a note.

Data (cached under ``--cache``): ``dmmvae.data.synthetic.simulate_shared_private`` ->
``dmmvae.data.preprocess.preprocess`` -> ``dmmvae.data.scenarios.make_scenario("paired")``;
RNA + ADT (for totalVI) and RNA + ATAC (for MultiVI), ``--cells`` cells, ``--genes`` genes,
``--adt`` proteins, ``--peaks`` peaks. Every method trains on the TRAIN cells (a tenth held
out for the per-epoch validation loss, no early stopping), the same ``--epochs``, batch size
256, learning rate 1e-3, and the same layer sizes: ``n_hidden=128``, ``n_latent=20``, two
hidden layers in every encoder and decoder (scvi: ``n_layers_encoder=n_layers_decoder=2``).

Printed per row: cells/s (train cells per wall second of an epoch, training + validation,
mean over the epochs after the first, which carries the warm-up), the fit's wall and CPU
seconds (setup + every epoch), epochs, and FOSCTTM on the TEST cells
(:func:`dmmvae.metrics.foscttm`, exact): ``rna|other`` between the embeddings from each
modality alone, ``rna|joint`` between the RNA-alone and the joint embedding (the only pair
totalVI has: it cannot encode proteins without RNA). scvi-tools' per-modality latents come
from its own missing-modality path, as in :mod:`dmmvae.methods.external.scvi_refs` (zeroed proteins,
zeroed counts of the other modality for MultiVI). Ours run with ``amp`` "none" (float32)
and "bf16" (CPU autocast where the CPU has native bf16; else the row is float32 again).

    .venv/bin/python benchmarks/bench_training.py                      # ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_training.py --epochs 5 --cells 3000 --amp none
    .venv/bin/python benchmarks/bench_training.py --baseline /tmp/base/src   # before/after
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
    BATCH_SIZE,
    LAYERS,
    LR,
    REFERENCE,
    make_paired,
    peak_rss_mb,
    run_worker,
    worker_args,
    worker_threads,
)

OURS_PYTHON = sys.executable  # our workers run in the interpreter that runs this driver
# scvi-tools: the project venv has it after `make test` (the scvi extra); another interpreter
# can be named with DMMVAE_SCVI_PYTHON / --scvi-python
SCVI_PYTHON = os.environ.get("DMMVAE_SCVI_PYTHON", sys.executable)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# workers (run in a subprocess each; print one JSON line)
# --------------------------------------------------------------------------------------
def _record(method: str, amp: str, n_train: int, secs, fit_s: float, fit_cpu: float) -> dict:
    """One result row: cells/s = train cells per epoch second, epochs after the first."""
    import torch

    return {
        "method": method,
        "amp": amp,
        "n_train": int(n_train),
        "epochs": len(secs),
        "epoch_s": [round(float(s), 3) for s in secs],
        "cells_per_s": n_train * (len(secs) - 1) / float(secs[1:].sum()) if len(secs) > 1 else None,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu,
        "max_rss_mb": peak_rss_mb(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def worker_ours(path: str, model: str, epochs: int, amp: str, out: str) -> dict:
    import mudata as md
    import numpy as np

    torch = worker_threads()
    from dmmvae.methods import build_model

    sc = md.read_h5mu(path)
    method = build_model(model, dict(LAYERS))
    training = {
        "max_epochs": epochs,
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "early_stopping_patience": 0,
        "validation_fraction": 0.1,
        "num_threads": torch.get_num_threads(),
        "amp": amp,
        "progress_bar": False,
    }
    t0, c0 = time.perf_counter(), time.process_time()
    hist = method.fit(sc, seed=0, device="cpu", training=training)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    preds = method.predict(sc)
    np.savez(out, **{k: v for k, v in preds.embeddings.items()})
    secs = hist["seconds"].to_numpy()
    amp_used = method.train_info.get("amp", "none")
    return _record(model, amp_used, method.train_info["n_train_cells"], secs, fit_s, fit_cpu)


def worker_scvi(path: str, second: str, epochs: int, out: str) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import anndata as ad
    import mudata as md
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    worker_threads()
    import scvi
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.t: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            self.t.append(time.perf_counter())

        def on_train_end(self, trainer, module):
            self.t.append(time.perf_counter())

    scvi.settings.seed = 0
    sc = md.read_h5mu(path)
    split = sc.obs["split"].to_numpy()
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    names = sc.obs_names.astype(str)

    def counts(mod, rows, binary=False):
        X = sp.csr_matrix(sc.mod[mod].layers["counts"][rows], dtype=np.float32)
        if binary:
            X.data[:] = 1.0
        return X

    timer = EpochTimer()
    kw = {
        "max_epochs": epochs,
        "batch_size": BATCH_SIZE,
        "early_stopping": False,
        "train_size": 0.9,
        "check_val_every_n_epoch": 1,
        "accelerator": "cpu",
        "enable_progress_bar": False,
        "callbacks": [timer],
        "plan_kwargs": {"lr": LR},
    }
    layers = {
        "n_latent": LAYERS["n_latent"],
        "n_hidden": LAYERS["n_hidden"],
        "n_layers_encoder": LAYERS["n_layers"],
        "n_layers_decoder": LAYERS["n_layers"],
    }
    t0, c0 = time.perf_counter(), time.process_time()
    if second == "adt":

        def totalvi_adata(rows, show_adt: bool):
            a = ad.AnnData(X=counts("rna", rows), obs=pd.DataFrame(index=names[rows]))
            y = counts("adt", rows).toarray()
            a.obsm["protein_expression"] = y if show_adt else np.zeros_like(y)
            return a

        a = totalvi_adata(train, True)
        scvi.model.TOTALVI.setup_anndata(a, protein_expression_obsm_key="protein_expression")
        model = scvi.model.TOTALVI(a, **layers)
        model.train(**kw)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        emb = {
            "joint": model.get_latent_representation(totalvi_adata(test, True)),
            # totalVI's own path for cells without proteins: zero counts (as scvi_refs does)
            "rna": model.get_latent_representation(totalvi_adata(test, False)),
        }
    else:

        def multivi_mdata(rows, show: dict[str, bool]):
            mods = {}
            for m in ("rna", "atac"):
                X = counts(m, rows, binary=m == "atac")
                if not show[m]:
                    X = sp.csr_matrix(X.shape, dtype=np.float32)
                var = pd.DataFrame(index=[f"{m}:{v}" for v in sc.mod[m].var_names.astype(str)])
                mods[m] = ad.AnnData(X=X, obs=pd.DataFrame(index=names[rows]), var=var)
            with md.set_options(pull_on_update=False):
                mu = md.MuData(mods)
            mu.obs["_indices"] = np.arange(mu.n_obs)  # MultiVI's registry field
            return mu

        mu = multivi_mdata(train, {"rna": True, "atac": True})
        scvi.model.MULTIVI.setup_mudata(mu, modalities={"rna_layer": "rna", "atac_layer": "atac"})
        model = scvi.model.MULTIVI(mu, **layers)
        model.train(**kw)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        emb = {}
        for key, show in (
            ("joint", {"rna": True, "atac": True}),
            ("rna", {"rna": True, "atac": False}),
            ("atac", {"rna": False, "atac": True}),
        ):
            emb[key] = model.get_latent_representation(multivi_mdata(test, show))
    np.savez(out, **emb)
    secs = np.diff(timer.t)
    r = _record(REFERENCE[second], "none", len(model.train_indices), secs, fit_s, fit_cpu)
    return {**r, "scvi": scvi.__version__}


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
def _run(python: str, args: list[str], pythonpath: str | None = None, threads: int = 1) -> dict:
    return run_worker(__file__, args, python=python, pythonpath=pythonpath, threads=threads)


def foscttm_columns(emb_file: str, second: str) -> dict[str, float | None]:
    import numpy as np

    from dmmvae.metrics import foscttm

    emb = np.load(emb_file)
    out = {"foscttm_pair": None, "foscttm_joint": None}
    if "rna" in emb and second in emb:
        out["foscttm_pair"] = foscttm(emb["rna"], emb[second])
    if "rna" in emb and "joint" in emb:
        out["foscttm_joint"] = foscttm(emb["rna"], emb["joint"])
    return out


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'data':<5} {'method':<11} {'amp':<5} {'cells/s':>8} {'x ref':>6} {'fit s':>7} "
        f"{'cpu s':>7} {'epochs':>6} {'FOSCTTM rna|other':>18} {'rna|joint':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['data']:<5} {r['method']:<11} {r['amp']:<5} {_fmt(r['cells_per_s'], '8.0f')} "
            f"{_fmt(r.get('speedup'), '6.2f')} {r['fit_s']:7.1f} {r['fit_cpu_s']:7.1f} "
            f"{r['epochs']:6d} {_fmt(r['foscttm_pair'], '18.4f')} "
            f"{_fmt(r['foscttm_joint'], '10.4f')}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", type=int, default=6000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--adt", type=int, default=150)
    ap.add_argument("--peaks", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--models", default="mvae,mmvae")
    ap.add_argument("--amp", default="none,bf16", help="comma list of our amp modes")
    ap.add_argument("--data", default="adt,atac", help="which pairs: adt (totalVI), atac")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "dmmvae_bench_cache"))
    ap.add_argument("--scvi-python", default=SCVI_PYTHON)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per process, the same for every method (0: all of this machine's cores)",
    )
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument(
        "--baseline",
        help="folder holding an older dmmvae package (e.g. `git archive <commit> src | tar -x`"
        " then <dir>/src): adds float32 rows '<model>@base' trained by that code",
    )
    # worker mode (internal)
    ap.add_argument("--worker", choices=["ours", "scvi", "data"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--second", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker == "data":
        n_second = {"adt": a.adt, "atac": a.peaks}[a.second]
        make_paired(Path(a.path), a.second, a.cells, a.genes, n_second)
        print(json.dumps({"ok": True}))
        return
    if a.worker == "ours":
        print(json.dumps(worker_ours(a.path, a.model, a.epochs, a.amp, a.out)))
        return
    if a.worker == "scvi":
        print(json.dumps(worker_scvi(a.path, a.second, a.epochs, a.out)))
        return

    threads = a.threads or os.cpu_count() or 1
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    have_scvi = Path(a.scvi_python).exists()
    print(
        f"# bench_training: {a.cells} cells x ({a.genes} genes + {a.adt} ADT | {a.peaks} peaks), "
        f"{a.epochs} epochs, batch {BATCH_SIZE}, lr {LR}, layers {LAYERS}, {threads} torch "
        f"thread(s) each; "
        f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start "
        "(other jobs share this machine: wall figures carry their noise)",
        flush=True,
    )
    rows = []
    for second in a.data.split(","):
        n_second = {"adt": a.adt, "atac": a.peaks}[second]
        path = cache / f"paired_rna_{second}_{a.cells}x{a.genes}+{n_second}.h5mu"
        if not path.exists():
            t = time.perf_counter()
            _run(
                OURS_PYTHON,
                worker_args(
                    worker="data", path=path, second=second, cells=a.cells, genes=a.genes,
                    adt=a.adt, peaks=a.peaks,
                ),
            )
            print(f"# built {path.name} in {time.perf_counter() - t:.0f} s", flush=True)
        jobs: list[tuple[str, list[str], str | None]] = []
        if have_scvi:
            jobs.append((a.scvi_python, ["--worker", "scvi", "--second", second], None))
        if a.baseline:
            for model in a.models.split(","):
                args = ["--worker", "ours", "--model", model, "--amp", "none"]
                jobs.append((OURS_PYTHON, args, a.baseline))
        for amp in a.amp.split(","):
            for model in a.models.split(","):
                args = ["--worker", "ours", "--model", model, "--amp", amp]
                jobs.append((OURS_PYTHON, args, None))
        group = []
        for python, args, pythonpath in jobs:
            tag = "_".join(args[1::2]) + ("_base" if pythonpath else "")
            out = str(cache / f"emb_{second}_{tag}.npz")
            args = [*args, "--path", str(path), "--epochs", str(a.epochs), "--out", out]
            try:
                r = _run(python, args, pythonpath, threads)
            except RuntimeError as e:
                print(f"# {e}", flush=True)
                continue
            if pythonpath:
                r["method"] += "@base"
            r.update(data=second, **foscttm_columns(out, second))
            print(f"# {second} {r['method']} {r['amp']}: epochs {r['epoch_s']}", flush=True)
            group.append(r)
        ref = next((r for r in group if r["method"] == REFERENCE[second]), None)
        for r in group:
            if ref and ref["cells_per_s"] and r["cells_per_s"]:
                r["speedup"] = r["cells_per_s"] / ref["cells_per_s"]
        rows += group
    if not have_scvi:
        print(f"# scvi-tools venv {a.scvi_python} not found: reference rows left out")
    print()
    print_table(rows)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
