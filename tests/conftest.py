"""Shared fixtures. Tests that need ../shared/data skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DMMVAE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small models on 2-core machines: one torch thread avoids oversubscription (and makes
    CPU results independent of the machine's core count)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "SHA256SUMS").exists():
        pytest.skip(
            f"real stand-in data not found at {SHARED_DATA} (the ../shared/data folder of the "
            "development machines); set DMMVAE_SHARED_DATA to use another copy"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One local run of config/test.yaml, shared by the end-to-end test and the SLURM test
    (which compares its cluster run with it): ``(workflow folder, completed process)``.

    Runs once per pytest session, also under pytest-xdist (``make test``): the first worker to
    ask runs it under a file lock in the folder all workers share; the others wait for it and
    read its result (pytest-xdist's recipe for a session fixture that must run once)."""
    import fcntl
    import json
    import subprocess

    from _workflow import TINY_RUN_ARGS, snakemake, workflow_copy

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the basetemp shared by the workers
    wf, record = root / "tiny_run", root / "tiny_run.json"
    with open(root / "tiny_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            res = snakemake(workflow_copy(wf), *TINY_RUN_ARGS)
            record.write_text(json.dumps([res.args, res.returncode, res.stdout, res.stderr]))
    args, code, out, err = json.loads(record.read_text())
    return wf, subprocess.CompletedProcess(args, code, out, err)
