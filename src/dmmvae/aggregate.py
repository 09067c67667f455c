"""Aggregate per-run metric tables into the one tidy table, summary tables, rankings and plots.

``results/summary/metrics.csv`` (columns ``dataset, scenario, model, seed, metric, value,
reason, note``) is the one table everything else is derived from. Cost rows come from
Snakemake's ``benchmark:`` TSVs: ``train_seconds``, ``train_max_rss_mb`` (train_model jobs),
``eval_seconds``, ``eval_max_rss_mb`` (evaluate_model jobs); ``epochs`` comes from the
evaluation of each run (``history.csv``).

Ranking (per dataset and scenario, then overall). For each *ranked metric* (``RANKED``), models
are ranked on their mean over seeds (1 = best; ties share the average rank; the direction is
the metric's: lower FOSCTTM, higher accuracy, realism AUROC closest to 0.5, ...). A model whose
every seed failed takes the worst rank (number of models) on every ranked metric; a model that
does not produce a metric (e.g. ``knn_regression`` has no embeddings) is left out of that
metric. A family's rank is the mean of its metrics' ranks; a model's score is the weighted mean
of its family ranks with weights from ``config["aggregation"]["weights"]`` (default
:data:`DEFAULT_WEIGHTS`), renormalised over the families it has. The overall ranking averages
the per-(dataset, scenario) scores. Lower score = better.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import InputError, atomic_path, write_text

KEYS = ["dataset", "scenario", "model", "seed"]
COLUMNS = [*KEYS, "metric", "value", "reason", "note"]

#: metric -> (family, direction); direction "min", "max" or "half" (best at 0.5).
RANKED: dict[str, tuple[str, str]] = {
    "foscttm/mean": ("foscttm", "min"),
    "label_transfer_acc/mean": ("label_transfer", "max"),
    "label_transfer_bacc/mean": ("label_transfer", "max"),
    "imputation_pearson_cell/mean": ("imputation", "max"),
    "imputation_pearson_feature/mean": ("imputation", "max"),
    "imputation_cosine_cell/mean": ("imputation", "max"),
    "imputation_auroc/mean": ("imputation", "max"),
    "scib/total": ("scib", "max"),
    "recovery_shared_r2": ("recovery", "max"),
    "recovery_private_r2/mean": ("recovery", "min"),
    "realism_c2st_auroc/mean": ("realism", "half"),
    "train_seconds": ("cost", "min"),
    "train_max_rss_mb": ("cost", "min"),
}

#: Headline columns of the summary tables (ranked metrics plus context).
HEADLINE = [
    "foscttm/mean",
    "label_transfer_acc/mean",
    "label_transfer_bacc/mean",
    "imputation_pearson_cell/mean",
    "imputation_pearson_feature/mean",
    "imputation_cosine_cell/mean",
    "imputation_auroc/mean",
    "scib/bio_conservation",
    "scib/batch_correction",
    "scib/total",
    "recovery_shared_r2",
    "recovery_private_r2/mean",
    "realism_c2st_auroc/mean",
    "epochs",
    "train_seconds",
    "train_max_rss_mb",
]

DEFAULT_WEIGHTS: dict[str, float] = {
    "foscttm": 1.0,
    "label_transfer": 1.0,
    "imputation": 1.0,
    "scib": 1.0,
    "recovery": 1.0,
    "realism": 0.5,
    "cost": 0.0,
}

COST_KINDS = {"train_model": "train", "evaluate_model": "eval"}
_BENCH_RE = re.compile(
    r"(?P<kind>train_model|evaluate_model)/(?P<dataset>[^/]+)/(?P<scenario>[^/]+)/"
    r"(?P<model>[^/]+)/seed(?P<seed>\d+)\.tsv$"
)


def family(metric: str) -> str:
    """Metric family: the part before ``/`` without its score suffix (``cost`` for cost rows)."""
    if metric in RANKED:
        return RANKED[metric][0]
    head = metric.split("/")[0]
    if head in ("train_seconds", "train_max_rss_mb", "eval_seconds", "eval_max_rss_mb", "epochs"):
        return "cost"
    for fam in ("label_transfer", "imputation", "recovery", "realism"):
        if head.startswith(fam):
            return fam
    return head


def direction(metric: str) -> str:
    """"min", "max" or "half" for a metric name (unranked ones default by family)."""
    if metric in RANKED:
        return RANKED[metric][1]
    fam = family(metric)
    if fam == "foscttm" or metric.startswith("recovery_private") or fam == "cost":
        return "min"
    if fam == "realism":
        return "half"
    return "max"


# --------------------------------------------------------------------------------------------
# Reading inputs
# --------------------------------------------------------------------------------------------
def read_metric_csvs(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate per-run metric CSVs (from :func:`dmmvae.evaluate.evaluate_run`)."""
    frames = []
    for path in paths:
        if not os.path.exists(path):
            raise InputError(f"{path}: metrics file not found; run evaluate_model for this run")
        try:
            df = pd.read_csv(path, keep_default_na=True, dtype={"reason": str, "note": str})
        except pd.errors.EmptyDataError as err:
            raise InputError(f"{path}: empty metrics file; delete it and rerun evaluate_model") from err
        missing = [c for c in (*KEYS, "metric", "value") if c not in df]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {missing} (has {list(df.columns)}); it is not a "
                "metrics file written by evaluate_model — delete it and rerun"
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


