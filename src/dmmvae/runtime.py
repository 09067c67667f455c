"""Runtime set-up of a training job, apart from the loop: device, seeds, threads, AMP, memory.

A leaf of the package's import graph (imports nothing of the package), used by the training
loop (:mod:`dmmvae.methods.training.loop`) and by the ``train_model`` job (:mod:`dmmvae.train`).
"""

from __future__ import annotations

import os
import random
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available else CPU; ``"cuda"`` without a GPU -> ValueError."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device '{device}' requested but torch sees no CUDA device; use 'auto' or 'cpu'"
        )
    return dev


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the legacy API
    torch.manual_seed(seed)
    if device is not None and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def set_num_threads(num_threads: int | str | None) -> int:
    """Set torch's intra-op threads; ``"auto"`` = available cores - 1 (1..8). Returns the count.

    Measured on a shared 2-core machine: one thread trains the demo MVAE (2000 cells x
    500 genes + 1000 peaks) in 12 s wall / 8 s CPU, two threads in 118 s / 87 s (the small
    matrix products of these models do not amortise OpenMP synchronisation, and spinning
    threads compete with the other jobs of the machine). On the same machine when idle, the
    wider 6k-cell benchmark (2000 genes + 8000 peaks, ``benchmarks/bench_training.py``) trains
    1.6x faster on two threads than on one: more threads pay off for wide modalities on a
    machine that is not shared.
    """
    if num_threads is None:
        return torch.get_num_threads()
    if num_threads == "auto":
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        n = max(1, min(8, cores - 1))
    else:
        n = int(num_threads)
        if n < 1:
            raise ValueError(
                f"training.num_threads={num_threads!r}; use a positive integer, 'auto' or null"
            )
    torch.set_num_threads(n)
    return n


@contextmanager
def torch_threads_kept() -> Iterator[int]:
    """Restore torch's intra-op thread count when the block ends; yields the count.

    numba's OpenMP threading layer shares the ``libgomp`` torch loaded, and a parallel numba
    function (pynndescent, as in ``scanpy.pp.neighbors``) sets that runtime's thread count to
    numba's, all cores: torch then runs every later operator on that many threads whatever
    ``OMP_NUM_THREADS`` or ``training.num_threads`` asked. Wrap such calls made between two
    stages of a training run in this block.
    """
    n = torch.get_num_threads()
    try:
        yield n
    finally:
        torch.set_num_threads(n)


def cpu_bf16_supported() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (oneDNN: AVX512-BF16 or AMX).

    Measured on an AMD EPYC with AVX512-BF16: a 256 x 128 by 128 x 8000 product takes
    1.1 ms in bf16 against 5.2 ms in float32 (one thread).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - build without oneDNN
        return False


def effective_amp(device: torch.device, amp: str) -> str:
    """The autocast mode actually used: ``amp`` on CUDA; on CPU "bf16" where supported."""
    if device.type == "cuda":
        return amp
    if device.type == "cpu" and amp == "bf16" and cpu_bf16_supported():
        return "bf16"
    return "none"



def peak_memory_mb(dev: torch.device | None) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA allocation on a GPU), in MB."""
    out = {"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if dev is not None and dev.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


__all__ = [
    "cpu_bf16_supported",
    "effective_amp",
    "peak_memory_mb",
    "resolve_device",
    "seed_everything",
    "set_num_threads",
    "torch_threads_kept",
]
