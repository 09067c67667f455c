"""Figures of the summary and the report (matplotlib, Agg backend); each returns PNG bytes.

Every function takes plain tables/arrays and returns ``bytes`` (a PNG) or None when there is
nothing to draw, so the caller decides where it goes (a file, or base64 into report.html).
Which metrics are drawn and which way is better come from the metric registry
(:data:`dmmvae.metrics.METRICS`). Data flow: aggregate -> plots -> report; this module never
imports :mod:`dmmvae.report`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .metrics import direction_of, headline_rows  # noqa: E402

_DPI = 90


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _group(metrics: pd.DataFrame, dataset: str, scenario: str) -> pd.DataFrame:
    sub = metrics[(metrics["dataset"] == dataset) & (metrics["scenario"] == scenario)]
    return sub[(sub["metric"] != "failed") & np.isfinite(sub["value"].astype(float))]


def overview_png(metrics: pd.DataFrame, dataset: str, scenario: str,
                 metric_names: Sequence[str] | None = None) -> bytes | None:
    """scib-style overview: models x metrics, cells coloured by the score scaled over models
    (1 = best given the metric's direction; grey for metrics without one), annotated with the
    mean over seeds."""
    sub = _group(metrics, dataset, scenario)
    models = sorted(metrics.loc[(metrics["dataset"] == dataset)
                                & (metrics["scenario"] == scenario), "model"].unique())
    if sub.empty or not models:
        return None
    means = sub.groupby(["model", "metric"])["value"].mean().unstack().reindex(models)
    names = [m for m in (metric_names or headline_rows())
             if m in means and means[m].notna().any()]
    if not names:
        return None
    vals = means[names].astype(float)
    colour = pd.DataFrame(index=vals.index, columns=names, dtype=float)
    for m in names:
        v = vals[m]
        how = direction_of(m)
        if how is None:
            colour[m] = np.nan
            continue
        s = -(v - 0.5).abs() if how == "half" else (-v if how == "min" else v)
        lo, hi = s.min(), s.max()
        colour[m] = (s - lo) / (hi - lo) if hi > lo else 1.0
    grp = metrics[(metrics["dataset"] == dataset) & (metrics["scenario"] == scenario)]
    failed = set(grp.loc[grp["metric"] == "failed", "model"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.95 * len(names), 0.9 + 0.45 * len(models)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    ax.imshow(np.ma.masked_invalid(colour.to_numpy(dtype=float)), cmap=cmap, vmin=0, vmax=1,
              aspect="auto")
    for i, mo in enumerate(models):
        for j in range(len(names)):
            v = vals.iloc[i, j]
            if np.isfinite(v):
                txt = f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
            else:
                txt = "failed" if mo in failed else "–"
            c = colour.iloc[i, j]
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(c) and c < 0.6 else "black")
    ax.set_xticks(range(len(names)), [n.replace("/", "\n") for n in names], fontsize=7,
                  rotation=60, ha="right")
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_title(f"{dataset} / {scenario}: colour = scaled score (yellow best)", fontsize=9)
    return _png(fig)


def seed_spread_png(metrics: pd.DataFrame, dataset: str, scenario: str,
                    metric_names: Sequence[str] | None = None) -> bytes | None:
    """One panel per metric: mean over seeds (bar) and each seed (dots) per model."""
    sub = _group(metrics, dataset, scenario)
    if sub.empty:
        return None
    names = [m for m in (metric_names or headline_rows()) if m in set(sub["metric"])]
    if not names:
        return None
    models = sorted(sub["model"].unique())
    ncol = min(4, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    # models share the x axis: named once, under the lowest panel of each column
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 1.9 * nrow + 0.9), squeeze=False)
    rng = np.random.default_rng(0)
    for k, (ax, m) in enumerate(zip(axes.ravel(), names, strict=False)):
        d = sub[sub["metric"] == m]
        for i, mo in enumerate(models):
            v = d.loc[d["model"] == mo, "value"].astype(float).to_numpy()
            if len(v):
                ax.bar(i, v.mean(), color="#9ecae1", width=0.7)
                ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=10, color="#08519c",
                           zorder=3)
        if k + ncol >= len(names):
            ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=7)
        else:
            ax.set_xticks(range(len(models)), [])
        ax.set_title(m, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{dataset} / {scenario}: mean over seeds (bar) and seeds (dots)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def pair_png(metrics: pd.DataFrame, dataset: str, scenario: str, prefix: str) -> bytes | None:
    """Grouped bars of a per-pair metric (rows ``<prefix><pair>``, e.g. ``foscttm/rna->atac``)
    per model."""
    sub = _group(metrics, dataset, scenario)
    sub = sub[sub["metric"].str.startswith(prefix) & ~sub["metric"].str.endswith("/mean")]
    if sub.empty:
        return None
    pairs = sorted(sub["metric"].unique())
    models = sorted(sub["model"].unique())
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(models) * max(1, len(pairs)) / 2, 3.0))
    width = 0.8 / len(pairs)
    for k, p in enumerate(pairs):
        d = sub[sub["metric"] == p].groupby("model")["value"]
        mean, sd = d.mean().reindex(models), d.std().reindex(models)
        ax.bar(np.arange(len(models)) + k * width, mean, width, yerr=sd.fillna(0),
               label=p[len(prefix):], capsize=2)
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models, rotation=45, ha="right",
                  fontsize=8)
    ax.legend(fontsize=7, title="pair", title_fontsize=7)
    ax.set_ylabel(prefix.rstrip("/"))
    ax.set_title(f"{dataset} / {scenario}", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def embedding_png(coords: np.ndarray, colours: Mapping[str, np.ndarray], title: str
                  ) -> bytes:
    """Scatter of 2-D ``coords``, one panel per entry of ``colours`` (categorical values)."""
    fig, axes = plt.subplots(1, len(colours), figsize=(3.6 * len(colours), 3.3), squeeze=False)
    for ax, (name, vals) in zip(axes.ravel(), colours.items(), strict=True):
        vals = np.asarray(vals).astype(str)
        cats = sorted(set(vals))
        cmap = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
        order = np.random.default_rng(0).permutation(len(vals))  # no category painted on top
        col = np.array([cmap(cats.index(v) % cmap.N) for v in vals])
        ax.scatter(coords[order, 0], coords[order, 1], c=col[order], s=3, linewidths=0)
        if len(cats) <= 20:
            for c in cats:
                ax.scatter([], [], color=cmap(cats.index(c) % cmap.N), label=c, s=10)
            ax.legend(fontsize=5, markerscale=1, loc="best", frameon=False)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def scatter_png(observed: np.ndarray, predicted: np.ndarray, title: str) -> bytes:
    """Predicted vs observed values of one feature over test cells, with the identity line."""
    fig, ax = plt.subplots(figsize=(3.0, 3.0))
    ax.scatter(observed, predicted, s=4, alpha=0.6, linewidths=0)
    lo = float(np.nanmin([np.nanmin(observed), np.nanmin(predicted)]))
    hi = float(np.nanmax([np.nanmax(observed), np.nanmax(predicted)]))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set_xlabel("observed", fontsize=8)
    ax.set_ylabel("predicted", fontsize=8)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _png(fig)


def history_png(histories: Mapping[str, pd.DataFrame], title: str) -> bytes | None:
    """Training curves: every numeric loss column against ``epoch``, one line per run."""
    cols: list[str] = []
    for h in histories.values():
        for c in h.columns:
            if c != "epoch" and pd.api.types.is_numeric_dtype(h[c]) and c not in cols:
                cols.append(c)
    if not cols:
        return None
    cols = cols[:8]
    ncol = min(4, len(cols))
    nrow = int(np.ceil(len(cols) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.5 * nrow), squeeze=False)
    for ax, c in zip(axes.ravel(), cols, strict=False):
        for name, h in histories.items():
            if c in h:
                x = h["epoch"] if "epoch" in h else np.arange(len(h))
                ax.plot(x, h[c], lw=1, label=name)
        ax.set_title(c, fontsize=8)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=6)
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    # fixed spacing (the small fonts fit it): tight_layout's text measuring cost ~0.2 s a figure
    fig.subplots_adjust(wspace=0.3, hspace=0.5)
    return _png(fig)


def ranking_png(per_group: pd.DataFrame) -> bytes | None:
    """Models x (dataset / scenario): rank-based score (lower is better), overall mean last."""
    if per_group.empty:
        return None
    tab = per_group.assign(group=per_group["dataset"] + " / " + per_group["scenario"]).pivot(
        index="model", columns="group", values="score")
    tab["overall"] = tab.mean(axis=1)
    tab = tab.sort_values("overall")
    vals = tab.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * tab.shape[1], 0.9 + 0.4 * tab.shape[0]))
    cmap = plt.get_cmap("viridis_r").with_extremes(bad="#dddddd")
    ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, aspect="auto")
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            ax.text(j, i, "–" if not np.isfinite(vals[i, j]) else f"{vals[i, j]:.2f}",
                    ha="center", va="center", fontsize=7, color="black")
    ax.set_xticks(range(tab.shape[1]), tab.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(tab.shape[0]), tab.index, fontsize=8)
    ax.set_title("rank-based score per dataset / scenario (lower is better)", fontsize=9)
    return _png(fig)
