"""The summary folder (``results/summary``) and its ``report.html``: the last stage of the
data flow evaluate -> aggregate -> plots -> report.

:func:`write_summary` OWNS its folder: it writes every file (``metrics.csv``,
``rankings.csv``, ``summary.md``, the PNG figures, ``report.html``) into a fresh temporary
folder beside it and then swaps that folder in for the old one, so no file of an earlier run
(another config's dataset, a metric since removed) survives and nothing is ever half-written.

``report.html`` is one self-contained page rendered from the jinja2 template
``templates/report.html.j2`` (PNG figures base64-embedded, no scripts, no external files, no
network). Contents: overall ranking with its rule and failed runs; per dataset and scenario
the ranking, the headline comparison table (mean ± sd over seeds), a scib-style overview
figure, per-metric plots with seed spread, FOSCTTM per modality pair, for each model a UMAP of
the test cells embedded from each modality alone (concatenated; coloured by cell type, modality
of origin and Leiden clusters of the joint embedding — the picture that shows whether
modalities mix), imputation scatter plots (one feature per modality pair: the most variable
observed one), training curves from ``history.csv`` and the cost table; then the metric
registry, provenance (``mdata.uns["provenance"]``), package versions, config and protocol.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from importlib import metadata
from typing import Any

import jinja2
import mudata as md
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from . import plots
from .aggregate import COLUMNS, Aggregate, RunFiles, as_runs, failures
from .analysis import leiden, most_variable_feature, umap_coords
from .constants import JOINT, LABEL, PROVENANCE, SPLIT, TEST
from .io import InputError, Predictions, atomic_path, replaced_dir
from .io import _plain as _plain_io
from .metrics import METRICS, headline_rows
from .parallel import fork_is_safe, forked_results
from .ranking import RANKING_RULE, ranking_display
from .reproduce import reproduction_markdown, workflow_reproduction
from .tables import comparison_table, summary_markdown

PACKAGES = ["dmmvae", "numpy", "scipy", "pandas", "scikit-learn", "torch", "anndata", "mudata",
            "scanpy", "scib-metrics", "jax", "umap-learn", "leidenalg", "numba", "matplotlib",
            "jinja2", "snakemake"]

PROTOCOL_SUMMARY = """\
Cells are split once per dataset and seed (80 % train, 20 % test); every metric is computed on
test cells only, each test cell encoded from ONE modality at a time (PROTOCOL.md). The metrics,
their direction and where they apply are listed in the metric registry above; cost comes from
Snakemake benchmark files."""

# UMAP's own default for data over 10,000 points; below that it runs 500, 2.5x the time for a
# picture that tells the same (whether modalities mix)
_LOG = logging.getLogger(__name__)

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("dmmvae", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# --------------------------------------------------------------------------------------------
# The summary folder
# --------------------------------------------------------------------------------------------


def summary_figures(agg: Aggregate) -> dict[str, bytes | None]:
    """The summary folder's figures, by file name (None: nothing to draw); the report shows the
    same images, drawn once."""
    figures = {"ranking.png": plots.ranking_png(agg.per_group)}
    for ds, sc in agg.groups:
        figures[f"overview_{ds}_{sc}.png"] = plots.overview_png(agg.metrics, ds, sc)
        figures[f"metrics_{ds}_{sc}.png"] = plots.seed_spread_png(agg.metrics, ds, sc)
    return figures


def write_summary(
    agg: Aggregate,
    out_dir: str | os.PathLike,
    *,
    runs: Iterable[RunFiles | Mapping[str, Any]] = (),
    scenarios: Any = (),
    config: Mapping[str, Any] | None = None,
    report: bool = True,
    max_umap_cells: int = 3000,
    n_jobs: int = 1,
) -> None:
    """Write the whole summary folder ``out_dir`` and replace the old one (see module doc):

    ``metrics.csv`` (THE tidy table), ``rankings.csv``, ``summary.md``, ``ranking.png``
    (whenever there is a score), ``overview_<dataset>_<scenario>.png`` and
    ``metrics_<dataset>_<scenario>.png`` per group, and ``report.html`` when ``report``.
    ``runs``, ``scenarios``, ``config``, ``n_jobs``: as :func:`write_report`; the report's
    groups are drawn while the summary's figures are (with ``n_jobs`` > 1).
    """
    runs = as_runs(runs)
    scen = _scenario_paths(scenarios)
    if report:
        _check_exists(runs, scen)
    with (replaced_dir(out_dir) as tmp,
          _visuals_of_groups(agg, runs, scen, max_umap_cells, n_jobs if report else 1) as visuals):
        pngs = []
        figures = summary_figures(agg)
        for name, png in figures.items():
            if png is not None:
                (tmp / name).write_bytes(png)
                pngs.append(name)
        agg.per_group.to_csv(tmp / "rankings.csv", index=False)
        (tmp / "summary.md").write_text(summary_markdown(agg, pngs))
        repro = workflow_reproduction(config or {}, agg.metrics)
        (tmp / "reproduction.md").write_text(reproduction_markdown(config or {}, repro))
        if len(repro):
            repro.to_csv(tmp / "reproduction.csv", index=False)
        if report:
            write_report(agg, tmp / "report.html", runs=runs, scenarios=scen, config=config,
                         max_umap_cells=max_umap_cells, figures=figures, visuals=visuals)
        agg.metrics[COLUMNS].to_csv(tmp / "metrics.csv", index=False)


# --------------------------------------------------------------------------------------------
# report.html
# --------------------------------------------------------------------------------------------
def _scenario_paths(scenarios: Any) -> dict[tuple[str, str], str]:
    """``{(dataset, scenario): path}`` from such a mapping or from records with keys
    ``dataset``, ``scenario``, ``path``."""
    if isinstance(scenarios, Mapping):
        return {tuple(k): str(v) for k, v in scenarios.items()}
    out = {}
    for rec in scenarios:
        if not isinstance(rec, Mapping) or set(rec) != {"dataset", "scenario", "path"}:
            raise ValueError(f"scenario record {rec!r}: expected a mapping with exactly the keys "
                             "dataset, scenario, path")
        out[(str(rec["dataset"]), str(rec["scenario"]))] = str(rec["path"])
    return out


def _check_exists(runs: list[RunFiles], scen: Mapping[tuple[str, str], str]) -> None:
    paths = [p for r in runs for p in (r.history, r.predictions) if p is not None]
    for path in [*paths, *scen.values()]:
        if not os.path.exists(path):
            raise InputError(f"{path}: file not found (named as a report input); rerun the rule "
                             "that makes it or drop it from the aggregate rule's inputs")


def _figure(png: bytes | None, alt: str) -> dict[str, str] | None:
    if png is None:
        return None
    return {"alt": alt, "b64": base64.b64encode(png).decode("ascii")}


def _table(df: pd.DataFrame) -> Markup:
    return Markup(df.to_html(escape=True, na_rep="–", border=0, classes="tab"))


def _versions() -> pd.DataFrame:
    rows = []
    for p in PACKAGES:
        try:
            v = metadata.version(p)
        except metadata.PackageNotFoundError:
            v = "not installed"
        rows.append({"package": p, "version": v})
    return pd.DataFrame(rows).set_index("package")


def _registry_table() -> pd.DataFrame:
    rows = [{"metric": m.name, "family": m.family, "better": m.direction or "–",
             "summary row": m.summary_row, "ranked": "yes" if m.ranked else "no",
             "needs": ", ".join(sorted(m.requires)) or "–",
             "scenarios": ", ".join(sorted(m.scenarios)) if m.scenarios else "all",
             "description": m.description} for m in METRICS.values()]
    return pd.DataFrame(rows).set_index("metric")


def _umap(mdata, preds: Predictions, model: str, max_cells: int, seed: int) -> dict | None:
    """UMAP of modality-alone embeddings concatenated, coloured by label/modality/Leiden."""
    mods = [m for m in mdata.mod if m in preds.embeddings]
    if not mods:
        return None
    n = len(preds.obs_names)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, min(n, max_cells), replace=False))
    embs = [np.asarray(preds.embeddings[m])[keep] for m in mods]
    if len({e.shape[1] for e in embs}) != 1:
        return None
    x = np.vstack(embs).astype(np.float32)
    if not np.isfinite(x).all():
        return {"text": f"{model}: non-finite embedding, no UMAP."}
    pos = pd.Index(np.asarray(mdata.obs_names).astype(str)).get_indexer(preds.obs_names[keep])
    colours: dict[str, np.ndarray] = {}
    if LABEL in mdata.obs:
        colours["cell type"] = np.tile(np.asarray(mdata.obs[LABEL].astype(str))[pos], len(mods))
    colours["modality of origin"] = np.repeat(mods, len(keep))
    joint = preds.embeddings.get(JOINT)
    if joint is not None and np.isfinite(joint).all():
        colours["Leiden (joint embedding)"] = np.tile(leiden(np.asarray(joint)[keep], seed),
                                                      len(mods))
    coords = umap_coords(x, seed)
    title = f"{model}: test cells embedded from each modality alone ({', '.join(mods)})"
    return _figure(plots.embedding_png(coords, colours, title), f"UMAP {model}")


def _imputations(mdata, preds_by_model: dict[str, Predictions]) -> list[dict[str, Any]]:
    pairs = sorted({p for pr in preds_by_model.values() for p in pr.imputations})
    out = []
    test = np.asarray(mdata.obs[SPLIT] == TEST)
    names = np.asarray(mdata.obs_names[test]).astype(str)
    for src, tgt in pairs:
        if tgt not in mdata.mod:
            continue
        xt = mdata.mod[tgt].X[test]
        xt = xt.toarray() if hasattr(xt, "toarray") else np.asarray(xt)
        j = most_variable_feature(xt)
        feat = str(mdata.mod[tgt].var_names[j])
        figs = []
        for model, pr in preds_by_model.items():
            if (src, tgt) not in pr.imputations:
                continue
            order = pd.Index(names).get_indexer(pr.obs_names)
            pred = np.asarray(pr.imputations[(src, tgt)])[:, j]
            figs.append(_figure(plots.scatter_png(xt[order, j], pred,
                                                  f"{model}: {src}→{tgt}, {feat}"),
                                f"imputation {model} {src} {tgt}"))
        if figs:
            out.append({"src": src, "tgt": tgt, "feature": feat, "figures": figs})
    return out


def _group_visuals(mine: list[RunFiles], models: list[str], scenario_path: str | None,
                   max_umap_cells: int) -> dict[str, Any]:
    """The slow part of a group's section (its runs ``mine``, sorted): UMAPs and imputation
    scatter plots of the lowest seed with predictions per model, training curves per model,
    the scenario's provenance."""
    chosen: dict[str, str] = {}  # lowest seed with predictions, per model
    for r in mine:
        if r.predictions is not None:
            chosen.setdefault(r.model, r.predictions)
    out: dict[str, Any] = {"provenance": None, "umaps": [], "imputations": [], "curves": []}
    if scenario_path is not None:
        mdata = md.read_h5mu(scenario_path)
        out["provenance"] = _plain(mdata.uns.get(PROVENANCE, {}))
        loaded = {mo: pr for mo, path in chosen.items() if not (pr := Predictions.read(path)).failed}
        out["umaps"] = [u for mo, pr in loaded.items()
                        if (u := _umap(mdata, pr, mo, max_umap_cells, 0)) is not None]
        out["imputations"] = _imputations(mdata, loaded)
    for mo in models:
        hs = {f"seed {r.seed}": pd.read_csv(r.history) for r in mine
              if r.model == mo and r.history is not None}
        hs = {k: v for k, v in hs.items() if len(v)}
        if hs and (fig := _figure(plots.history_png(hs, f"{mo}: training curves"),
                                  f"history {mo}")) is not None:
            out["curves"].append(fig)
    return out


