"""Tune the reference methods by the rule D-MMVAE's settings were chosen by (PROTOCOL "Choosing
settings (blind)"), so that no method is tuned and the others not.

Each stand-in's diagonal scenario passes through :func:`dmmvae.selection.train_only` first: the
test cells are dropped, so this script cannot compute a test-cell number. Every configuration of
the method's grid (its authors' recipe first, then the arguments its authors document) is fitted
on the train cells less the training loop's held-back cells and scored by
:func:`dmmvae.selection.heldback_signals` (anchor FOSCTTM among the held-back cells, label
transfer among the train cells); the rule ``anchors+labels`` (D-MMVAE's) ranks them over the same
four stand-ins, each dataset's seeds averaged first. A run resumes: a (configuration, stand-in,
seed) already in ``--out`` is skipped. The report is printed and, for the default ``--out``,
written as ``reference_sweep_<method>.md`` (the ranking, each row's rule value per stand-in and
seed, the rows still to run).

Usage::

    python benchmarks/bench_reference_sweep.py --method seurat_v3            # seed 0
    python benchmarks/bench_reference_sweep.py --method maxfuse --seed 1
    python benchmarks/bench_reference_sweep.py --method glue --only 2 --device cuda
    python benchmarks/bench_reference_sweep.py --method seurat_v3 --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _common import one_thread_per_fit

one_thread_per_fit()  # before numpy loads

import pandas as pd  # noqa: E402
from _common import ROOT, SELECTION_DATASETS, configurations, diagonal_scenario  # noqa: E402

from dmmvae.config import load_config  # noqa: E402
from dmmvae.io import atomic_path, write_text  # noqa: E402
from dmmvae.methods.baselines.seurat_v3 import SeuratV3  # noqa: E402
from dmmvae.selection import (  # noqa: E402
    RULES,
    collapsed,
    common_cells,
    expected_best,
    heldback_signals,
    incomplete,
    rank,
    train_only,
)

CONFIG = ROOT / "config" / "diagonal.yaml"
RULE = "anchors+labels"
#: per method, the configurations asked: ``{}`` is the authors' recipe (the method's defaults,
#: docs/recipes.md), then the product of the arguments the authors document as the ones to set
SEURAT_AXES = {"dims": [30, 10, 20, 50], "k_anchor": [5, 10, 20], "k_filter": [200, 100],
               "k_weight": [100, 50]}
#: Seurat v3's own values of the arguments its grid varies
SEURAT_RECIPE = {k: SeuratV3.DEFAULTS[k] for k in SEURAT_AXES}
SEURAT_GRID = configurations(SEURAT_AXES)
MAXFUSE_GRID = {"init_wt,refine_wt": [(0.3, 0.3), (0.5, 0.5), (0.7, 0.7)],
                "filter_prop": [0.1, 0.3, 0.4]}
GRIDS: dict[str, list[dict]] = {
    # Seurat v3 FindIntegrationAnchors / IntegrateData: dims (1:30), k.anchor (5), k.filter
    # (200), k.weight (100), then the same with the weights' kernel twice as wide (sd.weight 2)
    "seurat_v3": [{}, *[c for c in SEURAT_GRID if c != SEURAT_RECIPE],
                  *[{**c, "sd_weight": 2.0} for c in SEURAT_GRID]],
    # MaxFuse: its recipes per modality pair ({}), then one setting for every pair: the
    # smoothing weight of the initial and refined matching (wt) and the share of matches
    # filtered, over the values of the authors' notebooks (0.3-0.7, 0.1-0.4), refinement
    # iterations and matching ratio at the pair's recipe; then the same with the iterations
    # (1 / 3 / 8) and the matching ratio (3 / 4 / 5) of their notebooks set too
    "maxfuse": [{}, *configurations(MAXFUSE_GRID),
                *configurations({**MAXFUSE_GRID, "n_iters": [1, 3, 8],
                                 "matching_ratio": [3, 4, 5]})],
    # GLUE (scglue 0.4.1): the alignment weight and the latent width, GLUE's robustness study's
    # axes (its defaults: lam_align 0.05, latent_dim 50); then one step below and above each
    # default of its other network and loss settings (h_depth 2, h_dim 256, dropout 0.2,
    # lam_graph 0.02), one at a time; 7-35 min per fit on a core
    "glue": [{}, {"lam_align": 0.02}, {"lam_align": 0.2}, {"latent_dim": 32},
             {"h_depth": 1}, {"h_depth": 3}, {"h_dim": 128}, {"h_dim": 512},
             {"dropout": 0.1}, {"dropout": 0.3}, {"lam_graph": 0.005}, {"lam_graph": 0.08}],
}


def out_path(method: str) -> Path:
    return Path(__file__).parent / "results" / f"reference_sweep_{method}.csv"


#: the seeds every grid is asked on (D-MMVAE's and the references')
SEEDS = (0, 1, 2)
#: configurations planned on fewer seeds: MaxFuse's 81 of the iterations x matching ratio stage
#: (1 min per SNARE-seq fit, asked on seed 0 only)
PLANNED_SEEDS: dict[str, dict[int, tuple[int, ...]]] = {
    "maxfuse": {i: (0,) for i in range(10, len(GRIDS["maxfuse"]))}}


def _by_seeds(plan: dict[int, tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    out: dict[tuple[int, ...], list[int]] = {}
    for i, seeds in plan.items():
        out.setdefault(seeds, []).append(i)
    return out


def planned_cells(method: str) -> list[tuple[int, str, int]]:
    """(configuration number, stand-in, seed) of every row the grid plans: each configuration
    on the selection stand-ins and :data:`SEEDS` (or its :data:`PLANNED_SEEDS`)."""
    plan = PLANNED_SEEDS.get(method, {})
    return [(i, d, s) for s in SEEDS for d in SELECTION_DATASETS
            for i in range(len(GRIDS[method])) if s in plan.get(i, SEEDS)]


def missing_rows(method: str, scored: pd.DataFrame) -> list[tuple[int, str, int]]:
    """:func:`planned_cells` of the grid not yet in ``scored``."""
    have = set(zip(scored["config"], scored["dataset"], scored["seed"].astype(int), strict=True))
    keys = [json.dumps(c, sort_keys=True) for c in GRIDS[method]]
    return [(i, d, s) for i, d, s in planned_cells(method) if (keys[i], d, s) not in have]


def spans(numbers: list[int]) -> str:
    """Sorted integers as ranges: [0, 1, 2, 5] -> "0-2, 5"."""
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def ranked_rows(method: str, scored: pd.DataFrame) -> pd.DataFrame:
    """The rows the rule ranks: those of the configurations that hold every row the grid plans
    for them (:func:`planned_cells`), so a configuration added to a finished grid enters the
    ranking, and can change the choice, only once its rows are all in; among them the
    (stand-in, seed) cells every one holds (:func:`~dmmvae.selection.common_cells`). While no
    configuration is complete, every row, on the cells every configuration holds."""
    missing = {json.dumps(GRIDS[method][i], sort_keys=True)
               for i, _, _ in missing_rows(method, scored)}
    complete = scored[~scored["config"].isin(missing)]
    return common_cells(complete if len(complete) else scored)


def ranking(method: str, scored: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rule's ranking of :func:`ranked_rows` (column ``position`` from 1), and the lines
    saying which rows it leaves out: cells not every ranked configuration holds, and the
    configurations whose planned rows are not all in yet."""
    common = ranked_rows(method, scored)
    table = rank(common, RULE)
    table.insert(1, "position", range(1, len(table) + 1))
    waiting = sorted(set(scored["config"]) - set(common["config"]))
    notes = [incomplete(scored[scored["config"].isin(common["config"])], common)]
    if waiting:
        notes.append(f"not ranked until their planned rows are all in: {len(waiting)} "
                     "configuration(s), " + ", ".join(f"`{c}`" for c in waiting))
    return table, "; ".join(n for n in notes if n)


