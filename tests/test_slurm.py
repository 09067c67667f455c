"""The SLURM profile against a real SLURM cluster (start one with `.ci/slurm/setup.sh`).

Runs workflows with `--profile workflow/profiles/slurm --profile workflow/profiles/slurm-ci`
and checks that every job went through sbatch: each job's submission line in snakemake's log
("Job N has been submitted with SLURM jobid M"), and slurmctld's own record of the run
(`squeue --states=all`, kept for MinJobAge) with one COMPLETED SLURM job per snakemake job,
per rule. Results must equal a local run of the same workflow.

Without SLURM client tools or a running cluster, the `slurm` tests skip with the reason; set
DMMVAE_REQUIRE_SLURM=1 (CI does, once setup.sh succeeded) to make that a failure instead.
The profile checks in the first test need no cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _workflow import workflow_copy

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "workflow" / "profiles"
SLURM_PROFILES = [
    "--profile", str(PROFILES / "slurm"),
    "--profile", str(PROFILES / "slurm-ci"),
]  # fmt: skip
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--workflow-profile", "none"]
CI_PARTITION = yaml.safe_load((PROFILES / "slurm-ci" / "config.yaml").read_text())[
    "default-resources"
]["slurm_partition"]
# Rules snakemake runs itself, never submitted: the target rule.
LOCAL_RULES = {"all"}
# Metrics that measure the machine rather than the model (differ between any two runs).
MACHINE_METRICS = re.compile(r"time|second|runtime|duration|rss|memory|peak_mem", re.I)

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
RUN_ID = re.compile(r"SLURM run ID: (\S+)")

# A throwaway workflow: train_model per sample (needs 600 MB: the first attempt asks for
# 300 MB, fails like an out-of-memory kill, and the retry must ask SLURM for 600 MB) -> table.
TOY_SNAKEFILE = r"""
SAMPLES = ["a", "b"]


def get_train_mem_mb(wildcards, attempt):
    return 300 * attempt


rule all:
    input: "results/summary.csv"


rule train_model:
    output: "results/train/{sample}.txt"
    log: "results/logs/train_model/{sample}.log"
    threads: 4
    resources: gpu=1, mem_mb=get_train_mem_mb, runtime=2
    shell:
        "echo slurm_job=${{SLURM_JOB_ID:-none}} mem_mb={resources.mem_mb} "
        "threads={threads} > {log}; "
        "test {resources.mem_mb} -ge 600; "
        "python3 -c \"import random; r = random.Random('{wildcards.sample}'); "
        "print(repr(sum(r.random() for _ in range(1000))))\" > {output}"


rule aggregate_results:
    input: expand("results/train/{sample}.txt", sample=SAMPLES)
    output: "results/summary.csv"
    log: "results/logs/aggregate_results.log"
    shell: "paste -d, {input} > {output} 2> {log}"
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("DMMVAE_REQUIRE_SLURM") == "1":
        pytest.fail(f"DMMVAE_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster() -> str:
    """Name of the up node of the CI partition; skips (or fails, see above) without one."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        _unavailable(
            "SLURM client tools (sinfo, sbatch) not found: start a single-node cluster with "
            "`sudo .ci/slurm/setup.sh` (Debian/Ubuntu, root) to run the SLURM tests"
        )
    try:
        res = subprocess.run(
            ["sinfo", "-h", "-N", "-p", CI_PARTITION, "-o", "%N %t"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        _unavailable("sinfo did not answer within 30 s: slurmctld is not responding")
    up = [
        line.split()[0]
        for line in res.stdout.splitlines()
        if line.split()[1].rstrip("*~#$@^-") in ("idle", "mix", "alloc", "comp")
    ] if res.returncode == 0 else []  # fmt: skip
    if not up:
        _unavailable(
            f"SLURM cluster not up: `sinfo -p {CI_PARTITION}` gives "
            f"{(res.stdout + res.stderr).strip()!r} (start it with `sudo .ci/slurm/setup.sh`)"
        )
    return up[0]


def run_snakemake(cwd: Path, *args: str, timeout: int = 1200) -> str:
    """Run snakemake in `cwd`; return its log (stdout + stderr); fail the test on error."""
    res = subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    log = res.stdout + res.stderr
    assert res.returncode == 0, f"snakemake {' '.join(args)} failed:\n{log[-8000:]}"
    return log


def job_counts(log: str) -> Counter:
    """Jobs per rule from the 'Job stats' table snakemake prints when it starts."""
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = Counter()
    for line in table.splitlines()[3:]:
        name, _, count = line.strip().rpartition(" ")
        if name.strip() and name.strip() != "total":
            counts[name.strip()] = int(count)
    return counts


def squeue_jobs(run_id: str) -> dict[str, tuple[str, str, str]]:
    """slurmctld's record of one snakemake run: {SLURM id: (state, comment, memory)}."""
    res = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%k|%m"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return {
        i: (state, comment, mem)
        for i, state, comment, mem in (line.split("|") for line in res.stdout.split())
    }


