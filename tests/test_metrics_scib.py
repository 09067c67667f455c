"""scib-metrics on a joint embedding: well-mixed vs batch-split embeddings, tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from dmmvae.metrics import scib_scores


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 240
    labels = np.repeat(["a", "b", "c"], n // 3)
    batch = np.tile(["b1", "b2"], n // 2)
    centres = {"a": [0, 0], "b": [6, 0], "c": [0, 6]}
    z = np.array([centres[lab] for lab in labels], float) + rng.normal(size=(n, 2))
    return z, labels, batch


def test_scib_scores_mixed_vs_split(data):
    z, labels, batch = data
    mixed = scib_scores(z, labels, batch)
    split = scib_scores(z + np.where(batch == "b1", 0.0, 20.0)[:, None], labels, batch)
    import scib_metrics

    assert mixed["version"] == scib_metrics.__version__
    sm, ss = mixed["scores"], split["scores"]
    assert not mixed["errors"], mixed["errors"]
    for s in (sm, ss):
        assert s["total"] == pytest.approx(0.6 * s["bio_conservation"] + 0.4 * s["batch_correction"])
    assert sm["silhouette_label"] > 0.5
    assert sm["batch_correction"] > ss["batch_correction"] + 0.2  # batches separated: worse
    assert sm["ilisi_knn"] > ss["ilisi_knn"]


def test_scib_without_batches_and_tiny_labels():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 3))
    labels = np.array(["x"] * 37 + ["rare"] * 3)  # a label with 3 cells
    res = scib_scores(z, labels, None)
    s = res["scores"]
    assert "batch_correction" not in s
    assert s["total"] == s["bio_conservation"]
    assert np.isfinite(s["total"])


def test_kbet_takes_exact_diffusion_neighbours_and_matches_scib_metrics(data, monkeypatch):
    """kBET per label finds its diffusion-map neighbours exactly (scikit-learn), never through
    pynndescent (whose numba compilation cost 44-88 s per evaluation process), and gives
    scib-metrics' own value (pynndescent, approximate) on the same neighbours."""
    import scib_metrics
    import scib_metrics.nearest_neighbors as snn

    from dmmvae.metrics._scib import _neighbors

    z, labels, batch = data
    theirs = scib_metrics.kbet_per_label(
        _neighbors(z.astype(np.float32), 90).subset_neighbors(n=50), batch, labels)

    def refuse(*args, **kwargs):
        raise AssertionError("pynndescent called")

    monkeypatch.setattr(snn, "pynndescent", refuse)
    res = scib_scores(z, labels, batch)
    assert "kbet_per_label" not in res["errors"], res["errors"]
    assert res["scores"]["kbet_per_label"] == pytest.approx(theirs, abs=1e-3)
    assert 0 < theirs < 1
    assert snn.pynndescent is refuse  # restored after the kBET call
