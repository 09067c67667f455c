"""Modality mixing (scib-metrics on the stacked single-modality embeddings, batch = modality)."""

from __future__ import annotations

import numpy as np
import pytest

from dmmvae.metrics import modality_mixing


@pytest.mark.slow
def test_mixing_separates_aligned_from_unaligned_modalities():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 60).astype(str)
    centres = rng.normal(scale=4.0, size=(4, 8))
    truth = centres[labels.astype(int)]
    aligned = {"rna": truth + rng.normal(size=truth.shape),
               "atac": truth + rng.normal(size=truth.shape)}
    # each modality separates the cell types as well, but ATAC lives elsewhere in the space
    apart = {"rna": aligned["rna"], "atac": aligned["atac"] + 30.0}
    a = modality_mixing(aligned, labels)["scores"]
    b = modality_mixing(apart, labels)["scores"]
    assert a["batch_correction"] > b["batch_correction"] + 0.3
    assert a["ilisi_knn"] > 0.5 > 0.1 > b["ilisi_knn"]
    assert a["total"] > b["total"]
    with pytest.raises(ValueError, match="two modalities"):
        modality_mixing({"rna": aligned["rna"]}, labels)


def test_mixing_without_kbet_leaves_it_out_of_the_batch_aggregate():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 40).astype(str)
    emb = {"a": rng.normal(size=(120, 4)), "b": rng.normal(size=(120, 4))}
    res = modality_mixing(emb, labels, kbet=False)["scores"]
    assert "kbet_per_label" not in res and np.isfinite(res["batch_correction"])
    batch = [res[k] for k in ("bras", "ilisi_knn", "graph_connectivity") if np.isfinite(res[k])]
    assert res["batch_correction"] == pytest.approx(np.mean(batch))
