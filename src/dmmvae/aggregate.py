"""Aggregate per-run metric tables into the one tidy table and rank the methods.

Data flow (one way): :mod:`dmmvae.evaluate` -> this module (reading; ranking in
:mod:`dmmvae.ranking`) -> :mod:`dmmvae.tables` (comparison tables, ``summary.md``) and
:mod:`dmmvae.plots` -> :mod:`dmmvae.report` (which writes ``results/summary``). Which metrics exist, their family, direction and summary row, and whether they are
ranked all come from the metric registry :data:`dmmvae.metrics.METRICS`.

The rule hands :func:`aggregate` a list of runs (:class:`RunFiles`: the wildcards dataset,
scenario, model, seed and the run's file paths); nothing is parsed from paths.
``metrics.csv`` (columns ``dataset, scenario, model, seed, metric, value, reason, note``) is the
one table everything else is derived from. Cost rows come from Snakemake's ``benchmark:``
files: ``train_seconds``, ``train_max_rss_mb`` (train_model), ``eval_seconds``,
``eval_max_rss_mb`` (evaluate_model); ``epochs`` comes from each run's evaluation.

Ranking: see :data:`dmmvae.ranking.RANKING_RULE` (written beside every ranking table).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from .io import InputError
from .ranking import rank_models, resolve_weights

KEYS = ["dataset", "scenario", "model", "seed"]
COLUMNS = [*KEYS, "metric", "value", "reason", "note"]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunFiles:
    """One run as the rule hands it over: its wildcards and the paths of its files."""

    dataset: str
    scenario: str
    model: str
    seed: int
    metrics: str
    train_benchmark: str | None = None
    eval_benchmark: str | None = None
    history: str | None = None
    predictions: str | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.dataset, self.scenario, self.model, self.seed)

    @classmethod
    def of(cls, item: RunFiles | Mapping[str, Any]) -> RunFiles:
        """A RunFiles from itself or a mapping with its field names (ValueError otherwise)."""
        if isinstance(item, RunFiles):
            return item
        names = [f.name for f in fields(cls)]
        if not isinstance(item, Mapping):
            raise ValueError(f"a run must be a mapping with keys {names}, got {item!r}")
        unknown = sorted(set(item) - set(names))
        missing = [k for k in (*KEYS, "metrics") if k not in item]
        if unknown or missing:
            raise ValueError(f"run {dict(item)!r}: unknown key(s) {unknown}, missing key(s) "
                             f"{missing}; a run has keys {names}")
        rec = {k: (None if item.get(k) is None else str(item[k])) for k in names if k in item}
        rec["seed"] = int(item["seed"])
        return cls(**rec)


def as_runs(runs: Iterable[RunFiles | Mapping[str, Any]]) -> list[RunFiles]:
    out = [RunFiles.of(r) for r in runs]
    seen: set[tuple] = set()
    for r in out:
        if r.key in seen:
            raise ValueError(f"run {r.key} is listed twice")
        seen.add(r.key)
    return out


def _read_csv(path: str, what: str, rule: str, **kw) -> pd.DataFrame:
    if not os.path.exists(path):
        raise InputError(f"{path}: {what} not found; run {rule} for this run")
    try:
        return pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError as err:
        raise InputError(f"{path}: empty {what}; delete it and rerun {rule}") from err


def read_metric_csvs(runs: Iterable[RunFiles | Mapping[str, Any]]) -> pd.DataFrame:
    """Concatenate the per-run metric CSVs (:func:`dmmvae.evaluate.evaluate_run`); each must
    hold exactly its run's rows."""
    frames = []
    for run in as_runs(runs):
        path = run.metrics
        df = _read_csv(path, "metrics file", "evaluate_model", keep_default_na=True,
                       dtype={"reason": str, "note": str})
        missing = [c for c in (*KEYS, "metric", "value") if c not in df]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {missing} (has {list(df.columns)}); it is not a "
                "metrics file written by evaluate_model — delete it and rerun"
            )
        keys = {tuple(k) for k in df[KEYS].astype(str).drop_duplicates().to_numpy()}
        if keys - {tuple(map(str, run.key))}:
            raise InputError(
                f"{path}: holds rows of run(s) {sorted(keys)} but was listed for run "
                f"{run.key}; delete it and rerun evaluate_model"
            )
        for col in ("reason", "note"):
            if col not in df:
                df[col] = ""
        frames.append(df[COLUMNS])
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["reason"] = out["reason"].fillna("").astype(str)
    out["note"] = out["note"].fillna("").astype(str)
    out["seed"] = out["seed"].astype(int)
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out


