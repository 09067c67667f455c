"""Dense vs sparse first encoder layer: forward + backward of ``x @ W.T + b`` for one batch.

The encoders read a dense (batch, features) minibatch; counts and peaks are mostly zeros, so a
sparse product could skip them. This prints, per (width, density) case, the milliseconds of a
forward + backward (weight and bias gradients; the input needs none) of:

- ``dense``: ``F.linear`` on the dense batch (what the models do),
- ``embedding_bag``: ``F.embedding_bag(cols, W_T, offsets, per_sample_weights=vals)``,
- ``sparse.mm``: ``torch.sparse.mm(csr_batch, W_T)``,
- ``index_add``: gather the rows of ``W_T`` per non-zero, scale, ``index_add_`` per cell.

One thread (``--threads``), batch 256, 128 hidden units, random binary data at the density given.

    .venv/bin/python benchmarks/bench_input_layer.py
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

CASES = [(2000, 0.30), (8000, 0.08), (108000, 0.045)]


def _ms(f, n: int) -> float:
    for _ in range(2):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args(argv)
    import torch

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"# batch {a.batch}, hidden {a.hidden}, {a.threads} thread(s); ms per forward+backward")
    head = f"{'features':>9} {'density':>8} {'dense':>8} {'embedding_bag':>14} {'sparse.mm':>10} {'index_add':>10}"
    print(head)
    print("-" * len(head))
    for n_feat, dens in CASES:
        r = time_case(n_feat, dens, a.batch, a.hidden, a.repeats)
        print(
            f"{n_feat:9d} {dens:8.3f} {r['dense']:8.2f} {r['embedding_bag']:14.2f} "
            f"{r['sparse.mm']:10.2f} {r['index_add']:10.2f}",
            flush=True,
        )


def time_case(n_feat: int, dens: float, B: int, H: int, n: int) -> dict[str, float]:
    """Milliseconds per forward + backward of each form, on one random binary batch."""
    import torch
    import torch.nn.functional as F

    x = (torch.rand(B, n_feat) < dens).float()
    w = torch.randn(H, n_feat, requires_grad=True)  # nn.Linear layout
    wt = torch.randn(n_feat, H, requires_grad=True)  # (features, hidden) for the sparse forms
    b = torch.zeros(H, requires_grad=True)
    rows, cols = x.nonzero(as_tuple=True)
    vals = x[rows, cols]
    lens = torch.bincount(rows, minlength=B)
    offsets = torch.cumsum(lens, 0) - lens
    csr = x.to_sparse_csr()

    def dense():
        F.linear(x, w, b).sum().backward()

    def bag():
        h = F.embedding_bag(cols, wt, offsets, mode="sum", per_sample_weights=vals) + b
        h.sum().backward()

    def spmm():
        (torch.sparse.mm(csr, wt) + b).sum().backward()

    def gather():
        h = torch.zeros(B, H).index_add_(0, rows, wt.index_select(0, cols) * vals[:, None])
        (h + b).sum().backward()

    return {
        "dense": _ms(dense, n),
        "embedding_bag": _ms(bag, n),
        "sparse.mm": _ms(spmm, n),
        "index_add": _ms(gather, max(2, n // 5)),
    }


if __name__ == "__main__":
    sys.exit(main())
