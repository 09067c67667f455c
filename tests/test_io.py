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


def test_job_log_captures_output_and_freezes_gc_only_on_success(tmp_path):
    """A workflow job's block: its output lands in the log; on success the garbage collector is
    frozen for the process's exit (fast shutdown), on failure the traceback is logged and
    nothing is frozen. Run in a subprocess: freezing pytest's own collector would leak."""
    import subprocess
    import sys

    code = (
        "import gc, sys\n"
        "from dmmvae.logging_utils import job_log\n"
        "ok = sys.argv[2] == 'ok'\n"
        "try:\n"
        "    with job_log(sys.argv[1]) as log:\n"
        "        print('hello from the job'); log.info('logged line')\n"
        "        if not ok: raise ValueError('bad input')\n"
        "except ValueError:\n"
        "    pass\n"
        "print(gc.get_freeze_count())\n"
    )
    for mode in ("ok", "fail"):
        log = tmp_path / f"{mode}.log"
        out = subprocess.run([sys.executable, "-c", code, str(log), mode], capture_output=True,
                             text=True, check=True).stdout
        text = log.read_text()
        assert "hello from the job" in text and "logged line" in text
        if mode == "ok":
            assert int(out) > 1000  # every object alive at the end of the job
        else:
            assert int(out) == 0 and "ValueError: bad input" in text