def read_benchmarks(runs: Iterable[RunFiles | Mapping[str, Any]]) -> pd.DataFrame:
    """Cost rows (tidy) from the runs' Snakemake ``benchmark:`` TSVs (columns ``s``,
    ``max_rss`` in MB). Repeated measurements are averaged for time; the peak is taken for
    memory. A run without a benchmark path has no cost rows."""
    rows = []
    for run in as_runs(runs):
        for prefix, path, rule in (("train", run.train_benchmark, "train_model"),
                                   ("eval", run.eval_benchmark, "evaluate_model")):
            if path is None:
                continue
            tab = _read_csv(path, "benchmark file", rule, sep="\t")
            if "s" not in tab:
                raise InputError(
                    f"{path}: no 's' column (has {list(tab.columns)}); not a Snakemake "
                    f"benchmark file — delete it and rerun {rule}"
                )
            secs = pd.to_numeric(tab["s"], errors="coerce").mean()
            rss = pd.to_numeric(tab.get("max_rss", pd.Series([np.nan])), errors="coerce").max()
            base = dict(zip(KEYS, run.key, strict=True))
            rows.append({**base, "metric": f"{prefix}_seconds", "value": float(secs)})
            rows.append({**base, "metric": f"{prefix}_max_rss_mb", "value": float(rss)})
    df = pd.DataFrame(rows, columns=[*KEYS, "metric", "value"])
    df["reason"] = ""
    df["note"] = "snakemake benchmark"
    return df[COLUMNS]


# --------------------------------------------------------------------------------------------
# Derived tables
# --------------------------------------------------------------------------------------------
def failures(metrics: pd.DataFrame) -> pd.DataFrame:
    """Failed runs: dataset, scenario, model, seed, reason."""
    f = metrics[metrics["metric"] == "failed"]
    return f[[*KEYS, "reason"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# The aggregate and summary.md
# --------------------------------------------------------------------------------------------
@dataclass
class Aggregate:
    """Everything derived from the runs: the tidy table, rankings and the weights used."""

    metrics: pd.DataFrame
    per_group: pd.DataFrame
    overall: pd.DataFrame
    weights: dict[str, float]

    @property
    def groups(self) -> list[tuple[str, str]]:
        return sorted({(d, s) for d, s in self.metrics[["dataset", "scenario"]].to_numpy()})

    def group_ranking(self, dataset: str, scenario: str) -> pd.DataFrame:
        pg = self.per_group
        rk = pg[(pg["dataset"] == dataset) & (pg["scenario"] == scenario)]
        return rk.drop(columns=["dataset", "scenario"]).set_index("model")


def aggregate(
    runs: Iterable[RunFiles | Mapping[str, Any]], config: Mapping[str, Any] | None = None
) -> Aggregate:
    """Read every run's metrics and cost and rank the methods.

    ``config``: the workflow config; ``config["aggregation"]["weights"]`` overrides ranking
    weights (family -> weight). Nothing is written (see :func:`dmmvae.report.write_summary`).
    """
    runs = as_runs(runs)
    config = dict(config or {})
    weights = resolve_weights((config.get("aggregation") or {}).get("weights"))
    metrics = read_metric_csvs(runs)
    cost = read_benchmarks(runs)
    if len(cost):
        metrics = pd.concat([metrics, cost], ignore_index=True)
    metrics = metrics.sort_values(KEYS, kind="stable").reset_index(drop=True)
    per_group, overall = rank_models(metrics, weights)
    return Aggregate(metrics[COLUMNS], per_group, overall, weights)