def assert_every_job_went_through_sbatch(log: str) -> dict[str, tuple[str, str, str]]:
    """Every non-local job of the run was submitted with sbatch (one SLURM id per submission,
    retries included) and finished COMPLETED according to slurmctld. Returns squeue's record."""
    expected = job_counts(log)
    expected_remote = {r: n for r, n in expected.items() if r not in LOCAL_RULES}
    assert expected_remote, f"no job to submit:\n{log[-3000:]}"
    submissions = SUBMITTED.findall(log)
    slurm_ids = [s for _, s in submissions]
    assert len(slurm_ids) == len(set(slurm_ids)), f"a SLURM id was reported twice: {submissions}"
    # one snakemake job id per job, each submitted at least once
    assert len({j for j, _ in submissions}) == sum(expected_remote.values()), (
        f"{len({j for j, _ in submissions})} jobs submitted, expected {expected_remote}"
    )
    (run_id,) = set(RUN_ID.findall(log))
    record = squeue_jobs(run_id)
    assert set(slurm_ids) == set(record), (
        f"snakemake reported SLURM ids {sorted(slurm_ids)}, slurmctld knows {sorted(record)}"
    )
    completed = Counter()
    for state, comment, _ in record.values():
        if state == "COMPLETED":
            rule = next(
                r for r in expected_remote if re.match(rf"rule_{r}(_wildcards_|$)", comment)
            )
            completed[rule] += 1
        else:
            assert state == "FAILED", f"unexpected SLURM state {state} ({comment})"
    assert completed == Counter(expected_remote), (
        f"COMPLETED SLURM jobs per rule {dict(completed)} != snakemake's jobs {expected_remote}"
    )
    return record


def test_profiles_are_valid_and_ci_overlay_only_swaps_resources(tmp_path):
    """Every key of the profiles is an option snakemake knows (a typo fails the dry run), the
    user profile asks for a GPU for training, and the CI overlay removes it."""
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    user = run_snakemake(tmp_path, "-n", "--profile", str(PROFILES / "slurm"))
    train = re.findall(r"rule train_model:.*?resources: ([^\n]*)", user, flags=re.S)
    assert len(train) == 2 and all("gpu=1" in r and "cpus_per_gpu=4" in r for r in train), train
    assert all("slurm_partition=your_gpu_partition" in r for r in train), train
    assert "slurm_account=your_account" in user
    ci = run_snakemake(tmp_path, "-n", *SLURM_PROFILES)
    train = re.findall(r"rule train_model:.*?resources: ([^\n]*)", ci, flags=re.S)
    assert train and all("gpu=0" in r and f"slurm_partition={CI_PARTITION}" in r for r in train)
    assert "slurm_account" not in ci and "your_" not in ci
    local = run_snakemake(tmp_path, "-n", "--profile", str(PROFILES / "default"))
    assert "gpu=1" in local and "slurm_" not in local


@pytest.mark.slurm
def test_toy_workflow_goes_through_sbatch_and_matches_local(tmp_path, slurm_cluster):
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    for d in (local, cluster):
        d.mkdir()
        (d / "Snakefile").write_text(TOY_SNAKEFILE)
    run_snakemake(local, "--cores", "1", "--retries", "1", "--set-resources", "train_model:gpu=0")
    log = run_snakemake(cluster, *SLURM_PROFILES, timeout=600)

    record = assert_every_job_went_through_sbatch(log)
    # retries with more memory: each train_model job failed once with 300 MB, then
    # SLURM ran it with 600 MB (the sbatch --mem request reached slurmctld)
    train = sorted((c, s, m) for s, c, m in record.values() if c.startswith("rule_train_model"))
    assert [(s, m) for _, s, m in train] == [("COMPLETED", "600M"), ("FAILED", "300M")] * 2
    for sample in ("a", "b"):
        job_log = (cluster / f"results/logs/train_model/{sample}.log").read_text()
        slurm_id = re.search(r"slurm_job=(\d+)", job_log)
        assert slurm_id and record[slurm_id.group(1)][0] == "COMPLETED", job_log
        assert "mem_mb=600 threads=1" in job_log, job_log  # max-threads 1 in the CI overlay
        # the plugin's own log of that job, kept where the profile says
        slurm_log = cluster / f"results/logs/slurm/rule_train_model/{sample}/{slurm_id[1]}.log"
        assert slurm_log.exists(), sorted((cluster / "results/logs/slurm").rglob("*"))
    assert (local / "results/summary.csv").read_text() == (
        cluster / "results/summary.csv"
    ).read_text()


def _metrics_table(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    if {"metric", "value"} <= set(table.columns):
        table = table[~table["metric"].astype(str).str.contains(MACHINE_METRICS)]
    else:
        table = table.drop(columns=[c for c in table.columns if MACHINE_METRICS.search(c)])
    keys = [c for c in table.columns if not pd.api.types.is_float_dtype(table[c])]
    return table.sort_values(keys).reset_index(drop=True)


@pytest.mark.slurm
@pytest.mark.slow
def test_test_config_through_slurm_matches_local_run(tmp_path, slurm_cluster, tiny_run):
    """The real workflow on config/test.yaml: every job through sbatch, same metrics as the
    local run of it (one thread per job, like the CI profile)."""
    local, res = tiny_run
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    cluster = workflow_copy(tmp_path / "slurm")
    log = run_snakemake(cluster, *SLURM_PROFILES, "--configfile", "config/test.yaml")

    assert_every_job_went_through_sbatch(log)
    ours = _metrics_table(cluster / "results/summary/metrics.csv")
    ref = _metrics_table(local / "results/summary/metrics.csv")
    assert len(ref) > 0
    floats = [c for c in ref.columns if pd.api.types.is_float_dtype(ref[c])]
    pd.testing.assert_frame_equal(ours.drop(columns=floats), ref.drop(columns=floats))
    for col in floats:
        np.testing.assert_allclose(
            ours[col].to_numpy(), ref[col].to_numpy(), rtol=1e-5, atol=1e-8, equal_nan=True,
            err_msg=f"column {col}: SLURM run differs from the local run",
        )  # fmt: skip
