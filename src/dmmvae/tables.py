"""Comparison tables (mean ± sd over seeds) and the text of ``summary.md``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .aggregate import Aggregate, failures
from .metrics import METRICS, family_of, headline_rows
from .ranking import RANKING_RULE, failed_models, ranking_display, summarize, weights_text


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
    failed_all = failed_models(sub)
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