def sweep_markdown(method: str, scored: pd.DataFrame) -> str:
    """The sweep's report page (``reference_sweep_<method>.md``): the rule's ranking, each
    row's rule value per (stand-in, seed), and the rows still to run."""
    table, note = ranking(method, scored)
    value = RULES[RULE](scored.set_index(["config", "dataset", "seed"]))
    cells = value.rename("rule").reset_index()
    cells["cell"] = cells["dataset"] + " s" + cells["seed"].astype(str)
    wide = cells.pivot_table(index="config", columns="cell", values="rule", aggfunc="first")
    wide = wide.reindex(index=table.index.union(wide.index, sort=False)).map(
        lambda v: "—" if pd.isna(v) else f"{v:.3f}")
    ranked = table.reset_index()[["config", "position", "rule", *[
        c for c in ("validation_anchor_foscttm", "train_label_transfer") if c in table]]]
    missing = missing_rows(method, scored)
    total = len(planned_cells(method))
    fewer = "".join(f" ({len(ids)} of them on seed(s) {', '.join(map(str, seeds))} only)"
                    for seeds, ids in _by_seeds(PLANNED_SEEDS.get(method, {})).items())
    lines = [f"# `{method}`: tuning sweep by the blind rule `{RULE}`", "",
             f"Train cells only (`benchmarks/bench_reference_sweep.py`, rows in "
             f"`{out_path(method).name}`); lower is better: held-back anchor FOSCTTM + 1 - train "
             f"label transfer. {len(GRIDS[method])} configurations asked on "
             f"{len(SELECTION_DATASETS)} stand-ins x seeds {', '.join(map(str, SEEDS))}"
             f"{fewer}: {total - len(missing)} of {total} planned rows done.", "",
             "## Ranking", "", note or "Every configuration holds every (stand-in, seed) cell.",
             "", ranked.to_markdown(index=False, floatfmt=".4f"), "",
             f"Chosen: `{table.index[0]}` (run by the diagonal benchmark as `{method}_tuned`).",
             "", "## The rule's value per row", "",
             wide.reset_index().to_markdown(index=False, disable_numparse=True),
             ""]
    if missing:
        lines += ["## Rows still to run", "",
                  "Each line runs one stand-in and seed; `--only N` runs configuration N alone.",
                  "", "| stand-in | seed | configurations (numbers in the grid) |", "|---|---|---|"]
        todo: dict[tuple[str, int], list[int]] = {}
        for i, d, s in missing:
            todo.setdefault((d, s), []).append(i)
        lines += [f"| {d} | {s} | {spans(idx)} |" for (d, s), idx in todo.items()]
        lines += ["", "`python benchmarks/bench_reference_sweep.py --method "
                  f"{method} --datasets <stand-in> --seed <seed> [--only N]`", ""]
    return "\n".join(lines)


