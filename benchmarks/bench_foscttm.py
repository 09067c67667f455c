"""Benchmark: exact FOSCTTM at Hao CITE-seq scale vs the naive full-distance-matrix approach.

Prints wall seconds, CPU seconds and peak extra memory (resident set growth, sampled) of
``dmmvae.metrics.foscttm`` on N x N cells with 32-dim float32 embeddings, checks it against
the naive scipy ``cdist`` approach (scglue's ``foscttm`` style) at the naive method's largest
feasible size, and states the speed ratio there. No assertions on time: figures only.

    .venv/bin/python benchmarks/bench_foscttm.py [--n 161764] [--naive-n 10000] [--dim 32]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np

from dmmvae.metrics import foscttm, foscttm_cdist, foscttm_per_cell


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Sample the resident set size every 10 ms; ``extra_mb`` = peak minus the start."""

    def __enter__(self):
        self.start = _rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())
        self.extra_mb = self.peak - self.start


def embeddings(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A realistic case: y is x plus noise of the same size (FOSCTTM around 0.01-0.1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = (x + rng.normal(size=(n, dim))).astype(np.float32)
    return x, y


def timed(fn, *args, **kw):
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, wall, cpu, mem.extra_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=161_764)
    ap.add_argument("--naive-n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=32)
    args = ap.parse_args()
    print(f"cpus available: {len(os.sched_getaffinity(0))}, load average: {os.getloadavg()}")
    foscttm_per_cell(*embeddings(64, args.dim))  # compile / load the numba kernel

    x, y = embeddings(args.naive_n, args.dim)
    naive, t_naive, c_naive, m_naive = timed(foscttm_cdist, x, y)
    fast, t_fast, c_fast, m_fast = timed(foscttm, x, y)
    print(f"N={args.naive_n:,}: naive cdist {t_naive:.2f} s wall ({c_naive:.2f} s CPU, "
          f"+{m_naive:.0f} MB) = {naive:.6f}; exact chunked {t_fast:.2f} s wall "
          f"({c_fast:.2f} s CPU, +{m_fast:.0f} MB) = {fast:.6f}; "
          f"speed ratio {t_naive / t_fast:.1f}x; same value: {abs(naive - fast) < 1e-12}")

    x, y = embeddings(args.n, args.dim)
    big, t_big, c_big, m_big = timed(foscttm, x, y)
    pairs = float(args.n) ** 2
    print(f"N={args.n:,} ({pairs:.2e} pairs, dim {args.dim}): exact chunked {t_big:.1f} s wall "
          f"({c_big:.1f} s CPU, {c_big / pairs * 1e9:.2f} CPU-ns/pair), peak extra memory "
          f"+{m_big:.0f} MB, FOSCTTM = {big:.6f}")
    naive_gb = 8 * pairs / 2**30
    print(f"(the naive approach would need {naive_gb:.0f} GiB for the distance matrix at this N)")


if __name__ == "__main__":
    main()
