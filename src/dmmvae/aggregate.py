"""Aggregate per-run metric tables into the one tidy table, summary tables and rankings.

Data flow (one way): :mod:`dmmvae.evaluate` -> this module -> :mod:`dmmvae.plots` ->
:mod:`dmmvae.report` (which writes ``results/summary``). This module imports neither of the
last two. Which metrics exist, their family, direction and summary row, and whether they are
ranked all come from the metric registry :data:`dmmvae.metrics.METRICS`.

The rule hands :func:`aggregate` a list of runs (:class:`RunFiles`: the wildcards dataset,
scenario, model, seed and the run's file paths); nothing is parsed from paths.
``metrics.csv`` (columns ``dataset, scenario, model, seed, metric, value, reason, note``) is the
one table everything else is derived from. Cost rows come from Snakemake's ``benchmark:``
files: ``train_seconds``, ``train_max_rss_mb`` (train_model), ``eval_seconds``,
``eval_max_rss_mb`` (evaluate_model); ``epochs`` comes from each run's evaluation.

Ranking: see :data:`RANKING_RULE` (written beside every ranking table).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from .io import InputError
from .metrics import METRICS, families, family_of, headline_rows, ranked_metrics
from .schema import schema_defaults

KEYS = ["dataset", "scenario", "model", "seed"]
COLUMNS = [*KEYS, "metric", "value", "reason", "note"]

RANKING_RULE = (
    "Ranking, per dataset and scenario: for every ranked metric (one summary row per metric, "
    "e.g. `foscttm/mean`), methods are ranked on their mean over seeds, 1 = best in the "
    "metric's direction (lower FOSCTTM, higher accuracy, realism AUROC closest to 0.5); ties "
    "share the average rank. A method with no result for a ranked metric that another method "
    "has in that dataset and scenario — because every seed failed, or because it does not "
    "produce what the metric needs (no embeddings, no generated cells) — takes the worst rank, "
    "N = the number of methods there; the families concerned are listed under `missing`. "
    "Realism is scored only for methods that generate cells. A family's rank is the mean of "
    "its metrics' ranks; the score is the weighted mean of the family ranks (the same "
    "families for every method; weights below), lower is better. Overall: the mean of a "
    "method's scores over the datasets and scenarios it ran in (`n_groups`)."
)


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


def resolve_weights(weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Ranking weight of every registry family: the ``aggregation.weights`` schema defaults
    (1.0 for a family the schema does not name), updated with ``weights``."""
    defaults = schema_defaults("aggregation").get("weights") or {}
    fams = families()
    w = {f: float(defaults.get(f, 1.0)) for f in fams}
    given = dict(weights or {})
    unknown = sorted(set(given) - set(fams) - set(defaults))
    if unknown:
        raise ValueError(
            f"aggregation.weights: unknown metric families {unknown}; valid families are {fams}"
        )
    w.update({k: float(v) for k, v in given.items() if k in w})
    return w


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


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and count over seeds per (dataset, scenario, model, metric)."""
    ok = metrics[metrics["metric"] != "failed"]
    g = ok.groupby(["dataset", "scenario", "model", "metric"])["value"]
    return g.agg(mean="mean", sd="std", n="count").reset_index()


def _failed_models(metrics: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(dataset, scenario, model) -> reason for models whose every seed failed."""
    out = {}
    for (ds, sc, mo), grp in metrics.groupby(["dataset", "scenario", "model"]):
        seeds = grp["seed"].unique()
        failed = grp[grp["metric"] == "failed"]
        if len(failed) and set(failed["seed"]) >= set(seeds):
            out[(ds, sc, mo)] = "; ".join(sorted(set(failed["reason"].astype(str))))
    return out