#: the tuning sweeps' rows: D-MMVAE's grids (first asked and asked again) and each reference's
SWEEP_FILES = {"dmmvae": ("dmmvae_sweep*.csv", "dmmvae_reask_*.csv"),
               "reference": ("reference_sweep_*.csv",)}


def tuning_compute(results: Path) -> pd.DataFrame:
    """Per method, what its tuning sweeps cost: the fits they ran (rows copied from another
    grid, marked in ``source``, not counted) and those fits' training hours, all and on a GPU
    (``device`` names cuda; a row without a device column is counted as not on a GPU)."""
    parts = []
    for kind, patterns in SWEEP_FILES.items():
        for pattern in patterns:
            for path in sorted(results.glob(pattern)):
                rows = pd.read_csv(path)
                if "train_seconds" not in rows:
                    continue  # a summary page, not fits
                if "source" in rows:
                    rows = rows[rows["source"].isna()]
                method = "dmmvae" if kind == "dmmvae" else path.stem[len("reference_sweep_"):]
                device = rows["device"].astype(str) if "device" in rows else pd.Series(
                    "", index=rows.index)
                parts.append(pd.DataFrame({
                    "method": method, "seconds": rows["train_seconds"].astype(float),
                    "gpu": device.str.contains("cuda").to_numpy()}))
    fits = pd.concat(parts, ignore_index=True)
    out = fits.groupby("method").agg(fits=("seconds", "size"),
                                     hours=("seconds", lambda s: s.sum() / 3600))
    out["gpu_hours"] = fits[fits["gpu"]].groupby("method")["seconds"].sum().reindex(
        out.index, fill_value=0.0) / 3600
    return out.sort_values("hours", ascending=False)


