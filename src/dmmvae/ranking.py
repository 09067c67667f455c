"""Ranking the methods from the tidy metric table (:data:`RANKING_RULE`), and the ranking
tables' display."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .metrics import families, ranked_metrics
from .schema import schema_defaults

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


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and count over seeds per (dataset, scenario, model, metric)."""
    ok = metrics[metrics["metric"] != "failed"]
    g = ok.groupby(["dataset", "scenario", "model", "metric"])["value"]
    return g.agg(mean="mean", sd="std", n="count").reset_index()


def failed_models(metrics: pd.DataFrame) -> dict[tuple[str, str, str], str]:
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
    failed = failed_models(metrics)
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


def weights_text(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in weights.items())
