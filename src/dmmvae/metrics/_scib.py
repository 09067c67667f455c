"""Integration quality of a joint embedding with scib-metrics (jax; CPU or GPU).

The public metric functions of ``scib_metrics`` are called one by one with the neighbour
counts its ``Benchmarker`` uses (15 for graph connectivity, 50 for kBET, 90 for LISI), on
exact neighbours from scikit-learn passed as scib-metrics' public ``NeighborsResults`` (each
cell is its own first neighbour, as in scib-metrics' pynndescent helper; ``Benchmarker``
documents the same hook as ``prepare(neighbor_computer=...)``). The functions are called
directly rather than through ``Benchmarker`` because a metric that fails on the data (e.g. a
label with too few cells) then costs only that metric, its error recorded, while
``Benchmarker.benchmark`` stops at the first failure; on the same data both give the same
numbers. Scores are *not* min-max scaled (that only makes sense across methods);
``bio_conservation`` and ``batch_correction`` are the means of their finite metrics and
``total = 0.6 bio + 0.4 batch`` as in scib-metrics (``total = bio`` without batches).

Bio conservation: isolated_labels, kmeans_nmi, kmeans_ari, silhouette_label, clisi_knn.
Batch correction (only with > 1 batch): bras, ilisi_knn, kbet_per_label, graph_connectivity.
A metric that cannot be computed on the data (e.g. too few cells per label) is NaN and its
error is returned in ``errors``.

kBET per label embeds each label's cells with a diffusion map of their neighbour graph and finds
neighbours there; scib-metrics does that with pynndescent (approximate), whose numba
compilation cost 44-88 s in EVERY evaluation process on a 2-core machine (not cached on disk).
:func:`exact_diffusion_neighbours` hands scib-metrics exact scikit-learn neighbours for that
step instead (what pynndescent approximates): kBET equal to 4 decimals on three demo runs, the
step < 1 s.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

# jax takes 75 % of a GPU's memory at its first GPU operation unless told otherwise; evaluation
# jobs share the GPU with torch and with each other, so jax allocates as it goes instead
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _enable_jax_cache() -> None:
    """Persistent jax compilation cache: the label-subset shapes of kBET etc. repeat for every
    model and seed of a dataset, so later evaluations skip most XLA compilation. Directory:
    ``$JAX_COMPILATION_CACHE_DIR`` when set, else ``<tmpdir>/dmmvae-jax-cache``; every
    compilation is cached (scib-metrics compiles hundreds of small programs)."""
    import tempfile

    import jax

    try:
        if not jax.config.jax_compilation_cache_dir:
            path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
                tempfile.gettempdir(), "dmmvae-jax-cache"
            )
            os.makedirs(path, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError):  # pragma: no cover - cache is an optimisation only
        pass


def _exact_knn(x: np.ndarray, n_neighbors: int, random_state: int = 0, n_jobs: int = 1):
    """scib-metrics' ``nearest_neighbors.pynndescent`` signature, exact neighbours (self first)."""
    return _neighbors(x, n_neighbors)


@contextmanager
def exact_diffusion_neighbours() -> Iterator[None]:
    """Within the block, scib-metrics' diffusion-map neighbours (kBET per label) are exact
    (:func:`_exact_knn`) instead of pynndescent's; restored afterwards."""
    import scib_metrics.nearest_neighbors as snn

    approximate = snn.pynndescent
    snn.pynndescent = _exact_knn
    try:
        yield
    finally:
        snn.pynndescent = approximate


def scib_version() -> str:
    import scib_metrics

    return str(scib_metrics.__version__)


def _neighbors(x: np.ndarray, k: int):
    """Exact k nearest neighbours (self first), as scib-metrics' ``NeighborsResults``."""
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(x)))
    nn = NearestNeighbors(n_neighbors=k, metric="euclidean").fit(x)
    dist, idx = nn.kneighbors(x)
    return NeighborsResults(indices=idx, distances=dist)