def _bench_records(benchmark_tsvs: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Run keys of each benchmark file, taken from its path
    ``.../{train_model,evaluate_model}/{dataset}/{scenario}/{model}/seed{seed}.tsv``."""
    recs: list[dict[str, Any]] = []
    for item in benchmark_tsvs:
        path = str(item)
        m = _BENCH_RE.search(Path(path).as_posix())
        if m is None:
            raise InputError(
                f"{path}: cannot tell which run this benchmark file belongs to; expected "
                "a path ending in {train_model,evaluate_model}/{dataset}/{scenario}/{model}/"
                "seed{seed}.tsv"
            )
        rec: dict[str, Any] = {"path": path, **m.groupdict()}
        if rec["kind"] not in COST_KINDS:
            raise InputError(
                f"{path}: benchmark kind '{rec['kind']}' is not one of {sorted(COST_KINDS)}"
            )
        rec["seed"] = int(rec["seed"])
        recs.append(rec)
    return recs


def read_benchmarks(benchmark_tsvs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Cost rows (tidy) from Snakemake ``benchmark:`` TSVs (columns ``s``, ``max_rss`` in MB).

    Repeated measurements (several rows) are averaged for time; the peak is taken for memory.
    """
    rows = []
    for rec in _bench_records(benchmark_tsvs):
        path = rec["path"]
        if not os.path.exists(path):
            raise InputError(f"{path}: benchmark file not found; rerun the {rec['kind']} rule")
        try:
            tab = pd.read_csv(path, sep="\t")
        except pd.errors.EmptyDataError as err:
            raise InputError(f"{path}: empty benchmark file; rerun the {rec['kind']} rule") from err
        if "s" not in tab:
            raise InputError(
                f"{path}: no 's' column (has {list(tab.columns)}); not a Snakemake benchmark file"
            )
        prefix = COST_KINDS[rec["kind"]]
        secs = pd.to_numeric(tab["s"], errors="coerce").mean()
        rss = pd.to_numeric(tab.get("max_rss", pd.Series([np.nan])), errors="coerce").max()
        base = {k: rec[k] for k in KEYS}
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
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    return out


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
    """Rankings (see module docstring).

    Returns ``(per_group, overall)``: ``per_group`` has columns dataset, scenario, model, one
    ``rank_<family>`` per family, ``score`` and ``position``; ``overall`` has model, score
    (mean over groups), n_groups and position.
    """
    w = {**DEFAULT_WEIGHTS, **dict(weights or {})}
    unknown = sorted(set(w) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValueError(
            f"aggregation.weights: unknown metric families {unknown}; valid families are "
            f"{sorted(DEFAULT_WEIGHTS)}"
        )
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
        metric_ranks = {}
        for metric, (_fam, how) in RANKED.items():
            col = means[metric] if metric in means else pd.Series(np.nan, index=models)
            vals = col.astype(float)
            if how == "half":
                vals = (vals - 0.5).abs()
            ranks = (vals if how != "max" else -vals).rank(method="average")
            if not ranks.notna().any():
                continue  # no (non-failed) model has this metric here
            for mo in models:
                if (ds, sc, mo) in failed:
                    ranks[mo] = float(n_models)
            metric_ranks[metric] = ranks
        rows = []
        for mo in models:
            row: dict[str, Any] = {"dataset": ds, "scenario": sc, "model": mo}
            fam_ranks: dict[str, list[float]] = {}
            for metric, ranks in metric_ranks.items():
                if np.isfinite(ranks[mo]):
                    fam_ranks.setdefault(RANKED[metric][0], []).append(float(ranks[mo]))
            tot, wsum = 0.0, 0.0
            for fam in DEFAULT_WEIGHTS:
                r = float(np.mean(fam_ranks[fam])) if fam in fam_ranks else np.nan
                row[f"rank_{fam}"] = r
                if np.isfinite(r) and w[fam] > 0:
                    tot += w[fam] * r
                    wsum += w[fam]
            row["score"] = tot / wsum if wsum > 0 else np.nan
            row["failed"] = failed.get((ds, sc, mo), "")
            rows.append(row)
        tab = pd.DataFrame(rows)
        tab["position"] = tab["score"].rank(method="min")
        groups.append(tab)
    cols = ["dataset", "scenario", "model", *[f"rank_{f}" for f in DEFAULT_WEIGHTS], "score",
            "position", "failed"]
    per_group = (pd.concat(groups, ignore_index=True) if groups else pd.DataFrame(columns=cols))
    per_group = per_group[cols].sort_values(["dataset", "scenario", "position"])
    overall = (
        per_group.groupby("model")["score"].agg(score="mean", n_groups="count").reset_index()
    )
    overall["position"] = overall["score"].rank(method="min")
    overall["n_groups"] = overall["n_groups"].astype(int)
    overall = overall.sort_values("position").reset_index(drop=True)
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
            cell = _fmt(mean) if n < 2 or not np.isfinite(sd) else f"{_fmt(mean)} ± {_fmt(sd)}"
            if n_failed:
                cell += f" ({n_failed}/{n_seeds} failed)"
            out.loc[mo, me] = cell
    return out


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "nan"
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def _md_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    idx_name = df.index.name or ""
    head = [idx_name, *map(str, df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in df.iterrows():
        cells = [str(idx), *[str(v).replace("|", "/") for v in row.values]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(
    metrics: pd.DataFrame, per_group: pd.DataFrame, overall: pd.DataFrame,
    weights: Mapping[str, float], plots: Sequence[str] = ()
) -> str:
    """The text of ``summary.md``."""
    w = {**DEFAULT_WEIGHTS, **dict(weights or {})}
    out = ["# Benchmark summary", ""]
    out.append(
        "Mean ± sd over seeds; `failed: <reason>` where every seed of a model failed. "
        "Ranking: per ranked metric, models ranked 1 = best; family rank = mean; score = "
        "weighted mean of family ranks (lower is better). Weights: "
        + ", ".join(f"{k}={v:g}" for k, v in w.items()) + "."
    )
    out.append("")
    if len(overall):
        out += ["## Overall ranking", "", _md_table(overall.set_index("model")), ""]
    fails = failures(metrics)
    if len(fails):
        out += ["## Failed runs", "", _md_table(fails.set_index("dataset")), ""]
    for (ds, sc), _grp in metrics.groupby(["dataset", "scenario"]):
        out += [f"## {ds} / {sc}", ""]
        rk = per_group[(per_group["dataset"] == ds) & (per_group["scenario"] == sc)]
        rk = rk.drop(columns=["dataset", "scenario"]).set_index("model")
        rk = rk.dropna(axis=1, how="all")
        out += ["### Ranking", "", _md_table(rk.map(lambda v: _fmt(v) if isinstance(v, float)
                                                      else v)), ""]
        out += ["### Headline metrics", "", _md_table(comparison_table(metrics, ds, sc, HEADLINE)),
                ""]
        sub = metrics[(metrics["dataset"] == ds) & (metrics["scenario"] == sc)]
        fams: dict[str, list[str]] = {}
        for me in sorted(sub.loc[sub["metric"] != "failed", "metric"].unique()):
            fams.setdefault(family(me), []).append(me)
        for fam, names in fams.items():
            out += [f"### {fam}", "", _md_table(comparison_table(metrics, ds, sc, names)), ""]
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(out)


def aggregate(
    metric_csvs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    benchmark_tsvs: Sequence[str | os.PathLike] = (),
    histories: Any = (),
    predictions: Any = (),
    scenarios: Any = (),
    config: Mapping[str, Any] | None = None,
    report: bool = False,
) -> None:
    """Write ``out_dir/metrics.csv``, ``out_dir/rankings.csv``, ``out_dir/summary.md``,
    ``out_dir/ranking.png`` (models x datasets, always written when there is a score) and per
    group ``overview_<dataset>_<scenario>.png`` and ``metrics_<dataset>_<scenario>.png``.

    - ``metric_csvs``: per-run CSVs from :func:`dmmvae.evaluate.evaluate_run`.
    - ``benchmark_tsvs``: Snakemake benchmark files, paths ending in
      ``{train_model,evaluate_model}/{dataset}/{scenario}/{model}/seed{seed}.tsv`` (the run keys
      are taken from the path).
    - ``histories``, ``predictions``, ``scenarios``: only used when ``report`` is True (passed
      to :func:`dmmvae.report.write_report`, which writes ``out_dir/report.html``).
    - ``config``: the workflow config; ``config["aggregation"]["weights"]`` sets the ranking
      weights (family -> weight).

    Nothing is written unless every input reads; every file is written atomically.
    """
    from . import plots as plots_mod

    config = dict(config or {})
    weights = dict((config.get("aggregation") or {}).get("weights") or {})
    metrics = read_metric_csvs(metric_csvs)
    cost = read_benchmarks(benchmark_tsvs)
    if len(cost):
        metrics = pd.concat([metrics, cost], ignore_index=True)
    metrics = metrics.sort_values(KEYS, kind="stable").reset_index(drop=True)
    per_group, overall = rank_models(metrics, weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = []
    png = plots_mod.ranking_png(per_group)
    if png is not None:
        with atomic_path(out_dir / "ranking.png") as tmp:
            tmp.write_bytes(png)
        pngs.append("ranking.png")
    for (ds, sc), _ in metrics.groupby(["dataset", "scenario"]):
        for name, fig_fn in (
            (f"overview_{ds}_{sc}.png", plots_mod.overview_png),
            (f"metrics_{ds}_{sc}.png", plots_mod.seed_spread_png),
        ):
            png = fig_fn(metrics, ds, sc)
            if png is None:
                continue
            with atomic_path(out_dir / name) as tmp:
                tmp.write_bytes(png)
            pngs.append(name)
    with atomic_path(out_dir / "rankings.csv") as tmp:
        per_group.to_csv(tmp, index=False)
    write_text(out_dir / "summary.md",
               summary_markdown(metrics, per_group, overall, weights, pngs))
    if report:
        from .report import write_report

        write_report(metrics, out_dir / "report.html", histories=histories,
                     predictions=predictions, scenarios=scenarios, config=config)
    with atomic_path(out_dir / "metrics.csv") as tmp:
        metrics[COLUMNS].to_csv(tmp, index=False)