@contextmanager
def _visuals_of_groups(agg: Aggregate, runs: list[RunFiles],
                       scen: Mapping[tuple[str, str], str], max_umap_cells: int,
                       n_jobs: int) -> Iterator[Callable[[str, str], dict[str, Any]]]:
    """Yield ``visuals(dataset, scenario)`` (:func:`_group_visuals` of each group), drawn in up
    to ``n_jobs`` forked processes where that is safe (:func:`~dmmvae.parallel.forked_results`),
    so the caller can draw the summary figures meanwhile."""
    args = {}
    for ds, sc in agg.groups:
        models = sorted(agg.metrics.loc[(agg.metrics["dataset"] == ds)
                                        & (agg.metrics["scenario"] == sc), "model"].unique())
        mine = sorted((r for r in runs if (r.dataset, r.scenario) == (ds, sc)),
                      key=lambda r: r.key)
        args[(ds, sc)] = (mine, models, scen.get((ds, sc)), max_umap_cells)
    if min(int(n_jobs), len(args)) > 1:
        _LOG.info("report: %d sections, forked processes: %s", len(args),
                  "yes" if fork_is_safe() else "no (numba, jax or torch loaded; one by one)")
    with forked_results(_group_visuals, args, n_jobs) as get:
        yield lambda ds, sc: get((ds, sc))


