"""Seconds per epoch of the anchor-free model's RNA+ATAC recipe (GLUE's parts rebuilt in D-MMVAE)
with the graph term over every pair in each step (``graph_batches: 1``) and over scglue's
1/32 share (``graph_batches: 32``, the shipped recipe).

For each setting, one subprocess (``--threads`` threads) builds SNARE-seq's diagonal scenario on
split seed 0 (``config/diagonal.yaml``), keeps its train cells only
(:func:`dmmvae.selection.train_only`: no test cell is read), and fits ``dmmvae_noanchor`` with
its ``rna_atac`` recipe for ``--epochs`` epochs per stage (GLUE's two stages; the recipe's
automatic budget replaced by that count); it prints the fit's seconds per epoch and where the
training steps' time went (``cProfile``: the graph term, the rest). Needs the stand-ins in
``../shared/data`` (it stops saying so otherwise).

    .venv/bin/python benchmarks/bench_graph_step.py                 # ~2 min on one core
    .venv/bin/python benchmarks/bench_graph_step.py --batches 1 8 32 --epochs 10
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time

from _common import ROOT, SHARED, diagonal_scenario, run_worker, worker_threads


def worker(batches: int, epochs: int) -> dict:
    worker_threads()
    from dmmvae.config import expand_models, load_config
    from dmmvae.methods import apply_recipe, build_model, modality_kinds
    from dmmvae.selection import train_only

    os.chdir(ROOT)
    config = load_config(ROOT / "config" / "diagonal.yaml")
    variant = expand_models(config["models"])["dmmvae_noanchor"]
    sc = train_only(diagonal_scenario(config, "snare_mop5232", 0))
    params, training, recipe = apply_recipe(variant["params"],
                                            {**config["training"], **variant["training"]},
                                            variant["recipes"], modality_kinds(sc))
    assert recipe == "rna_atac", recipe
    params = {**params, "graph_batches": batches}
    training = {**training, "budget": "epochs", "max_epochs": epochs, "progress_bar": False}
    model = build_model(variant["model"], params)
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    history = model.fit(sc, training=training, seed=0, device="cpu")
    profile.disable()
    seconds = time.perf_counter() - t0
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, ...)

    def cumulative(name: str) -> float:
        return sum(v[3] for k, v in stats.items() if k[2] == name and "dmmvae" in k[0])

    return {"graph_batches": batches, "epochs": len(history), "seconds": seconds,
            "seconds_per_epoch": seconds / max(len(history), 1),
            "train_steps_s": cumulative("train_step"), "graph_term_s": cumulative("add_graph_term")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--epochs", type=int, default=6, help="epochs per stage (default 6)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    if not SHARED.is_dir():
        sys.exit(f"needs the stand-ins in {SHARED} (SNARE-seq); not found")
    print(f"SNARE-seq split 0, train cells, {args.epochs} epochs per stage, "
          f"{args.threads} thread(s)")
    print("| graph_batches | epochs | seconds | s / epoch | train steps s | graph term s (forward) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for b in args.batches:
        r = run_worker(__file__, ["--worker", str(b), str(args.epochs)], threads=args.threads)
        print(f"| {r['graph_batches']} | {r['epochs']} | {r['seconds']:.1f} | "
              f"{r['seconds_per_epoch']:.2f} | {r['train_steps_s']:.1f} | "
              f"{r['graph_term_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
