"""Worker processes that are safe to fork: the report draws its sections in forked processes
where the parent has not loaded a library whose thread pools a fork would break."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any


def fork_is_safe() -> bool:
    """Forking worker processes is safe on Linux while this process has not loaded numba, jax or
    torch (their thread pools, e.g. numba's OpenMP layer, do not survive a fork: "fork() called
    from a process already using GNU OpenMP")."""
    return sys.platform.startswith("linux") and not {"numba", "jax", "torch"} & set(sys.modules)


@contextmanager
def forked_results(fn: Callable[..., Any], args: Mapping[Any, tuple], n_jobs: int
                   ) -> Iterator[Callable[[Any], Any]]:
    """Yield ``get(key)`` = ``fn(*args[key])``. With ``n_jobs`` > 1, several keys and
    :func:`fork_is_safe`, every call starts at once in up to ``n_jobs`` forked processes (Python
    forks a pool's workers on its first submit), so the caller can work meanwhile; else each is
    computed in this process when asked for."""
    workers = min(int(n_jobs), len(args))
    if workers <= 1 or not fork_is_safe():
        yield lambda key: fn(*args[key])
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {key: pool.submit(fn, *a) for key, a in args.items()}
        yield lambda key: futures[key].result()


__all__ = ["fork_is_safe", "forked_results"]
