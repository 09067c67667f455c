"""Diagonal integration over several train/test partitions: every method, intervals, verdicts.

The question of the D-MMVAE project: can a method align modalities that were never measured in
the same cell? Datasets and models come from a shipped config (``config/diagonal.yaml``: the
stand-ins of ``../shared/data``, the pbmc68k gene split, the references at their authors'
recipes, D-MMVAE's variants and the ablation steps). For each dataset and split seed the
workflow's own functions run: ``prepare_dataset`` -> ``preprocess(seed=split)`` (PROTOCOL split,
everything fitted on that split's train cells) -> ``make_scenario("diagonal")`` -> the method's
``fit`` (training seed = split seed) / ``predict`` -> ``evaluate_predictions``. One process runs
them all, so scib-metrics' compilation is paid once.

Written (appended run by run; a run already in the CSV is skipped, so a long benchmark spans
sessions): ``benchmarks/results/diagonal.csv``, columns ``dataset, link_fraction, model, split,
seed, metric, value, note, settings``. ``settings`` is a digest of the variant's config entry on
that dataset's modality pair: a run whose rows carry another digest (its entry changed since) is
left out of the tables and run again, its old rows replaced. Metrics: ``foscttm/mean`` (lower is better),
``label_transfer_acc/mean``, ``label_transfer_bacc/mean``, ``mixing/batch_correction``,
``mixing/total``, ``train_seconds`` and ``epochs_run``; a method that stops (missing links, not
installed, a training failure) writes one ``failed`` row whose note says why.

Printed and written beside the CSV, named after it (``diagonal`` below): ``diagonal_summary.md``
(mean and 95 % t-interval over splits), ``diagonal_claims.csv`` (each D-MMVAE model minus the
best reference on each dataset and metric, per split, with interval and verdict better / level /
worse), the ablation table ``ablation.csv`` (what each part of ``dmmvae_global`` and of
``dmmvae_gw`` adds, per split; ``ablation_<name>.csv`` for another CSV) and markdown tables for
the README and ``docs/`` (``diagonal_headline.md``, ``diagonal_verdicts.md``, ``ablation.md``;
``diagonal_designs.md``: the mission's other designs and D-MMVAE's best variant against them).
Where datasets differ only in their link fraction (``config/link_fraction.yaml``: the gene
split's ``link_fraction``, or ``preprocessing.links.keep_fraction`` of a real dataset), also the
curve ``<name>_curve.csv`` / ``.png``: FOSCTTM and label transfer against the link fraction.

Usage::

    python benchmarks/bench_diagonal.py                                  # everything (many hours)
    python benchmarks/bench_diagonal.py --datasets cite_bmmc600 --models random seurat_v3
    python benchmarks/bench_diagonal.py --splits 0 1 2 3 4 --models glue  # resumes
    python benchmarks/bench_diagonal.py --report-only
    python benchmarks/bench_diagonal.py --config config/link_fraction.yaml \
        --out benchmarks/results/link_fraction.csv                    # the weak-link curves
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from _common import one_thread_per_fit

one_thread_per_fit()  # before numpy loads

import pandas as pd  # noqa: E402
from _common import ROOT, SHARED, diagonal_scenario  # noqa: E402

from dmmvae.compare import (  # noqa: E402
    Interval,
    claims,
    interval,
    paired_difference,
    per_split,
    summary,
)
from dmmvae.config import ConfigError, Run, check_local_paths, expand_models, load_config  # noqa: E402
from dmmvae.io import InputError, atomic_path  # noqa: E402

CONFIG = ROOT / "config" / "diagonal.yaml"
OUT_CSV = ROOT / "benchmarks" / "results" / "diagonal.csv"
#: ``settings``: :func:`settings_id` of the variant that wrote the row (empty in rows written
#: before it was recorded, which are taken as the config's)
COLUMNS = ["dataset", "link_fraction", "model", "split", "seed", "metric", "value", "note",
           "settings"]
METRICS = ("foscttm/mean", "label_transfer_acc/mean", "label_transfer_bacc/mean",
           "mixing/batch_correction", "mixing/total")
#: the claims: these models against the best of the references, per dataset and metric
OURS = ("dmmvae", "dmmvae_global", "dmmvae_gw", "dmmvae_noanchor")
REFERENCES = ("seurat_v3", "gw_ot", "glue", "maxfuse", "seurat_v3_tuned", "maxfuse_tuned",
              "glue_tuned", "glue_ld32")
CLAIM_METRICS = ("foscttm/mean", "label_transfer_acc/mean")
#: the ablations' metrics: the claims', and modality mixing (PROTOCOL: scib-metrics' batch
#: correction on the stacked single-modality test embeddings, batch = modality), which says
#: whether a step that does not align at least mixes the modalities
ABLATION_METRICS = (*CLAIM_METRICS, "mixing/batch_correction")
#: the mission's other designs (this package's implementations, not their authors' code): a
#: table of their own, and D-MMVAE's variants against the best of them
DESIGNS = ("scmodal", "mmaavi", "mmaavi_graph", "mvae", "mmvae", "mopoe", "mmvae_plus",
           "mlp_fusion")
#: the ablations: per model, a ladder of steps, each adding one part to the step before; the
#: first ``n_baselines`` steps are references of the ladder (compared with nothing)
#: dmmvae_global's ladder: (label, model) per step
GLOBAL_LADDER = (("anchors alone: the CCA space, no VAE", "abl_anchors_only"),
                 ("VAE, no aligning part", "abl_vae"),
                 ("VAE + CCA anchors", "abl_vae_anchors"),
                 ("+ graph decoders", "abl_graph"),
                 ("+ latent adversary (= dmmvae_global)", "dmmvae_global"),
                 ("+ output adversary on cross-generated cells", "abl_output_adv"),
                 ("+ shared core (graph decoders off: exclusive)", "abl_shared_core"),
                 ("+ cycle", "abl_cycle"))


def ladder_at(ladder, suffix: str):
    """The same ladder at other settings: every step's model named with ``suffix``, but the VAE
    without an aligning part (``abl_vae``), which reads none of the settings that differ."""
    return tuple((label.replace("dmmvae_global", f"dmmvae_global{suffix}"),
                  model if model == "abl_vae" else f"{model}{suffix}") for label, model in ladder)


ABLATIONS = {
    "dmmvae_global": (2, GLOBAL_LADDER),
    # the same ladder at dmmvae_global's settings before they were asked again on 2026-11-26
    # (5 components, 20 neighbours, the old discriminator: dmmvae_global_c5k20)
    "dmmvae_global_c5k20": (2, ladder_at(GLOBAL_LADDER, "_c5k20")),
    # what aligns the anchor-free model: its graph decoders or its latent adversary, each added
    # to the same VAE at dmmvae_noanchor's settings (network, budget) in one stage, then GLUE's
    # two stages (they pretrain against the adversary, so come last), then its recipe for
    # RNA+ATAC (GLUE's parts rebuilt in it; nothing changes on other pairs)
    "dmmvae_noanchor": (1, (("anchor-free: VAE, no aligning part", "abl_noanchor_vae"),
                            ("+ graph decoders", "abl_noanchor_graph"),
                            ("+ latent adversary", "dmmvae_noanchor_onestage"),
                            ("+ GLUE's two stages", "dmmvae_noanchor_norecipe"),
                            ("+ GLUE's parts on RNA+ATAC (= dmmvae_noanchor)",
                             "dmmvae_noanchor"))),
    # GLUE's own ladder, to set beside the anchor-free one: its graph-tied VAE (lam_align 0),
    # then its first stage (the adversary on noised codes), then its balanced second stage
    "glue": (1, (("GLUE's VAE: graph decoders, no adversary", "abl_glue_vae"),
                 ("+ its adversary on noised codes (first stage)", "abl_glue_pretrain"),
                 ("+ balanced, noise fading, second stage (= glue)", "glue"))),
    # GLUE's graph-tied VAE on the ATAC input dmmvae reads, then on its own (the LSI over all peaks)
    "abl_glue_vae": (1, (("GLUE's VAE on the kept peaks' LSI (dmmvae's ATAC input)",
                          "abl_glue_vae_keptlsi"),
                         ("+ the LSI over all peaks (GLUE's input)", "abl_glue_vae"))),
    # dmmvae_gw's GW coupling alone, then the VAE it pulls, then its recipe for RNA+ADT (the
    # anchors refreshed from the latent space; nothing changes on other pairs)
    "dmmvae_gw": (1, (("GW coupling alone, no VAE", "abl_gw_coupling_only"),
                      ("+ VAE", "dmmvae_gw_norefresh"),
                      ("+ refreshed anchors, RNA+ADT (= dmmvae_gw)",
                       "dmmvae_gw"))),
}


def run_one(sc, variant: dict, seed: int, evaluation: dict) -> tuple[dict[str, float], str]:
    """Fit and score one method on one split: ``({metric: value}, note)``; a method that stops
    gives ``({"failed": nan}, reason)``."""
    from dmmvae.evaluate import evaluate_predictions
    from dmmvae.methods import (
        MissingDependencyError,
        NotApplicableError,
        TrainingFailure,
        apply_recipe,
        build_model,
        modality_kinds,
    )

    params, training, recipe = apply_recipe(variant["params"], variant["training"],
                                            variant.get("recipes"), modality_kinds(sc))
    method = build_model(variant["model"], params)
    t0 = time.perf_counter()
    try:
        history = method.fit(sc, training=training, seed=seed, device="cpu")
    except (MissingDependencyError, NotApplicableError, TrainingFailure) as err:
        reason = getattr(err, "reason", type(err).__name__)
        return {"failed": float("nan")}, f"{reason}: {err}"[:500]
    seconds = time.perf_counter() - t0
    preds = method.predict(sc)
    df = evaluate_predictions(sc, preds, evaluation)
    values = df.set_index("metric")["value"]
    out = {m: float(values[m]) for m in METRICS if m in values}
    out["train_seconds"] = seconds
    out["epochs_run"] = float(len(history)) if history is not None else float("nan")
    # a staged method (GLUE) reports its epochs per stage, and the peaks its ATAC LSI read
    for stage, n in (preds.info.get("epochs_per_stage") or {}).items():
        out[f"epochs_run/{stage}"] = float(n)
    for mod, n in (preds.info.get("atac_lsi_peaks") or {}).items():
        if n:
            out[f"lsi_peaks/{mod}"] = float(n)
    notes = [str(n) for n in (preds.info.get("notes") or []) if "no imputation" not in str(n)]
    if recipe:
        notes.insert(0, f"recipe {recipe}")
    return out, "; ".join(notes)


def settings_key(variant: dict, kinds: tuple[str, ...]) -> str:
    """A variant's settings on data of these modality kinds: its recipe for the pair applied,
    the model's and the training loop's defaults filled in. Two variants with the same key fit
    the same model (e.g. a variant and the same without its RNA+ATAC recipe, on RNA+ADT)."""
    import json

    from dmmvae.methods import apply_recipe, build_model
    from dmmvae.methods.training.loop import resolve_training

    params, training, _ = apply_recipe(variant["params"], variant["training"],
                                       variant.get("recipes"), kinds)
    return json.dumps([variant["model"], build_model(variant["model"], params).params,
                       resolve_training(training)], sort_keys=True, default=str)


def settings_id(variant: dict, kinds: tuple[str, ...]) -> str:
    """A short digest of a variant's entry as the config writes it for data of these kinds (its
    model, parameters and training settings, its recipe for the pair applied), recorded in each
    row it writes: a row whose digest is not the config's was written by other settings."""
    import hashlib
    import json

    from dmmvae.methods import apply_recipe

    params, training, _ = apply_recipe(variant["params"], variant["training"],
                                       variant.get("recipes"), kinds)
    text = json.dumps([variant["model"], params, training], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def dataset_kinds(config: dict, name: str) -> tuple[str, ...]:
    """The modality kinds of the config's dataset ``name`` (its prepared data, cached)."""
    import tempfile

    from dmmvae.data.prepare import prepare_dataset
    from dmmvae.methods import modality_kinds

    raw = prepare_dataset(name, config["datasets"][name], cache_dir=tempfile.gettempdir())
    return modality_kinds(raw)


def stale_runs(rows: pd.DataFrame, config: dict, models: dict[str, dict],
               kinds: dict[str, tuple[str, ...]]) -> set[tuple[str, str, int]]:
    """(dataset, model, split) of the runs in ``rows`` written by settings other than the
    config's: a recorded ``settings`` digest that is not the variant's :func:`settings_id` on
    that dataset (``kinds``: each dataset's modality kinds; datasets and models the config does
    not define, and rows without a digest, are not judged)."""
    if "settings" not in rows:
        return set()
    recorded = rows[rows["settings"].notna() & (rows["settings"].astype(str) != "")]
    recorded = recorded[recorded["dataset"].isin(list(kinds)) & recorded["model"].isin(list(models))]
    ids = {(d, m): settings_id(models[m], kinds[d])
           for d, m in set(zip(recorded["dataset"], recorded["model"], strict=True))}
    return {(d, m, int(s)) for d, m, s, v in zip(recorded["dataset"], recorded["model"],
                                                 recorded["split"], recorded["settings"],
                                                 strict=True) if str(v) != ids[(d, m)]}


def drop_runs(rows: pd.DataFrame, runs: set[tuple[str, str, int]]) -> pd.DataFrame:
    """``rows`` without those of the (dataset, model, split) ``runs``."""
    if not runs:
        return rows
    run = list(zip(rows["dataset"], rows["model"], rows["split"].astype(int), strict=True))
    return rows[[r not in runs for r in run]]


def rewrite_csv(path: Path, keep) -> None:
    """Rewrite the CSV at ``path`` with the rows ``keep(row)`` accepts (a dict of the row's text
    fields; the header gains any column of :data:`COLUMNS` it lacks, empty), the other rows'
    text unchanged, through :func:`dmmvae.io.atomic_path`."""
    import csv

    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if keep(r)]
    header += [c for c in COLUMNS if c not in header]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, header, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)