def _kbet(sm, neighbors, batch: np.ndarray, labels: np.ndarray) -> float:
    with exact_diffusion_neighbours():
        return sm.kbet_per_label(neighbors, batch, labels)


def scib_scores(
    x: np.ndarray, labels: np.ndarray, batch: np.ndarray | None = None,
    skip: tuple[str, ...] = (),
) -> dict[str, object]:
    """scib-metrics scores of embedding ``x`` with cell ``labels`` and optional ``batch``.

    Returns ``{"scores": {name: float}, "errors": {name: message}, "version": str}`` where
    names are those listed in the module docstring plus ``bio_conservation``,
    ``batch_correction`` (only with batches) and ``total``. Metrics named in ``skip`` are
    not computed (and not in the aggregates).
    """
    _enable_jax_cache()
    import scib_metrics as sm

    x = np.asarray(x, dtype=np.float32)
    labels = np.asarray(labels).astype(str)
    n = x.shape[0]
    if x.ndim != 2 or n != len(labels):
        raise ValueError(f"scib: need (N, d) embedding and N labels, got {x.shape}, {labels.shape}")
    if not np.isfinite(x).all():
        raise ValueError("scib: embedding contains NaN or infinite values")
    has_batch = batch is not None and len(np.unique(np.asarray(batch).astype(str))) > 1
    batch_arr = np.asarray(batch).astype(str) if has_batch else np.zeros(n, dtype=str)
    kmax = max(2, min(90, n - 1))
    neigh = _neighbors(x, kmax)

    def sub(k: int):
        return neigh.subset_neighbors(n=min(k, kmax))

    bio_fns = {
        "isolated_labels": lambda: sm.isolated_labels(x, labels, batch_arr),
        "kmeans": lambda: sm.nmi_ari_cluster_labels_kmeans(x, labels),
        "silhouette_label": lambda: sm.silhouette_label(x, labels),
        "clisi_knn": lambda: sm.clisi_knn(sub(90), labels),
    }
    batch_fns = {
        "bras": lambda: sm.bras(x, labels, batch_arr),
        "ilisi_knn": lambda: sm.ilisi_knn(sub(90), batch_arr),
        "kbet_per_label": lambda: _kbet(sm, sub(50), batch_arr, labels),
        "graph_connectivity": lambda: sm.graph_connectivity(sub(15), labels),
    }
    bio_fns = {k: f for k, f in bio_fns.items() if k not in skip}
    batch_fns = {k: f for k, f in batch_fns.items() if k not in skip}
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}

    def run(fns: dict) -> list[str]:
        names = []
        for name, fn in fns.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    val = fn()
            except Exception as err:  # noqa: BLE001 - recorded, the other metrics still run
                val = {"nmi": np.nan, "ari": np.nan} if name == "kmeans" else np.nan
                msg = f"{type(err).__name__}: {err}"[:200]
                for key in (["kmeans_nmi", "kmeans_ari"] if name == "kmeans" else [name]):
                    errors[key] = msg
            if name == "kmeans":
                scores["kmeans_nmi"] = float(val["nmi"])
                scores["kmeans_ari"] = float(val["ari"])
                names += ["kmeans_nmi", "kmeans_ari"]
            else:
                scores[name] = float(val)
                names.append(name)
        return names

    bio_names = run(bio_fns)
    bio = [scores[k] for k in bio_names if np.isfinite(scores[k])]
    scores["bio_conservation"] = float(np.mean(bio)) if bio else float("nan")
    if has_batch:
        batch_names = run(batch_fns)
        bat = [scores[k] for k in batch_names if np.isfinite(scores[k])]
        scores["batch_correction"] = float(np.mean(bat)) if bat else float("nan")
        scores["total"] = 0.6 * scores["bio_conservation"] + 0.4 * scores["batch_correction"]
    else:
        scores["total"] = scores["bio_conservation"]
    return {"scores": scores, "errors": errors, "version": scib_version()}
