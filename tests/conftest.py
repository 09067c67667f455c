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