def same_settings_rows(rows: pd.DataFrame, keys: dict[str, str], model: str, dataset: str,
                       split: int) -> tuple[dict[str, float], str] | None:
    """The scores of another variant already run on this dataset and split whose settings here
    are ``model``'s (``keys``: each variant's :func:`settings_key` on this dataset's pair), with
    a note naming it; None when there is none."""
    for other, key in keys.items():
        if other == model or key != keys[model]:
            continue
        hit = rows[(rows["dataset"] == dataset) & (rows["model"] == other)
                   & (rows["split"] == split)]
        if len(hit):
            note = str(hit["note"].iloc[0]) if hit["note"].notna().iloc[0] else ""
            return (dict(zip(hit["metric"], hit["value"].astype(float), strict=True)),
                    f"same settings as {other} on this modality pair: that fit's scores"
                    + (f"; {note}" if note else ""))
    return None


def inputs_without_links(sc) -> str:
    """A fingerprint of everything in the scenario ``sc`` but its links (``uns``): each
    modality's matrix, layers, ``obsm`` and feature names, and the cells' split, masks and
    labels. Two datasets that differ only in their links have the same fingerprint."""
    import hashlib

    import numpy as np
    import scipy.sparse as sp

    h = hashlib.sha1()

    def add(x) -> None:
        if sp.issparse(x):
            x = x.tocsr()
            for part in (x.data, x.indices, x.indptr, np.asarray(x.shape)):
                h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(np.ascontiguousarray(np.asarray(x)).tobytes())

    # the cells' own columns (split, masks, labels), not the copies MuData keeps per modality
    obs = sc.obs[sorted(c for c in sc.obs if ":" not in c)].astype(str)
    h.update("\n".join(obs.columns).encode())
    h.update(pd.util.hash_pandas_object(obs, index=True).to_numpy().tobytes())
    for name, ad in sc.mod.items():
        h.update(name.encode())
        h.update("\n".join(map(str, ad.var_names)).encode())
        add(ad.X)
        for key in sorted(ad.layers):
            add(ad.layers[key])
        for key in sorted(ad.obsm):
            add(ad.obsm[key])
    for key in sorted(sc.obsm):
        if key not in sc.mod:
            add(sc.obsm[key])
    return h.hexdigest()


