"""Where a training step's time goes: matrix products against everything else.

For each pair (RNA+ADT, RNA+ATAC; the cached data of ``bench_training.py``) and each of our
models, one subprocess (``--threads`` threads) builds the model, runs 3 warm-up steps, times
``--steps`` training steps of batch 256 (``train_step``: forward, backward, AdamW), then runs
10 more under ``torch.profiler`` and splits their CPU time into matrix products
(``aten::mm`` / ``aten::addmm`` / ``aten::bmm``, self time) and the rest (elementwise maths
of the likelihoods, layer norm, optimizer, Python dispatch).

The matrix-product time is a floor for the step: the objectives fix how many rows each
decoder sees (MVAE: joint + unimodal ELBOs; MMVAE: every expert's draw decodes every
modality, so each decoder runs on 2 x 256 rows), and the products already run near the BLAS
peak of the machine. ``floor cells/s`` = 256 / (matrix-product seconds per step): the
throughput if everything else cost nothing. With ``--reference-json`` (the ``--json`` file of
a ``bench_training.py`` run with the same ``--threads``) it also prints the cells/s that
``3x`` the scvi-tools model of that run would need, as cells per second of training steps
alone (the epoch figures of bench_training also hold the validation pass, so they are ~5 %
lower than these).

    .venv/bin/python benchmarks/bench_training.py --json /tmp/t1.json     # reference first
    .venv/bin/python benchmarks/bench_step_profile.py --reference-json /tmp/t1.json
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
    run_worker,
    worker_threads,
)

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm")


def worker(path: str, model: str, amp: str, steps: int) -> dict:
    import mudata as md
    import numpy as np
    from torch.profiler import ProfilerActivity, profile

    torch = worker_threads()
    from dmmvae.constants import SPLIT, TRAIN
    from dmmvae.methods import build_model
    from dmmvae.methods.training.batches import MultimodalData, build_spec
    from dmmvae.methods.training.loop import StepContext, resolve_training
    from dmmvae.methods.training.state import TrainingState

    sc = md.read_h5mu(path)
    method = build_model(model, dict(LAYERS)).module  # the module the loop trains
    cfg = resolve_training(
        {
            "max_epochs": 1,
            "batch_size": BATCH_SIZE,
            "lr": LR,
            "amp": amp,
            "num_threads": torch.get_num_threads(),
            "progress_bar": False,
        }
    )
    torch.manual_seed(0)
    method.build(build_spec(sc, method.params.get("likelihoods")))  # what fit builds first
    method.train()
    data = MultimodalData(sc, method.spec, torch.device("cpu"))
    train = np.flatnonzero(sc.obs[SPLIT].to_numpy() == TRAIN)
    opts = method.configure_optimizers(cfg)
    ctx = StepContext(torch.device("cpu"), cfg["amp"], cfg["grad_clip"])
    state = TrainingState(data.n_obs)
    rng = np.random.default_rng(0)  # n batches of distinct train cells (any data size)
    n = steps + 13
    batches = [
        data.batch(torch.as_tensor(rng.choice(train, min(BATCH_SIZE, len(train)), replace=False)))
        for _ in range(n)
    ]
    for b in batches[:3]:
        method.train_step(b, 1.0, opts, ctx, state)
    t = time.perf_counter()
    for b in batches[3 : 3 + steps]:
        method.train_step(b, 1.0, opts, ctx, state)
    step_s = (time.perf_counter() - t) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches[3 + steps :]:
            method.train_step(b, 1.0, opts, ctx, state)
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)
    mm = sum(e.self_cpu_time_total for e in ev if e.key in MATMUL)
    return {
        "model": model,
        "amp": ctx.amp,
        "threads": torch.get_num_threads(),
        "step_ms": 1e3 * step_s,
        "matmul_share": mm / total,
        "matmul_ms": 1e3 * step_s * mm / total,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="mvae,mmvae")
    ap.add_argument("--amp", default="none,bf16")
    ap.add_argument("--data", default="adt,atac")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per case")
    ap.add_argument("--threads", type=int, default=1, help="0: all of this machine's cores")
    ap.add_argument("--cells", type=int, default=6000)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "dmmvae_bench_cache"))
    ap.add_argument("--reference-json", help="bench_training.py --json output (same --threads)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.path, a.model, a.amp, a.steps)))
        return

    threads = a.threads or os.cpu_count() or 1
    ref = {}
    if a.reference_json:
        for r in json.loads(Path(a.reference_json).read_text()):
            if r["method"] == REFERENCE[r["data"]]:
                ref[r["data"]] = r["cells_per_s"]
    print(
        f"# bench_step_profile: batch {BATCH_SIZE}, layers {LAYERS}, {threads} thread(s), "
        f"{a.steps} timed steps + 10 profiled; load average {os.getloadavg()[0]:.1f}"
    )
    head = (
        f"{'data':<5} {'model':<6} {'amp':<5} {'ms/step':>8} {'cells/s':>8} {'matmul ms':>10} "
        f"{'share':>6} {'floor cells/s':>14} {'3x ref cells/s':>15}"
    )
    print(head)
    print("-" * len(head))
    dims = {"adt": 150, "atac": 8000}
    Path(a.cache).mkdir(parents=True, exist_ok=True)
    for second in a.data.split(","):
        path = Path(a.cache) / f"paired_rna_{second}_{a.cells}x2000+{dims[second]}.h5mu"
        if not path.exists():
            make_paired(path, second, a.cells, 2000, dims[second])
        for amp in a.amp.split(","):
            for model in a.models.split(","):
                r = run_worker(
                    __file__,
                    [
                        "--worker",
                        "--path",
                        str(path),
                        "--model",
                        model,
                        "--amp",
                        amp,
                        "--steps",
                        str(a.steps),
                    ],
                    threads=threads,
                )
                need = f"{3 * ref[second]:15.0f}" if second in ref else f"{'n/a':>15}"
                print(
                    f"{second:<5} {model:<6} {r['amp']:<5} {r['step_ms']:8.1f} "
                    f"{BATCH_SIZE / r['step_ms'] * 1e3:8.0f} {r['matmul_ms']:10.1f} "
                    f"{r['matmul_share']:6.2f} {BATCH_SIZE / r['matmul_ms'] * 1e3:14.0f} {need}",
                    flush=True,
                )


if __name__ == "__main__":
    sys.exit(main())
