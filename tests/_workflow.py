"""Helpers of the workflow tests: a copy of the workflow in a temporary folder, snakemake run in
it, and the one local run of ``config/test.yaml`` that several tests read (``conftest.tiny_run``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
#: the local run of config/test.yaml: one thread per job, as the SLURM CI profile runs them, so
#: the SLURM test can compare its metrics with this run's
TINY_RUN_ARGS = ("--cores", "2", "--max-threads", "1", "--configfile", "config/test.yaml")


def workflow_copy(dest: Path) -> Path:
    """A copy of the workflow (not results/) so tests never touch the user's checkout."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "config", "envs", "src", "pyproject.toml"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / item)
    return dest


def snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
