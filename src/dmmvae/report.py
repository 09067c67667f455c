"""``report.html``: one self-contained page (PNG figures base64-embedded, no external files,
no scripts, no network) that people read. Figures come from :mod:`dmmvae.plots`.

Contents: overall ranking and failed runs; per dataset and scenario the ranking, the headline
comparison table (mean ± sd over seeds), a scib-style overview figure, per-metric plots with
seed spread, FOSCTTM per modality pair, for each model a UMAP of the test cells embedded from
each modality alone (concatenated; coloured by cell type, modality of origin and Leiden
clusters of the joint embedding — the picture that shows whether modalities mix), imputation
scatter plots (one marker feature per modality pair: the most variable observed feature),
training curves from ``history.csv``, and the cost table; then provenance (data provenance from
``mdata.uns["provenance"]``, package versions, config, protocol summary).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import plots
from .aggregate import HEADLINE, comparison_table, failures, rank_models, read_metric_csvs
from .constants import JOINT, LABEL, PROVENANCE, SPLIT, TEST
from .io import InputError, Predictions, write_text

PACKAGES = ["dmmvae", "numpy", "scipy", "pandas", "scikit-learn", "torch", "anndata", "mudata",
            "scanpy", "scib-metrics", "jax", "umap-learn", "leidenalg", "numba", "matplotlib",
            "snakemake"]

PROTOCOL_SUMMARY = """\
Cells are split once per dataset and seed (80 % train, 20 % test); every metric is computed on
test cells only, each test cell encoded from ONE modality at a time. FOSCTTM (GLUE's
definition, exact, strict <, lower is better); label transfer (k-NN, k = 5, Euclidean, both
directions, accuracy and balanced accuracy); imputation (per-cell / per-feature Pearson and
per-cell cosine for RNA/ADT targets; flattened AUROC and per-cell Pearson for ATAC targets);
scib-metrics on the joint embedding (0.6 bio + 0.4 batch); ground-truth recovery on synthetic
data (held-out R² of a linear map from the shared latent to true shared / private factors);
realism of generated cells (classifier two-sample test, PCA 50 on observed cells, logistic
regression, 5-fold AUROC, 0.5 best); cost from Snakemake benchmark files."""

_RUN_RE = re.compile(r"([^/]+)/([^/]+)/([^/]+)/seed(\d+)/[^/]+$")
_SCEN_RE = re.compile(r"([^/]+)/([^/]+)/[^/]+$")


def _records(items: Any, n_keys: int) -> dict[tuple, str]:
    """``{key: path}`` from paths (keys parsed from ``.../{dataset}/{scenario}/{model}/seed{seed}
    /file`` or ``.../{dataset}/{scenario}/file``), records ``(*key, path)`` or a dict."""
    if isinstance(items, Mapping):
        return {tuple(k) if isinstance(k, tuple) else (k,): str(v) for k, v in items.items()}
    out = {}
    for it in items:
        if isinstance(it, str | os.PathLike):
            path = Path(it).as_posix()
            m = (_RUN_RE if n_keys == 4 else _SCEN_RE).search(path)
            if m is None:
                want = ("{dataset}/{scenario}/{model}/seed{seed}/<file>" if n_keys == 4
                        else "{dataset}/{scenario}/<file>")
                raise InputError(f"{path}: cannot tell which run it belongs to; expected a path "
                                 f"ending in {want}, or pass (keys..., path) records")
            key = tuple(m.groups())
            if n_keys == 4:
                key = (*key[:3], int(key[3]))
            out[key] = str(it)
        else:
            it = tuple(it)
            key = tuple(it[:-1])
            if n_keys == 4:
                key = (*key[:3], int(key[3]))
            out[key] = str(it[-1])
    return out


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"></figure>'


def _table(df: pd.DataFrame) -> str:
    return ("<div class='scroll'>" + df.to_html(escape=True, na_rep="–", border=0, classes="tab")
            + "</div>")


def _versions() -> pd.DataFrame:
    rows = []
    for p in PACKAGES:
        try:
            v = metadata.version(p)
        except metadata.PackageNotFoundError:
            v = "not installed"
        rows.append({"package": p, "version": v})
    return pd.DataFrame(rows).set_index("package")


def _umap_section(mdata, preds: Predictions, model: str, max_cells: int, seed: int) -> str:
    """UMAP of modality-alone embeddings concatenated, coloured by label/modality/Leiden."""
    mods = [m for m in mdata.mod if m in preds.embeddings]
    if not mods:
        return ""
    n = len(preds.obs_names)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, min(n, max_cells), replace=False))
    embs = [np.asarray(preds.embeddings[m])[keep] for m in mods]
    if len({e.shape[1] for e in embs}) != 1:
        return ""
    x = np.vstack(embs).astype(np.float32)
    if not np.isfinite(x).all():
        return f"<p>{html.escape(model)}: non-finite embedding, no UMAP.</p>"
    pos = pd.Index(np.asarray(mdata.obs_names).astype(str)).get_indexer(preds.obs_names[keep])
    colours: dict[str, np.ndarray] = {}
    if LABEL in mdata.obs:
        colours["cell type"] = np.tile(np.asarray(mdata.obs[LABEL].astype(str))[pos], len(mods))
    colours["modality of origin"] = np.repeat(mods, len(keep))
    joint = preds.embeddings.get(JOINT)
    if joint is not None and np.isfinite(joint).all():
        colours["Leiden (joint embedding)"] = np.tile(_leiden(np.asarray(joint)[keep], seed),
                                                      len(mods))
    import umap

    n_nb = int(min(15, max(2, len(x) - 1)))
    coords = umap.UMAP(n_neighbors=n_nb, random_state=seed, n_jobs=1).fit_transform(x)
    return _img(plots.embedding_png(coords, colours, f"{model}: test cells embedded from each "
                                    f"modality alone ({', '.join(mods)})"), f"UMAP {model}")


def _leiden(z: np.ndarray, seed: int) -> np.ndarray:
    import anndata as ad
    import scanpy as sc

    a = ad.AnnData(np.asarray(z, dtype=np.float32))
    sc.pp.neighbors(a, n_neighbors=int(min(15, max(2, len(z) - 1))), use_rep="X",
                    random_state=seed)
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    return np.asarray(a.obs["leiden"]).astype(str)


def _imputation_section(mdata, preds_by_model: dict[str, Predictions]) -> str:
    pairs = sorted({p for pr in preds_by_model.values() for p in pr.imputations})
    out = []
    for src, tgt in pairs:
        if tgt not in mdata.mod:
            continue
        test = np.asarray(mdata.obs[SPLIT] == TEST)
        xt = mdata.mod[tgt].X[test]
        xt = xt.toarray() if hasattr(xt, "toarray") else np.asarray(xt)
        names = np.asarray(mdata.obs_names[test]).astype(str)
        j = int(np.argmax(xt.var(axis=0)))
        feat = str(mdata.mod[tgt].var_names[j])
        figs = []
        for model, pr in preds_by_model.items():
            if (src, tgt) not in pr.imputations:
                continue
            order = pd.Index(names).get_indexer(pr.obs_names)
            obs = xt[order, j]
            pred = np.asarray(pr.imputations[(src, tgt)])[:, j]
            figs.append(_img(plots.scatter_png(obs, pred, f"{model}: {src}→{tgt}, {feat}"),
                             f"imputation {model} {src} {tgt}"))
        if figs:
            out.append(f"<h4>{html.escape(src)} → {html.escape(tgt)} (feature {html.escape(feat)},"
                       f" the most variable observed)</h4><div class='row'>{''.join(figs)}</div>")
    return "".join(out)


def write_report(
    metrics: pd.DataFrame | str | os.PathLike,
    out_html: str | os.PathLike,
    *,
    histories: Any = (),
    predictions: Any = (),
    scenarios: Any = (),
    config: Mapping[str, Any] | None = None,
    max_umap_cells: int = 3000,
) -> None:
    """Write the self-contained ``report.html`` (atomically).

    - ``metrics``: the tidy table (DataFrame) or the path of ``metrics.csv``.
    - ``histories`` / ``predictions``: ``history.csv`` / ``predictions.h5`` paths ending in
      ``{dataset}/{scenario}/{model}/seed{seed}/<file>``, or ``(dataset, scenario, model, seed,
      path)`` records. For UMAPs and scatter plots the lowest seed of each model is used.
    - ``scenarios``: ``scenario.h5mu`` paths ending in ``{dataset}/{scenario}/<file>``, or
      ``(dataset, scenario, path)`` records (needed for UMAPs, scatter plots, provenance).
    - ``config``: the workflow config (shown; ``aggregation.weights`` used for the ranking).
    """
    import mudata as md

    if not isinstance(metrics, pd.DataFrame):
        metrics = read_metric_csvs([metrics])
    config = dict(config or {})
    weights = dict((config.get("aggregation") or {}).get("weights") or {})
    hist = _records(histories, 4)
    preds_paths = _records(predictions, 4)
    scen_paths = _records(scenarios, 2)
    for path in [*hist.values(), *preds_paths.values(), *scen_paths.values()]:
        if not os.path.exists(path):
            raise InputError(f"{path}: file not found (named as a report input); rerun the rule "
                             "that makes it or drop it from the aggregate rule's inputs")
    per_group, overall = rank_models(metrics, weights)
    body: list[str] = []
    toc: list[str] = []
    body.append("<h2 id='overall'>Overall ranking</h2>")
    body.append("<p>Rank-based (1 = best per ranked metric; family rank = mean; score = weighted "
                "mean of family ranks, lower is better). Weights: "
                + html.escape(json.dumps({**_default_weights(), **weights})) + "</p>")
    body.append(_table(overall.set_index("model")))
    body.append(_img(plots.ranking_png(per_group), "ranking per dataset"))
    fails = failures(metrics)
    if len(fails):
        body.append("<h2 id='failed'>Failed runs</h2>" + _table(fails.set_index("dataset")))
    provenance: dict[str, Any] = {}
    for (ds, sc), grp in metrics.groupby(["dataset", "scenario"]):
        anchor = f"{ds}-{sc}"
        toc.append(f"<li><a href='#{html.escape(anchor)}'>{html.escape(ds)} / "
                   f"{html.escape(sc)}</a></li>")
        body.append(f"<h2 id='{html.escape(anchor)}'>{html.escape(ds)} / {html.escape(sc)}</h2>")
        rk = per_group[(per_group["dataset"] == ds) & (per_group["scenario"] == sc)]
        body.append("<h3>Ranking</h3>" + _table(rk.drop(columns=["dataset", "scenario"])
                                                .set_index("model").dropna(axis=1, how="all")
                                                .round(3)))
        body.append("<h3>Comparison (mean ± sd over seeds)</h3>"
                    + _table(comparison_table(metrics, ds, sc, HEADLINE)))
        body.append("<h3>Overview</h3>" + _img(plots.overview_png(metrics, ds, sc), "overview"))
        body.append("<h3>Per-metric, seed spread</h3>"
                    + _img(plots.seed_spread_png(metrics, ds, sc), "seed spread"))
        fos = plots.pair_png(metrics, ds, sc, "foscttm/")
        if fos is not None:
            body.append("<h3>FOSCTTM per modality pair</h3>" + _img(fos, "foscttm pairs"))
        # per-model pictures from predictions (lowest seed)
        models = sorted(grp["model"].unique())
        chosen: dict[str, str] = {}
        for mo in models:
            seeds = sorted(k[3] for k in preds_paths if k[:3] == (ds, sc, mo))
            if seeds:
                chosen[mo] = preds_paths[(ds, sc, mo, seeds[0])]
        mdata = None
        if (ds, sc) in scen_paths:
            mdata = md.read_h5mu(scen_paths[(ds, sc)])
            provenance[f"{ds}/{sc}"] = _plain(mdata.uns.get(PROVENANCE, {}))
        if mdata is not None and chosen:
            loaded = {}
            for mo, path in chosen.items():
                pr = Predictions.read(path)
                if not pr.failed:
                    loaded[mo] = pr
            umaps = "".join(_umap_section(mdata, pr, mo, max_umap_cells, 0)
                            for mo, pr in loaded.items())
            if umaps:
                body.append("<h3>Embeddings: do the modalities mix?</h3>" + umaps)
            imp = _imputation_section(mdata, loaded)
            if imp:
                body.append("<h3>Imputation: predicted vs observed</h3>" + imp)
        curves = []
        for mo in models:
            hs = {f"seed {k[3]}": pd.read_csv(p) for k, p in sorted(hist.items())
                  if k[:3] == (ds, sc, mo)}
            hs = {k: v for k, v in hs.items() if len(v)}
            if hs:
                curves.append(_img(plots.history_png(hs, f"{mo}: training curves"),
                                   f"history {mo}"))
        if curves:
            body.append("<h3>Training curves</h3>" + "".join(curves))
        cost_names = ["train_seconds", "train_max_rss_mb", "eval_seconds", "eval_max_rss_mb",
                      "epochs"]
        cost = comparison_table(metrics, ds, sc, cost_names)
        if cost.shape[1]:
            body.append("<h3>Cost</h3>" + _table(cost))
    body.append("<h2 id='provenance'>Provenance</h2>")
    body.append("<h3>Data</h3><pre>" + html.escape(json.dumps(provenance, indent=2,
                                                             default=str)) + "</pre>")
    body.append("<h3>Package versions</h3>" + _table(_versions()))
    import yaml

    body.append("<h3>Config</h3><pre>" + html.escape(yaml.safe_dump(_plain(config),
                                                                    sort_keys=False)) + "</pre>")
    body.append("<h3>Protocol</h3><p>" + html.escape(PROTOCOL_SUMMARY) + "</p>")
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = _PAGE.format(
        generated=html.escape(now),
        toc="".join(toc),
        body="\n".join(body),
    )
    write_text(out_html, page)


def _default_weights() -> dict[str, float]:
    from .aggregate import DEFAULT_WEIGHTS

    return dict(DEFAULT_WEIGHTS)


def _plain(obj: Any) -> Any:
    from .io import _plain as plain

    obj = plain(obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>dmmvae benchmark report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; color: #222; }}
table.tab {{ border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1em; }}
table.tab th, table.tab td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
table.tab th {{ background: #f0f0f0; }}
figure {{ display: inline-block; margin: 0.3em; }}
img {{ max-width: 100%; }}
pre {{ background: #f7f7f7; padding: 0.6em; font-size: 12px; overflow-x: auto; }}
.row {{ display: flex; flex-wrap: wrap; }}
.scroll {{ overflow-x: auto; }}
</style></head>
<body>
<h1>Multimodal integration benchmark</h1>
<p>Generated {generated}. Lower FOSCTTM, higher accuracy/correlation/AUROC; realism AUROC best at
0.5. Every number is computed on test cells only (see Protocol).</p>
<ul><li><a href="#overall">Overall ranking</a></li>{toc}<li><a href="#provenance">Provenance</a>
</li></ul>
{body}
</body></html>
"""
