"""Atomic writes and the predictions file."""

import os

import numpy as np
import pytest

from dmmvae.io import Predictions, atomic_path


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_and_uses_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_predictions_round_trip_with_failure_and_wide_targets(tmp_path):
    rng = np.random.default_rng(0)
    p = Predictions(
        ["a", "b", "c"],
        embeddings={"rna": rng.normal(size=(3, 4)), "joint": rng.normal(size=(3, 4))},
        imputations={("rna", "atac"): rng.random((3, 30000))},
        generated={"rna": rng.normal(size=(3, 5))},
        info={"shared_dims": [0, 1]},
    )
    p.write(tmp_path / "p.h5")
    q = Predictions.read(tmp_path / "p.h5")
    assert list(q.obs_names) == ["a", "b", "c"]
    np.testing.assert_allclose(q.embeddings["rna"], p.embeddings["rna"], rtol=1e-6)
    # wide ATAC-like targets are stored as float16
    np.testing.assert_allclose(q.imputations[("rna", "atac")], p.imputations[("rna", "atac")], atol=1e-3)
    assert q.info == {"shared_dims": [0, 1]} and not q.failed
    f = Predictions(["a"], failure={"reason": "nan_loss", "epoch": 3, "log": "x.log"})
    f.write(tmp_path / "f.h5")
    assert Predictions.read(tmp_path / "f.h5").failure["reason"] == "nan_loss"