def _group(agg: Aggregate, ds: str, sc: str, visuals: Mapping[str, Any],
           figures: Mapping[str, bytes | None]) -> dict[str, Any]:
    metrics = agg.metrics
    cost_rows = [m.summary_row for m in METRICS.values() if m.family == "cost"]
    cost = comparison_table(metrics, ds, sc, cost_rows)
    return {
        "anchor": f"{ds}-{sc}",
        "title": f"{ds} / {sc}",
        "ranking": _table(ranking_display(agg.group_ranking(ds, sc))),
        "comparison": _table(comparison_table(metrics, ds, sc, headline_rows())),
        "overview": _figure(figures[f"overview_{ds}_{sc}.png"], "overview"),
        "spread": _figure(figures[f"metrics_{ds}_{sc}.png"], "seed spread"),
        "pair_figures": [{"title": f"{m.name} per modality pair", "figure": fig}
                         for m in METRICS.values() if m.per_pair_figure
                         if (fig := _figure(plots.pair_png(metrics, ds, sc, f"{m.name}/"),
                                            f"{m.name} pairs")) is not None],
        "umaps": visuals["umaps"],
        "imputations": visuals["imputations"],
        "curves": visuals["curves"],
        "cost": _table(cost) if cost.shape[1] else None,
    }