def variants(config: dict) -> dict[str, dict]:
    """Model name -> {model, params, training, recipes} with the config's training defaults
    merged (a recipe's ``training`` overrides them for its modality pair)."""
    out = {}
    for name, spec in expand_models(config["models"]).items():
        out[name] = {"model": spec["model"], "params": spec["params"],
                     "training": {**config["training"], **spec["training"]},
                     "recipes": spec["recipes"]}
    return out


def link_fraction(spec: dict) -> float | None:
    """The dataset's link fraction: the gene split's ``link_fraction`` (genes shared by the
    halves), or ``preprocessing.links.keep_fraction`` (a fraction of a real dataset's links)."""
    frac = (spec.get("params") or {}).get("link_fraction")
    if frac is None:
        frac = ((spec.get("preprocessing") or {}).get("links") or {}).get("keep_fraction")
    return frac


def curve_family(dataset: str) -> str:
    """The dataset a link-fraction point belongs to: its name without the ``_link<f>`` /
    ``_links<f>`` suffix (``snare_links0.05`` -> ``snare``)."""
    return re.sub(r"_links?[0-9.]+$", "", dataset)


def link_fraction_curve(rows: pd.DataFrame, metrics=CLAIM_METRICS) -> pd.DataFrame:
    """Per family of datasets that differ only in their link fraction, model and metric: the
    mean and 95 % interval over splits at each fraction (rows without a fraction left out)."""
    rows = rows[rows["link_fraction"].notna()]
    out = []
    for (ds, frac, model), g in rows.groupby(["dataset", "link_fraction", "model"], sort=False):
        for metric in metrics:
            v = interval(g.loc[g["metric"] == metric].groupby("split")["value"].mean())
            if v.n:
                out.append({"family": curve_family(ds), "link_fraction": float(frac),
                            "model": model, "metric": metric, "n_splits": v.n, "mean": v.mean,
                            "low": v.low, "high": v.high})
    return pd.DataFrame(out).sort_values(["family", "metric", "model", "link_fraction"]) \
        if out else pd.DataFrame()


