"""The benchmark scripts still run and print their tables (tiny sizes; figures not judged).

The scripts print figures for the README (see benchmarks/README.md); a figure is never asserted
against a time limit here. What is asserted: each script runs end to end on a small synthetic
input and prints a row per case with values in their ranges, so the benchmarks cannot rot
silently between the sessions that quote them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> list[list[str]]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # rows of the table: the lines after the dashed rule under the header
    rule = next(i for i, ln in enumerate(lines) if ln.startswith("---"))
    return [ln.split() for ln in lines[rule + 1 :] if ln.strip()]


def test_bench_training_prints_throughput_and_foscttm(tmp_path):
    # the scvi-tools reference row runs where scvi-tools is installed (`make test` installs it)
    have_scvi = importlib.util.find_spec("scvi") is not None
    rows = _run(
        "bench_training.py",
        "--cells", "400", "--epochs", "3", "--data", "adt", "--models", "mvae",
        "--amp", "none", "--cache", str(tmp_path),
    )  # fmt: skip
    expected = [["adt", "totalvi", "none"]] * have_scvi + [["adt", "mvae", "none"]]
    assert [r[:3] for r in rows] == expected
    ours = rows[-1]
    cells_per_s, foscttm_pair = float(ours[3]), float(ours[-2])
    assert cells_per_s > 0 and 0.0 <= foscttm_pair <= 1.0
    if have_scvi:
        assert float(ours[4]) > 0  # speed-up against the reference of the same run


def test_bench_step_profile_splits_the_step(tmp_path):
    rows = _run(
        "bench_step_profile.py",
        "--cells", "400", "--steps", "2", "--data", "adt", "--models", "mvae,mmvae",
        "--amp", "none", "--cache", str(tmp_path),
    )  # fmt: skip
    assert [r[:2] for r in rows] == [["adt", "mvae"], ["adt", "mmvae"]]
    for r in rows:
        step_ms, matmul_ms, share = float(r[3]), float(r[5]), float(r[6])
        assert 0 < matmul_ms < step_ms and 0 < share < 1


def test_bench_input_layer_times_every_form():
    rows = _run("bench_input_layer.py", "--repeats", "1")
    assert [int(r[0]) for r in rows] == [2000, 8000, 108000]
    for r in rows:
        assert all(float(v) > 0 for v in r[2:6])


def test_sweep_label_signal_reads_train_cells_only():
    """The sweep's label-transfer signal (bench_dmmvae_sweep.py, the "anchors+labels" rule) is
    computed from TRAIN cells: scrambling every test cell's data and label leaves it unchanged;
    for a trained model it beats the same model with its train labels shuffled."""
    import numpy as np
    from _synthetic import scenario

    from dmmvae.constants import LABEL, SPLIT, TEST
    from dmmvae.methods import build_model

    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    sc = scenario(kind="paired", n_cells=400)
    model = build_model("dmmvae", {"n_hidden": 32, "n_latent": 8})
    model.fit(sc, seed=0, training={"max_epochs": 15, "batch_size": 128, "progress_bar": False})
    lt = sweep.train_label_transfer(model, sc)

    test = np.flatnonzero(sc.obs[SPLIT].to_numpy() == TEST)
    scrambled = sc.copy()
    rng = np.random.default_rng(0)
    labels = scrambled.obs[LABEL].astype(str).to_numpy()
    labels[test] = rng.permutation(labels[test])
    scrambled.obs[LABEL] = labels
    for a in scrambled.mod.values():
        x = a.layers["counts"].tolil()
        x[test] = x[rng.permutation(test)]
        a.layers["counts"] = x.tocsr()
    assert sweep.train_label_transfer(model, scrambled) == lt

    shuffled = sc.copy()
    shuffled.obs[LABEL] = rng.permutation(shuffled.obs[LABEL].astype(str).to_numpy())
    chance = sweep.train_label_transfer(model, shuffled)
    print(f"train label transfer {lt:.3f}, labels shuffled {chance:.3f}")
    assert lt > chance + 0.2


def test_sweep_rule_weighs_each_dataset_equally_over_its_seeds():
    """A grid asked over several seeds: the rule averages each dataset's seeds first, so a
    dataset run on three seeds does not outweigh one run on a single seed."""
    import pandas as pd

    sys.path.insert(0, str(BENCH))
    import bench_dmmvae_sweep as sweep

    def row(config, dataset, seed, anchors, labels):
        return {"config": config, "dataset": dataset, "seed": seed,
                "validation_anchor_foscttm": anchors, "train_label_transfer": labels}

    rows = pd.DataFrame([
        # "a" is better on the dataset with three seeds, "b" by more on the one with a single seed
        *[row(c, "three", s, 0.30 if c == "a" else 0.34, 0.5) for c in "ab" for s in range(3)],
        row("a", "one", 0, 0.40, 0.5), row("b", "one", 0, 0.34, 0.5),
    ])
    table = sweep.rank(rows, "anchors")
    # per dataset first: a 0.35, b 0.34; pooled rows would rank "a" first (0.325 vs 0.34)
    assert list(table.index) == ["b", "a"]
    assert table.loc["b", "rule"] == pytest.approx(0.34)
    both = sweep.rank(rows, "anchors+labels")
    assert both.loc["a", "rule"] == pytest.approx((0.30 + 0.40) / 2 + 0.5)