def tuning_compute_markdown(results: Path) -> str:
    """``tuning_compute.md``: :func:`tuning_compute` as a table, with how to read it."""
    table = tuning_compute(results).reset_index()
    return "\n".join([
        "# Tuning compute per method", "",
        "Fits run by each method's tuning sweeps (train cells only, the blind rule; rows copied "
        "between grids counted once) and their summed training time, from the committed sweep "
        "CSVs (`dmmvae_sweep*.csv`, `dmmvae_reask_*.csv`, `reference_sweep_<method>.csv`). Most "
        "fits shared a 2-core machine with other runs, so the hours are wall time on a busy "
        "core, not timings; written by `bench_reference_sweep.py --report-only`.", "",
        table.to_markdown(index=False, floatfmt=".1f"), ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=sorted(GRIDS), required=True)
    ap.add_argument("--datasets", nargs="+", default=SELECTION_DATASETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None,
                    help="default: benchmarks/results/reference_sweep_<method>.csv")
    ap.add_argument("--only", type=int, default=None,
                    help="run only the grid's configuration of this number (0-based)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default) or cuda, for the methods that train on a device (GLUE); "
                         "the row's device column says which")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--report-seeds", nargs="+", type=int, default=None,
                    help="rank on these seeds' rows only (default: every seed in --out; a "
                         "grid still running is ranked on the (stand-in, seed) cells every "
                         "configuration holds)")
    args = ap.parse_args()
    out = args.out or out_path(args.method)
    if not args.report_only:
        from dmmvae.methods import build_model

        os.chdir(ROOT)
        config = load_config(CONFIG)
        rows = pd.read_csv(out).to_dict("records") if out.exists() else []
        done = {(r["config"], r["dataset"], int(r["seed"])) for r in rows}
        todo = GRIDS[args.method]
        if args.only is not None:
            todo = [todo[args.only]]
        for name in args.datasets:
            # the one door: train cells only, the test cells are not in memory from here on
            sc = train_only(diagonal_scenario(config, name, args.seed))
            for params in todo:
                key = json.dumps(params, sort_keys=True)
                if (key, name, args.seed) in done:
                    continue
                t0 = time.perf_counter()
                signals = heldback_signals(build_model(args.method, params), sc,
                                           config["training"], args.seed, device=args.device)
                rows.append({"config": key, "dataset": name, "seed": args.seed, **signals,
                             "train_seconds": time.perf_counter() - t0,
                             "device": args.device})
                print(rows[-1], flush=True)
                with atomic_path(out) as tmp:
                    pd.DataFrame(rows).to_csv(tmp, index=False)
    scored = pd.read_csv(out)
    if args.report_seeds is not None:
        scored = scored[scored["seed"].isin(args.report_seeds)]
    table, note = ranking(args.method, scored)
    print(table.round(4).to_string())
    print(collapsed(scored))
    if note:
        print(f"\n{note}")
    recipe = json.dumps({})
    where = (f"the recipe ranks {int(table.loc[recipe, 'position'])} of {len(table)}"
             if recipe in table.index else "")
    print(f"\nchosen by the rule '{RULE}' (lowest mean): {table.index[0]}; {where}")
    if args.report_seeds is None and out == out_path(args.method):
        page = out.with_suffix(".md")
        write_text(page, sweep_markdown(args.method, scored))
        compute = out.parent / "tuning_compute.md"
        write_text(compute, tuning_compute_markdown(out.parent))
        print(f"written: {page}, {compute}")
    budgets = [k for k in (1, 4, 16) if k < len(table)] + [len(table)]
    print("expected best rule score at k configurations drawn at random (Dodge et al. 2019): "
          + ", ".join(f"k={k} {expected_best(table['rule'], k):.4f}" for k in budgets))


if __name__ == "__main__":
    main()