def write_report(
    agg: Aggregate,
    out_html: str | os.PathLike,
    *,
    runs: Iterable[RunFiles | Mapping[str, Any]] = (),
    scenarios: Any = (),
    config: Mapping[str, Any] | None = None,
    max_umap_cells: int = 3000,
    figures: Mapping[str, bytes | None] | None = None,
    visuals: Callable[[str, str], dict[str, Any]] | None = None,
    n_jobs: int = 1,
) -> None:
    """Render ``report.html`` (atomically) from the aggregate.

    - ``runs``: :class:`dmmvae.aggregate.RunFiles` (or mappings with its fields); their
      ``predictions`` (lowest seed per model) give UMAPs and imputation scatter plots, their
      ``history`` the training curves.
    - ``scenarios``: ``{(dataset, scenario): scenario.h5mu}`` or records with keys
      ``dataset``, ``scenario``, ``path`` (needed for UMAPs, scatter plots, provenance).
    - ``config``: the workflow config (shown as is).
    - ``figures``: :func:`summary_figures` of ``agg`` when the caller has drawn them already.
    - ``visuals``: the groups' UMAPs, scatter plots and curves when the caller has started
      drawing them (:func:`_visuals_of_groups`), else drawn here in up to ``n_jobs`` processes.
    """
    runs = as_runs(runs)
    scen = _scenario_paths(scenarios)
    _check_exists(runs, scen)
    drawing = (_visuals_of_groups(agg, runs, scen, max_umap_cells, n_jobs) if visuals is None
               else nullcontext(visuals))
    with drawing as visuals:
        figures = summary_figures(agg) if figures is None else figures
        provenance: dict[str, Any] = {}
        groups = []
        for ds, sc in agg.groups:
            drawn = visuals(ds, sc)
            if drawn["provenance"] is not None:
                provenance[f"{ds}/{sc}"] = drawn["provenance"]
            groups.append(_group(agg, ds, sc, drawn, figures))
    fails = failures(agg.metrics)
    repro = workflow_reproduction(config or {}, agg.metrics)
    page = _ENV.get_template("report.html.j2").render(
        reproduction=(_table(repro.drop(columns=["dataset", "scenario"]).set_index("id"))
                      if len(repro) else None),
        paper=((config or {}).get("reproduction") or {}).get("paper", {}).get("title", ""),
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        ranking_rule=RANKING_RULE,
        weights=json.dumps(agg.weights),
        overall=_table(ranking_display(agg.overall.set_index("model"))),
        ranking_figure=_figure(figures["ranking.png"], "ranking per dataset"),
        failed=_table(fails.set_index("dataset")) if len(fails) else None,
        groups=groups,
        registry=_table(_registry_table()),
        provenance=json.dumps(provenance, indent=2, default=str),
        versions=_table(_versions()),
        config=yaml.safe_dump(_plain(dict(config or {})), sort_keys=False),
        protocol=PROTOCOL_SUMMARY,
    )
    with atomic_path(out_html) as tmp:
        tmp.write_text(page)


def _plain(obj: Any) -> Any:
    obj = _plain_io(obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)
