"""Claims over several train/test partitions (PROTOCOL "Split"): mean with a 95 % interval,
and the per-split difference between two methods with its interval and a verdict.

Every function takes the tidy long table of a multi-split benchmark, one row per value with at
least the columns ``dataset, model, split, metric, value``. The interval is Student's t over
splits (``mean +- t_{0.975, n-1} * sd / sqrt(n)``), so it widens honestly when few splits
exist; a difference is taken split by split (both methods on the same cells), which removes the
variation that the partition itself causes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import direction_of

KEY = ("dataset", "model", "split", "metric", "value")
#: verdicts of a difference "ours - reference", for the metric's direction; fewer than two
#: common splits give no interval and no verdict
BETTER, LEVEL, WORSE, UNDECIDED = "better", "level", "worse", "n/a"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 3) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def interval(values, level: float = 0.95) -> Interval:
    """Mean and two-sided ``level`` t-interval of ``values`` (NaN-free); ``n < 2``: no width."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    m = float(x.mean())
    if n < 2:
        return Interval(m, m, m, n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return Interval(m, m - half, m + half, n)


def _check(rows: pd.DataFrame) -> None:
    missing = [c for c in KEY if c not in rows]
    if missing:
        raise ValueError(f"comparison table lacks column(s) {missing}; it needs {list(KEY)}")


def per_split(rows: pd.DataFrame, dataset: str, model: str, metric: str) -> pd.Series:
    """``split -> value`` of one method on one dataset (mean over rows of the same split)."""
    _check(rows)
    sel = rows[(rows["dataset"] == dataset) & (rows["model"] == model) & (rows["metric"] == metric)]
    return sel.groupby("split")["value"].mean()


def verdict(diff: Interval, direction: str) -> str:
    """``better`` / ``level`` / ``worse`` for ``ours - reference`` whose interval is ``diff``:
    better when the whole interval lies on the good side of 0 for the metric's direction."""
    if diff.n < 2 or not np.isfinite(diff.low):
        return UNDECIDED
    if direction == "min":
        return BETTER if diff.high < 0 else WORSE if diff.low > 0 else LEVEL
    if direction == "max":
        return BETTER if diff.low > 0 else WORSE if diff.high < 0 else LEVEL
    raise ValueError(f"a verdict needs a metric with direction min or max, got {direction!r}")


def paired_difference(rows: pd.DataFrame, dataset: str, ours: str, reference: str,
                      metric: str) -> dict:
    """``ours - reference`` on the splits both have: the interval, the verdict, the splits."""
    a, b = per_split(rows, dataset, ours, metric), per_split(rows, dataset, reference, metric)
    common = a.index.intersection(b.index)
    diff = interval((a[common] - b[common]).to_numpy())
    return {"dataset": dataset, "ours": ours, "reference": reference, "metric": metric,
            "n_splits": diff.n, "difference": diff.mean, "low": diff.low, "high": diff.high,
            "verdict": verdict(diff, direction_of(metric))}


def summary(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """dataset x model rows, per metric the mean and interval over splits (``text`` cells)."""
    _check(rows)
    out = {}
    for (ds, model), g in rows.groupby(["dataset", "model"], sort=False):
        out[(ds, model)] = {m: interval(g.loc[g["metric"] == m].groupby("split")["value"].mean())
                            .text() for m in metrics if (g["metric"] == m).any()}
    table = pd.DataFrame.from_dict(out, orient="index").reindex(columns=metrics)
    table.index.names = ["dataset", "model"]
    return table.fillna("")


def best_reference(rows: pd.DataFrame, dataset: str, references: list[str], metric: str,
                   min_splits: int = 2) -> str | None:
    """The reference with the best mean over splits on ``dataset`` (the strongest rival), among
    those run on at least ``min_splits`` splits (a one-split mean can give no verdict); with
    none that has them, among all that ran. The references run on the most splits are ranked on
    the splits they share; one still running (two splits of five) then challenges the leader on
    the splits those two share, so that it is not ranked on easier or harder partitions, and a
    reference behind the leader there changes nothing, however few splits it has."""
    runs = {r: per_split(rows, dataset, r, metric).dropna() for r in references}
    runs = {r: v for r, v in runs.items() if len(v)}
    candidates = {r: v for r, v in runs.items() if len(v) >= min_splits} or runs
    if not candidates:
        return None
    sign = 1.0 if direction_of(metric) == "min" else -1.0
    most = max(len(v) for v in candidates.values())
    complete = {r: v for r, v in candidates.items() if len(v) == most}
    shared = set.intersection(*(set(v.index) for v in complete.values()))
    if len(shared) >= min_splits:
        complete = {r: v[v.index.isin(shared)] for r, v in complete.items()}
    leader = min(complete, key=lambda r: sign * float(complete[r].mean()))
    for r in sorted(set(candidates) - set(complete), key=lambda r: -len(candidates[r])):
        ours, theirs = candidates[r], candidates[leader]
        common = ours.index.intersection(theirs.index)
        if len(common) >= min_splits:
            ours, theirs = ours[common], theirs[common]
        if sign * float(ours.mean()) < sign * float(theirs.mean()):
            leader = r
    return leader


def claims(rows: pd.DataFrame, ours: list[str], references: list[str], metrics: list[str]
           ) -> pd.DataFrame:
    """For each dataset, metric and model of ``ours``: the per-split difference against the
    best reference on that dataset and metric, with interval and verdict."""
    out = []
    for ds in rows["dataset"].drop_duplicates():
        for metric in metrics:
            ref = best_reference(rows, ds, references, metric)
            if ref is None:
                continue
            for model in ours:
                if per_split(rows, ds, model, metric).empty:
                    continue
                out.append(paired_difference(rows, ds, model, ref, metric))
    return pd.DataFrame(out)


__all__ = ["Interval", "interval", "per_split", "verdict", "paired_difference", "summary",
           "best_reference", "claims", "BETTER", "LEVEL", "WORSE", "UNDECIDED"]