def rank_models(
    metrics: pd.DataFrame, weights: Mapping[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rankings (:data:`RANKING_RULE`).

    Returns ``(per_group, overall)``: ``per_group`` has columns dataset, scenario, model, one
    ``rank_<family>`` per registry family, ``score``, ``position``, ``missing`` (families whose
    worst rank the method took for lack of a result) and ``failed``; ``overall`` has model,
    score (mean over groups), n_groups and position.
    """
    w = resolve_weights(weights)
    fams = families()
    summ = summarize(metrics)
    failed = _failed_models(metrics)
    groups = []
    for (ds, sc), grp in metrics.groupby(["dataset", "scenario"]):
        models = sorted(grp["model"].unique())
        n_models = len(models)
        means = (
            summ[(summ["dataset"] == ds) & (summ["scenario"] == sc)]
            .pivot(index="model", columns="metric", values="mean")
            .reindex(models)
        )
        fam_ranks: dict[str, list[pd.Series]] = {}
        lacking: dict[str, set[str]] = {mo: set() for mo in models}
        for metric in ranked_metrics():
            row = metric.summary_row
            if row not in means:
                continue
            vals = means[row].astype(float)
            vals[[(ds, sc, mo) in failed for mo in models]] = np.nan
            if not vals.notna().any():
                continue  # no method has this metric here: not ranked in this group
            if metric.direction == "half":
                vals = (vals - 0.5).abs()
            ranks = (-vals if metric.direction == "max" else vals).rank(method="average")
            for mo in ranks.index[ranks.isna()]:
                if (ds, sc, mo) not in failed:
                    lacking[mo].add(metric.family)
            fam_ranks.setdefault(metric.family, []).append(ranks.fillna(float(n_models)))
        rows = []
        for mo in models:
            row: dict[str, Any] = {"dataset": ds, "scenario": sc, "model": mo}
            tot, wsum = 0.0, 0.0
            for fam in fams:
                r = float(np.mean([s[mo] for s in fam_ranks[fam]])) if fam in fam_ranks else np.nan
                row[f"rank_{fam}"] = r
                if np.isfinite(r) and w[fam] > 0:
                    tot += w[fam] * r
                    wsum += w[fam]
            row["score"] = tot / wsum if wsum > 0 else np.nan
            row["missing"] = ", ".join(f for f in fams if f in lacking[mo] and w[f] > 0)
            row["failed"] = failed.get((ds, sc, mo), "")
            rows.append(row)
        tab = pd.DataFrame(rows)
        tab["position"] = tab["score"].rank(method="min")
        groups.append(tab)
    cols = ["dataset", "scenario", "model", *[f"rank_{f}" for f in fams], "score", "position",
            "missing", "failed"]
    per_group = pd.concat(groups, ignore_index=True) if groups else pd.DataFrame(columns=cols)
    per_group = per_group[cols].sort_values(["dataset", "scenario", "position", "model"])
    per_group["position"] = per_group["position"].astype("Int64")
    overall = per_group.groupby("model")["score"].agg(score="mean", n_groups="count")
    overall = overall.reset_index()
    overall["position"] = overall["score"].rank(method="min").astype("Int64")
    overall["n_groups"] = overall["n_groups"].astype(int)
    overall = overall.sort_values(["position", "model"]).reset_index(drop=True)
    return per_group.reset_index(drop=True), overall


def comparison_table(
    metrics: pd.DataFrame, dataset: str, scenario: str, metric_names: Iterable[str] | None = None
) -> pd.DataFrame:
    """Models x metrics, cells ``"mean ± sd"`` over seeds (``"failed: <reason>"`` when every seed
    failed; ``"(k/n failed)"`` appended when some did)."""
    sub = metrics[(metrics["dataset"] == dataset) & (metrics["scenario"] == scenario)]
    summ = summarize(sub)
    if metric_names is None:
        metric_names = sorted(summ["metric"].unique())
    metric_names = [m for m in metric_names if m in set(summ["metric"])]
    failed_all = _failed_models(sub)
    models = sorted(sub["model"].unique())
    out = pd.DataFrame(index=pd.Index(models, name="model"), columns=metric_names, dtype=object)
    for mo in models:
        msub = sub[sub["model"] == mo]
        n_seeds = msub["seed"].nunique()
        n_failed = msub.loc[msub["metric"] == "failed", "seed"].nunique()
        for me in metric_names:
            if (dataset, scenario, mo) in failed_all:
                out.loc[mo, me] = f"failed: {failed_all[(dataset, scenario, mo)]}"
                continue
            row = summ[(summ["model"] == mo) & (summ["metric"] == me)]
            if row.empty or not np.isfinite(row["mean"].iloc[0]):
                out.loc[mo, me] = "–"
                continue
            mean, sd, n = row["mean"].iloc[0], row["sd"].iloc[0], int(row["n"].iloc[0])
            cell = fmt_value(mean) if n < 2 or not np.isfinite(sd) else (
                f"{fmt_value(mean)} ± {fmt_value(sd)}")
            if n_failed:
                cell += f" ({n_failed}/{n_seeds} failed)"
            out.loc[mo, me] = cell
    return out


def fmt_value(v: float) -> str:
    """A metric value: 3 decimals below 10, 1 from 10, none from 1000."""
    if not np.isfinite(v):
        return "nan"
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def fmt_rank(v: Any) -> str:
    """A rank or rank-based score: 3 significant digits (``4``, ``2.25``, ``10.3``)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "–" if not np.isfinite(v) else f"{v:.3g}"


def ranking_display(table: pd.DataFrame) -> pd.DataFrame:
    """A ranking table for people: ranks and scores to 3 significant digits, positions and
    counts as integers, families without any rank dropped."""
    out = table.dropna(axis=1, how="all").copy()
    for col in out.columns:
        if col.startswith("rank_") or col == "score":
            out[col] = out[col].map(fmt_rank)
        elif col in ("position", "n_groups"):
            out[col] = out[col].map(lambda v: "–" if pd.isna(v) else str(int(v)))
    return out


def group_rows(metrics: pd.DataFrame, dataset: str, scenario: str) -> dict[str, list[str]]:
    """Family -> the metric rows present in one dataset / scenario, registry order first."""
    sub = metrics[(metrics["dataset"] == dataset) & (metrics["scenario"] == scenario)]
    present = sorted(set(sub.loc[sub["metric"] != "failed", "metric"]))
    order = {name: i for i, name in enumerate(METRICS)}
    present.sort(key=lambda r: (order.get(r.split("/", 1)[0], len(order)), r))
    out: dict[str, list[str]] = {}
    for row in present:
        out.setdefault(family_of(row), []).append(row)
    return out


def weights_text(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in weights.items())


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


def _md(df: pd.DataFrame, index: bool = True) -> str:
    """GitHub markdown (tabulate via ``DataFrame.to_markdown``); ``|`` in cells escaped."""
    cells = df.map(lambda v: str(v).replace("|", "\\|"))
    return cells.to_markdown(index=index, disable_numparse=True)


def summary_markdown(agg: Aggregate, plots: Sequence[str] = ()) -> str:
    """The text of ``summary.md``; ``plots``: file names of figures beside it."""
    out = ["# Benchmark summary", "",
           "Mean ± sd over seeds; `failed: <reason>` where every seed of a model failed.", "",
           RANKING_RULE + " Weights: " + weights_text(agg.weights) + ".", ""]
    if len(agg.overall):
        out += ["## Overall ranking", "",
                _md(ranking_display(agg.overall.set_index("model"))), ""]
    fails = failures(agg.metrics)
    if len(fails):
        out += ["## Failed runs", "", _md(fails, index=False), ""]
    headline = headline_rows()
    for ds, sc in agg.groups:
        out += [f"## {ds} / {sc}", "", "### Ranking", "",
                _md(ranking_display(agg.group_ranking(ds, sc))), "",
                "### Headline metrics", "",
                _md(comparison_table(agg.metrics, ds, sc, headline)), ""]
        for fam, names in group_rows(agg.metrics, ds, sc).items():
            out += [f"### {fam}", "", _md(comparison_table(agg.metrics, ds, sc, names)), ""]
    if plots:
        out += ["## Plots", ""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plots] + [""]
    return "\n".join(out)