def curve_figure(curve: pd.DataFrame, path: Path, metric: str = "foscttm/mean") -> None:
    """One panel per family: ``metric`` against the link fraction, a line per model with its
    95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = curve[curve["metric"] == metric]
    fams = list(dict.fromkeys(sub["family"]))
    colour = {m: f"C{i}" for i, m in enumerate(sorted(sub["model"].unique()))}  # one per model
    fig, axes = plt.subplots(1, len(fams), figsize=(4.5 * len(fams), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], fams, strict=True):
        for model, g in sub[sub["family"] == fam].groupby("model"):
            g = g.sort_values("link_fraction")
            x = g["link_fraction"].to_numpy()
            ax.plot(x, g["mean"], marker="o", label=model, color=colour[model])
            ax.fill_between(x, g["low"], g["high"], alpha=0.15, color=colour[model])
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_title(fam)
        ax.set_xlabel("link fraction")
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablation_table(rows: pd.DataFrame, metrics=ABLATION_METRICS) -> pd.DataFrame:
    """Per ablated model, dataset and metric: each step's mean and its per-split difference to
    the step before (interval and verdict)."""
    out = []
    for ablated, (n_baselines, ladder) in ABLATIONS.items():
        names = [m for _, m in ladder]
        for ds in rows["dataset"].drop_duplicates():
            for metric in metrics:
                for k, (label, model) in enumerate(ladder):
                    sel = rows[(rows["dataset"] == ds) & (rows["model"] == model)
                               & (rows["metric"] == metric)]
                    if sel.empty:
                        continue
                    row = {"ablation": ablated, "dataset": ds, "metric": metric, "step": label,
                           "model": model, "n_splits": sel["split"].nunique(),
                           "mean": sel["value"].mean()}
                    before = rows[(rows["dataset"] == ds) & (rows["model"] == names[k - 1])]
                    if k >= n_baselines and not before.empty:
                        d = paired_difference(rows, ds, model, names[k - 1], metric)
                        row.update({"added": d["difference"], "low": d["low"],
                                    "high": d["high"], "verdict": d["verdict"]})
                    out.append(row)
    return pd.DataFrame(out)


#: the headline table's columns: controls, the references, D-MMVAE's variants
HEADLINE_MODELS = ("random", *REFERENCES, *OURS)
METRIC_LABEL = {"foscttm/mean": "FOSCTTM ↓", "label_transfer_acc/mean": "label transfer ↑"}


def headline_markdown(rows: pd.DataFrame, models=HEADLINE_MODELS) -> str:
    """dataset x metric rows, one column per model: mean [95 % interval] (splits)."""
    out = []
    for ds in rows["dataset"].drop_duplicates():
        for metric in CLAIM_METRICS:
            row = {"dataset": ds, "metric": METRIC_LABEL[metric]}
            for model in models:
                v = interval(per_split(rows, ds, model, metric))
                row[f"`{model}`"] = "—" if v.n == 0 else f"{v.text()} ({v.n})".replace(
                    f" (n={v.n})", "")
            out.append(row)
    return pd.DataFrame(out).to_markdown(index=False)


def verdicts_markdown(claim: pd.DataFrame, against: str = "reference") -> str:
    """Per dataset and metric: the best D-MMVAE variant minus the best reference (or design),
    per split."""
    out = []
    for (ds, metric), g in claim.groupby(["dataset", "metric"], sort=False):
        sign = 1.0 if metric.startswith("foscttm") else -1.0
        g = g[g["n_splits"] >= 2]
        if g.empty:
            continue
        best = g.loc[(sign * g["difference"]).idxmin()]
        out.append({"dataset": ds, "metric": METRIC_LABEL.get(metric, metric),
                    f"best {against}": f"`{best['reference']}`",
                    "best D-MMVAE": f"`{best['ours']}`",
                    "difference [95 % CI]": f"{best['difference']:+.3f} [{best['low']:+.3f}, "
                                            f"{best['high']:+.3f}]",
                    "splits": int(best["n_splits"]), "verdict": f"**{best['verdict']}**"})
    return pd.DataFrame(out).to_markdown(index=False)


#: a method's FOSCTTM against the ``random`` control's, per split, in words
CHANCE_WORDS = {"better": "aligned", "level": "chance", "worse": "**anti-aligned**", "n/a": "n/a"}


def chance_markdown(rows: pd.DataFrame, models, metric: str = "foscttm/mean") -> str:
    """model rows, one column per dataset: the model's ``metric`` minus the ``random``
    control's on the same splits (:func:`dmmvae.compare.claims` with ``random`` as the one
    reference), [95 % interval], and what that says (aligned / chance / anti-aligned), so a
    method that cannot align is seen not to."""
    diff = claims(rows, list(models), ["random"], [metric])
    if diff.empty:
        return ""
    cells = diff.assign(cell=[f"{CHANCE_WORDS[d.verdict]} {d.difference:+.3f} "
                              f"[{d.low:+.3f}, {d.high:+.3f}]" for d in diff.itertuples()])
    table = (cells.pivot(index="ours", columns="dataset", values="cell")
             .reindex(index=list(models), columns=diff["dataset"].unique()).fillna("—"))
    table.index = [f"`{m}`" for m in table.index]
    return table.rename_axis("model").reset_index().to_markdown(index=False)


def ablation_markdown(abl: pd.DataFrame, metric: str = "foscttm/mean") -> str:
    """Per ablated model, a heading and a table of steps x datasets: each step's mean and its
    change against the step above (ladders that share a step label stay apart)."""
    parts = []
    for ablated, sub in abl[abl["metric"] == metric].groupby("ablation", sort=False):
        cells: dict[str, dict[str, str]] = {}
        for _, r in sub.iterrows():
            text = f"{r['mean']:.3f}"
            if pd.notna(r.get("added")):
                ci = ("n/a" if pd.isna(r["low"]) else f"[{r['low']:+.3f}, {r['high']:+.3f}] "
                      f"{r['verdict']}")
                text += f" ({r['added']:+.3f} {ci})"
            cells.setdefault(r["step"], {})[r["dataset"]] = f"{text} n={r['n_splits']}"
        steps = list(dict.fromkeys(sub["step"]))
        datasets = list(dict.fromkeys(sub["dataset"]))
        table = pd.DataFrame([{"step": s, **{d: cells[s].get(d, "—") for d in datasets}}
                              for s in steps])
        parts += [f"### `{ablated}`", "", table.to_markdown(index=False), ""]
    return "\n".join(parts).rstrip("\n")


#: the README's "What aligns" table: these ladders, these stand-ins under these names
README_LADDERS = ("dmmvae_global", "dmmvae_gw", "dmmvae_noanchor", "glue")
#: docs/diagonal.md's mixing table: the anchor-free ladder beside GLUE's
MIXING_LADDERS = ("dmmvae_noanchor", "glue")
README_DATASETS = {"cite_bmmc600": "CITE", "teaseq_pbmc1262": "TEA-seq",
                   "snare_mop5232": "SNARE-seq", "genesplit_link0.1": "gene split 0.1",
                   "genesplit_link0": "gene split, no links"}


def ablation_steps_markdown(abl: pd.DataFrame, metric: str = "foscttm/mean",
                            ladders=README_LADDERS, datasets=README_DATASETS) -> str:
    """One table of ``ladders``' steps x ``datasets`` (the README's "What aligns"): a ladder's
    first steps their mean, every later step its change against the step above, [95 %
    interval] and verdict; ``(n=k)`` where fewer than 5 splits hold both steps; "—" where a
    later step has no step above it on that stand-in."""
    sub = abl[(abl["metric"] == metric) & abl["ablation"].isin(ladders)]
    rows = []
    for ablated in ladders:
        lad = sub[sub["ablation"] == ablated]
        n_baselines, ladder = ABLATIONS[ablated]
        labels = [label for label, _ in ladder]
        held = set(lad["step"])
        for k, step in enumerate(labels):
            if step not in held:
                continue
            label = step.replace(" (graph decoders off: exclusive)", "")
            row = {"step": label.replace(f"(= {ablated})", f"(= `{ablated}`)")}
            for ds, name in datasets.items():
                cell = lad[(lad["step"] == step) & (lad["dataset"] == ds)]
                if cell.empty:
                    row[name] = "—"
                    continue
                r = cell.iloc[0]
                if k >= n_baselines and pd.isna(r.get("added")):
                    row[name] = "—"
                    continue
                n = int(r["n_splits"])
                above = lad[(lad["step"] == labels[k - 1]) & (lad["dataset"] == ds)] if k else cell
                n = min(n, int(above.iloc[0]["n_splits"])) if not above.empty else n
                tag = "" if n >= 5 else f" (n={n})"
                verdict = r["verdict"] if isinstance(r.get("verdict"), str) else "n/a"
                row[name] = (f"{r['mean']:.3f}{tag}" if pd.isna(r.get("added")) else
                             f"{r['added']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] "
                             f"{verdict}{tag}")
            rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def mixing_steps_markdown(abl: pd.DataFrame) -> str:
    """docs/diagonal.md's mixing table: :func:`ablation_steps_markdown` of ``MIXING_LADDERS`` in
    modality mixing (higher: the modalities' codes more mixed), the stand-ins with links."""
    datasets = {k: v for k, v in README_DATASETS.items() if k != "genesplit_link0"}
    return ablation_steps_markdown(abl, "mixing/batch_correction", MIXING_LADDERS, datasets)


def headline_claims(rows: pd.DataFrame) -> pd.DataFrame:
    """D-MMVAE's variants against the best reference per dataset and metric, per split (the
    README's results table is ``verdicts_markdown`` of this for the committed ``diagonal.csv``)."""
    ok = rows[rows["metric"] != "failed"]
    return claims(ok, list(OURS), list(REFERENCES), list(CLAIM_METRICS))


def report(rows: pd.DataFrame, out: Path, stale: list[tuple[str, str, int]] = ()) -> None:
    """Print and write the tables of ``rows`` beside ``out``; ``stale``: the runs left out of
    them because other settings than the config's wrote them (listed in the summary)."""
    ok = rows[rows["metric"] != "failed"]
    table = summary(ok, [*METRICS, "train_seconds"])
    failed = rows[rows["metric"] == "failed"]
    with pd.option_context("display.width", 250, "display.max_columns", 20,
                           "display.max_colwidth", 40):
        print(table.to_string())
    claim = headline_claims(rows)
    abl = ablation_table(ok)
    md = ["# Diagonal benchmark: mean [95 % interval] over splits", "",
          f"{ok['split'].nunique()} split seed(s); rows from `{out.name}`.", "",
          table.reset_index().to_markdown(index=False), ""]
    out.with_name(f"{out.stem}_headline.md").write_text(headline_markdown(ok) + "\n")
    if not claim.empty:
        claim.to_csv(out.with_name(f"{out.stem}_claims.csv"), index=False)
        out.with_name(f"{out.stem}_verdicts.md").write_text(verdicts_markdown(claim) + "\n")
        md += ["## Ours minus the best reference, per split", "",
               claim.to_markdown(index=False, floatfmt=".3f"), ""]
        print(claim.to_string())
    if not abl.empty:
        stem = "ablation" if out.stem == "diagonal" else f"ablation_{out.stem}"
        abl.to_csv(out.with_name(f"{stem}.csv"), index=False)
        out.with_name(f"{stem}.md").write_text(ablation_markdown(abl) + "\n")
        if out.stem == "diagonal":  # the README's "What aligns" table
            out.with_name("ablation_steps.md").write_text(ablation_steps_markdown(abl) + "\n")
            out.with_name("ablation_mixing.md").write_text(mixing_steps_markdown(abl) + "\n")
        md += ["## Ablations: what each part adds", "", abl.to_markdown(index=False, floatfmt=".3f"), ""]
    designs = claims(ok, list(OURS), list(DESIGNS), list(CLAIM_METRICS))
    if not designs.empty:  # the mission's designs beside D-MMVAE, the references for scale
        text = ["# The mission's designs on the diagonal scenario", "",
                headline_markdown(ok, ("random", *DESIGNS, *OURS)), "",
                "D-MMVAE's best variant minus the best design, per split:", "",
                verdicts_markdown(designs, "design"), "",
                "Every method's FOSCTTM minus the `random` control's, per split (aligned: "
                "below chance; anti-aligned: above it, matched cells pushed apart):", "",
                chance_markdown(ok, (*REFERENCES, *DESIGNS, *OURS)), ""]
        out.with_name(f"{out.stem}_designs.md").write_text("\n".join(text))
    curve = link_fraction_curve(ok)
    if not curve.empty and curve.groupby("family")["link_fraction"].nunique().max() >= 3:
        curve.to_csv(out.with_name(f"{out.stem}_curve.csv"), index=False)
        curve_figure(curve, out.with_name(f"{out.stem}_curve.png"))
        wide = curve[curve["metric"] == "foscttm/mean"].assign(
            cell=lambda d: [Interval(r.mean, r.low, r.high, r.n_splits).text() for r in d.itertuples()])
        md += ["## FOSCTTM against the link fraction", "",
               wide.pivot_table(index=["family", "model"], columns="link_fraction",
                                values="cell", aggfunc="first").reset_index()
               .to_markdown(index=False), ""]
    if stale:
        print(f"\n{len(stale)} run(s) left out of the tables: written by other settings than "
              "the config's (run the benchmark again to replace them)")
        md += ["## Runs left out: written by other settings than the config's", "",
               "Running the benchmark again replaces them.", "",
               pd.DataFrame(stale, columns=["dataset", "model", "split"]).to_markdown(index=False),
               ""]
    if not failed.empty:
        md += ["## Runs that stopped", "",
               failed[["dataset", "model", "split", "note"]].to_markdown(index=False), ""]
    out.with_name(f"{out.stem}_summary.md").write_text("\n".join(md))
    print(f"\n{out}: {len(rows)} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", type=Path, default=OUT_CSV)
    ap.add_argument("--report-only", action="store_true", help="only the tables of --out")
    args = ap.parse_args()
    os.chdir(ROOT)  # the config's paths are relative to the project, as for Snakemake
    config = load_config(args.config)
    models = variants(config)
    datasets = args.datasets or list(config["datasets"])
    chosen = args.models or list(models)
    for name, known in (("dataset", config["datasets"]), ("model", models)):
        unknown = sorted(set(datasets if name == "dataset" else chosen) - set(known))
        if unknown:
            sys.exit(f"{args.config}: no {name} {unknown}; defined: {sorted(known)}")
    pairs: dict[str, tuple[str, ...]] = {}  # each dataset's modality kinds, read once
    if not args.report_only:
        try:
            check_local_paths(config, [Run(d, "diagonal", m, 0) for d in datasets for m in chosen])
        except ConfigError as err:
            sys.exit(f"{err} (the stand-ins live in {SHARED})")
        import torch

        from dmmvae.methods import MODELS, modality_kinds

        torch.set_num_threads(1)
        if args.out.exists() and "settings" not in pd.read_csv(args.out, nrows=0):
            rewrite_csv(args.out, lambda row: True)  # the settings column, empty in old rows
        written = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=COLUMNS)
        pairs.update({name: dataset_kinds(config, name) for name in datasets})
        stale = stale_runs(written, config, {m: models[m] for m in chosen}, pairs)
        for name, model, split in sorted(stale):
            print(f"{args.out}: {model} on {name} split {split} was written by other settings "
                  "than the config's; running it again", flush=True)
        written = drop_runs(written, stale)
        done = set(zip(written["dataset"], written["model"], written["split"], strict=True))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # a method that reads no link is fitted once per input: on datasets that differ only in
        # their links (snare_links<f>) its scores are those of the first fit (noted in the row)
        fitted: dict[tuple[str, int, str], tuple[dict[str, float], str, str]] = {}
        for name in datasets:  # dataset-major: one preprocessing per split, every model on it
            spec = config["datasets"][name]
            for split in args.splits:
                todo = [m for m in chosen if (name, m, split) not in done]
                if not todo:
                    continue
                sc = diagonal_scenario(config, name, split)
                print(f"{name} split {split}: {sc.n_obs} cells, modalities {list(sc.mod)}",
                      flush=True)
                digest = None  # of the inputs, once per scenario, if a model reads no link
                kinds = modality_kinds(sc)
                keys = {m: settings_key(v, kinds) for m, v in models.items()}
                for model in todo:
                    key = None
                    if not MODELS[models[model]["model"]].reads_links:
                        digest = digest or inputs_without_links(sc)
                        key = (model, split, digest)
                    same = same_settings_rows(written, keys, model, name, split)
                    if same is not None:
                        values, note = same
                    elif key in fitted:
                        values, note, first = fitted[key]
                        note = (f"reads no link: inputs identical to {first}'s split {split} "
                                "(all but the links), that fit's scores"
                                + (f"; {note}" if note else ""))
                    else:
                        values, note = run_one(sc, models[model], split,
                                               config.get("evaluation") or {})
                        if key:
                            fitted[key] = (values, note, name)
                    sid = settings_id(models[model], pairs[name])
                    rows = pd.DataFrame([(name, link_fraction(spec), model, split, split, m, v,
                                          note, sid) for m, v in values.items()], columns=COLUMNS)
                    if (name, model, split) in stale:  # the other settings' rows go
                        rewrite_csv(args.out, lambda r, run=(name, model, str(split)): (
                            r["dataset"], r["model"], r["split"]) != run)
                    rows.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
                    written = pd.concat([written, rows], ignore_index=True)
                    print(f"  {name} {model} split {split}: " + ", ".join(
                        f"{m} {v:.3f}" for m, v in values.items()) + (f" ({note})" if note else ""),
                        flush=True)
    rows = pd.read_csv(args.out)
    for name in sorted(set(rows["dataset"]) & set(config["datasets"]) - set(pairs)):
        try:
            pairs[name] = dataset_kinds(config, name)
        except (ConfigError, InputError, OSError) as err:
            print(f"{name}: settings not checked, its data is not here ({err})")
    stale = stale_runs(rows, config, models, pairs)
    report(drop_runs(rows, stale), args.out, sorted(stale))


if __name__ == "__main__":
    main()
