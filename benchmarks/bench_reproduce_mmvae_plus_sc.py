"""The single-cell arm of the MMVAE++ claim (Märtens & Yau, MLCB 2023) on real RNA+ATAC.

Design (``config/reproduce/mmvae_plus_2024.yaml``, section ``single_cell``): RNA = 10 marker
genes of a target cell type + K unrelated genes (K in {10, 100, 1000}); ATAC = 5,000 distal
peaks; label y = 1[cell is the target type]. As K grows, the RNA modality carries more
private (unrelated) signal; the claim is that MMVAE++ keeps the shared-latent AUC of y while
MVAE and MMVAE drop.

Feature choice (PROTOCOL split, train cells only; nothing is read from test cells):

- **markers**: the 10 genes with the largest Welch t statistic, target vs rest, on
  log1p(CP10k) expression; detected in >= 3 train cells;
- **unrelated genes**: the K genes with the smallest variance of log1p(CP10k) among genes
  detected in >= 3 train cells, markers excluded (``rna.extra_genes``'s rule);
- **distal peaks**: peaks farther than 2 kb from every TSS of the gene annotation (strand-aware;
  the 10x ``interval`` column where no annotation is given, both ends counted as TSS), the
  5,000 open in most train cells (fewer where fewer exist: the count is printed and recorded).

The subset goes through ``preprocess`` (nothing more dropped) and ``make_scenario(paired)``;
the four models of the claim (``mvae``, ``mmvae``, ``mopoe``, ``mmvae_plus``, their defaults
with count likelihoods) train with the claim file's converged protocol on CPU.

Metrics (test cells): ``auc_shared`` / ``accuracy_shared`` (unpenalised logistic regression of
y on the shared latent: mmvae_plus its shared dimensions, others the whole latent; fitted on
half the test cells, scored on the other half), and ``r_markers_atac_to_rna`` (mean Pearson
over the 10 markers of the ATAC -> RNA imputation against log1p(CP10k) observed expression).
Verdict per model and metric: the drop rule of the synthetic arm, smallest vs largest K.

Data: ``--dataset snare_mop5232`` reads the SNARE-seq stand-in (``../shared/data``; verdicts
``stand-in``); ``--raw results/data/pbmc10k_multiome/raw.h5mu`` reads the workflow's prepared
10x Multiome PBMC 10k (``snakemake results/data/pbmc10k_multiome/raw.h5mu`` downloads and
prepares it) with ``--target "CD8 Naive" --annotation <hg38 BED>``. A missing raw file writes
the claim table with ``not run`` and the reason.

Usage::

    python benchmarks/bench_reproduce_mmvae_plus_sc.py --dataset snare_mop5232 --jobs 2
    python benchmarks/bench_reproduce_mmvae_plus_sc.py --raw results/data/pbmc10k_multiome/raw.h5mu \\
        --target "CD8 Naive" --annotation resources/hg38_genes.bed --jobs 2
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import _mmvae_plus as toy  # the reproduction's shared parts
import numpy as np
import pandas as pd
from _common import ROOT, SHARED

OUT_DIR = ROOT / "benchmarks" / "results"
MODELS = ("mvae", "mmvae", "mopoe", "mmvae_plus")
METRICS = ("auc_shared", "r_markers_atac_to_rna")
#: per stand-in: its gene annotation under ../shared/data/annotation (targets: the claim file)
STANDINS = {"snare_mop5232": "mm10_genes.bed"}


def _lognorm(x) -> np.ndarray:
    import scipy.sparse as sp

    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    x = x.astype(np.float64)
    return np.log1p(1e4 * x / np.maximum(x.sum(1, keepdims=True), 1.0))


def tss_regions(rna_var: pd.DataFrame, annotation: str | None) -> pd.DataFrame:
    """(chrom, start, end, strand) frames of +-0 bp at each TSS (both ends if strand unknown)."""
    from dmmvae.data.links import gene_coordinates, read_gene_annotation

    if annotation:
        ann = read_gene_annotation(annotation)
        genes = ann[["chrom", "start", "end", "strand"]]
    else:
        genes = gene_coordinates(rna_var, None, where="RNA intervals").dropna()
    s, e = genes["start"].to_numpy(float), genes["end"].to_numpy(float)
    strand = genes["strand"].to_numpy()
    rows = []
    for t, keep in ((s, strand != "-"), (e, strand != "+")):
        rows.append(pd.DataFrame({"chrom": genes["chrom"].to_numpy()[keep], "start": t[keep],
                                  "end": t[keep], "strand": "."}))
    return pd.concat(rows, ignore_index=True)


def select_features(raw, y: np.ndarray, train: np.ndarray, n_unrelated: int,
                    annotation: str | None, n_markers: int = 10, n_peaks: int = 5000):
    """Indices (markers, unrelated genes, distal peaks) chosen on the train cells."""
    from dmmvae.data.links import gene_peak_links, parse_intervals

    rna, atac = raw.mod["rna"], raw.mod["atac"]
    xr = _lognorm(rna.X[train])
    detected = (xr > 0).sum(0) >= 3
    a, b = xr[y[train] == 1], xr[y[train] == 0]
    t = (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0) / len(a) + b.var(0) / len(b) + 1e-12)
    t[~detected] = -np.inf
    markers = np.argsort(-t)[:n_markers]
    var = xr.var(0)
    var[~detected] = np.inf
    var[markers] = np.inf
    unrelated = np.argsort(var)[:n_unrelated]
    peaks = parse_intervals(atac.var["interval"].to_numpy(), atac.var_names.astype(str),
                            where="ATAC peaks")
    tss = tss_regions(rna.var, annotation)
    _, near, _ = gene_peak_links(tss, peaks, promoter_bp=2000)
    # gene_peak_links adds the promoter upstream of a '.'-strand region on both sides: +-2 kb
    distal = np.setdiff1d(np.arange(atac.n_vars), near)
    import scipy.sparse as sp

    xa = atac.X[train]
    open_cells = np.asarray((xa > 0).sum(0)).ravel() if sp.issparse(xa) else (xa > 0).sum(0)
    distal = distal[np.argsort(-open_cells[distal], kind="stable")[:n_peaks]]
    return markers, unrelated, np.sort(distal)


def build_task_data(raw, target: str, n_unrelated: int, annotation: str | None, seed: int):
    import mudata as md

    from dmmvae.constants import LABEL
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.scenarios import make_scenario, protocol_split

    y = (raw.obs[LABEL].astype(str).to_numpy() == target).astype(int)
    if y.sum() < 10:
        raise SystemExit(f"target '{target}' has {int(y.sum())} cells; labels present: "
                         f"{sorted(set(raw.obs[LABEL].astype(str)))[:20]}")
    train = protocol_split(raw.n_obs, 0) == "train"
    markers, unrelated, distal = select_features(raw, y, train, n_unrelated, annotation)
    genes = np.concatenate([markers, unrelated])
    with md.set_options(pull_on_update=False):
        sub = md.MuData({"rna": raw.mod["rna"][:, genes].copy(),
                         "atac": raw.mod["atac"][:, distal].copy()})
    sub.obs = raw.obs.copy()
    sub.obs["y"] = y
    params = {"rna": {"n_top_genes": len(genes), "min_genes": 0, "min_cells": 0,
                      "max_pct_mito": None},
              "atac": {"min_cell_fraction": 0.0}}
    pre = preprocess(sub, params, seed=0)
    sc = make_scenario(pre, "paired", seed=0)
    marker_names = set(raw.mod["rna"].var_names[markers].astype(str))
    return sc, marker_names, len(distal)


def run_cell(task: dict) -> list[dict]:
    import mudata as md
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from dmmvae.constants import JOINT, SPLIT, TEST
    from dmmvae.methods import build_model

    raw = md.read_h5mu(task["raw"])
    k, seed = task["n_unrelated"], task["seed"]
    sc, marker_names, n_peaks = build_task_data(raw, task["target"], k, task["annotation"], seed)
    test = sc.obs[SPLIT].to_numpy() == TEST
    y = sc.obs["y"].to_numpy()[test]
    rna_names = sc.mod["rna"].var_names.astype(str)
    mk = np.flatnonzero(np.isin(rna_names, list(marker_names)))
    obs = _lognorm(sc.mod["rna"].X[test])[:, mk]
    rows = []

    def add(model: str, metric: str, value: float) -> None:
        rows.append({"model": model, "n_unrelated": k, "seed": seed, "metric": metric,
                     "value": float(value)})

    add("data", "n_markers_kept", len(mk))
    add("data", "n_distal_peaks", n_peaks)
    for name in task["models"]:
        model = build_model(name, {})
        t0 = time.perf_counter()
        hist = model.fit(sc, training=task["training"], seed=seed, device="cpu")
        pred = model.predict(sc, seed=seed)
        z = pred.embeddings[JOINT]
        shared = pred.info.get("shared_dims")
        if shared is not None:
            z = z[:, shared]
        auc, acc = toy.classify(z, y, seed)
        add(name, "auc_shared", auc)
        add(name, "accuracy_shared", acc)
        imp = np.log1p(1e4 * pred.imputations[("atac", "rna")]
                       / np.maximum(pred.imputations[("atac", "rna")].sum(1, keepdims=True), 1e-8))
        r = [np.corrcoef(obs[:, j], imp[:, mk[j]])[0, 1] if obs[:, j].std() > 0 else 0.0
             for j in range(len(mk))]
        add(name, "r_markers_atac_to_rna", float(np.nanmean(r)))
        add(name, "epochs", len(hist))
        add(name, "train_seconds", time.perf_counter() - t0)
    return rows


def verdicts(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df.model.isin(MODELS)].rename(columns={"n_unrelated": "n_private_1"})
    v = toy.verdicts(d.assign(metric=d.metric.replace({"r_markers_atac_to_rna": "r2_1to2_shared"})))
    v["metric"] = v["metric"].replace({"r2_1to2_shared": "r_markers_atac_to_rna"})
    return v[v.metric.isin(METRICS)].rename(columns={"n_lo": "k_lo", "n_hi": "k_hi"})


def claim_rows(verd: pd.DataFrame, standin: bool, reason: str = "") -> pd.DataFrame:
    """The claim of the single-cell arm per model: MMVAE++ keeps, MVAE and MMVAE drop."""
    from dmmvae.reproduce import STANDIN, verdict

    rows = []
    for model, published in (("mmvae_plus", "keeps"), ("mmvae", "drops"), ("mvae", "drops")):
        for metric in METRICS:
            hit = verd[(verd.model == model) & (verd.metric == metric)] if len(verd) else verd
            ours = hit.iloc[0].verdict if len(hit) else None
            v, note = verdict(published, None, ours, reason=reason)
            if ours is not None and standin:
                v = STANDIN
            if len(hit):
                r = hit.iloc[0]
                note = f"{note}; K={r.k_lo}: {r.mean_lo:.3f}, K={r.k_hi}: {r.mean_hi:.3f}"
            rows.append({"claim": f"sc/{model}/{metric}", "published": published, "ours": ours,
                         "verdict": v, "note": note})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=sorted(STANDINS), help="a stand-in of ../shared/data")
    src.add_argument("--raw", help="a raw.h5mu prepared by the workflow (prepare_dataset)")
    ap.add_argument("--target", help="target cell type (stand-ins: their default)")
    ap.add_argument("--annotation", help="gene annotation BED (stand-ins: their default)")
    ap.add_argument("--unrelated", type=int, nargs="+", default=None,
                    help="K grid (default: the claim file's single_cell.grid)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None, help="default benchmarks/results/"
                    "reproduce_mmvae_plus_sc_<name>.csv")
    args = ap.parse_args(argv)
    from dmmvae.reproduce import load_claims

    claims = load_claims(toy.CLAIMS)
    arm = claims["single_cell"]
    args.unrelated = args.unrelated or list(arm["grid"]["n_unrelated"])
    standin = args.dataset is not None
    if standin:
        import tempfile

        from dmmvae.config import load_config
        from dmmvae.data.prepare import prepare_dataset

        ann = STANDINS[args.dataset]
        args.target = args.target or arm["data"][args.dataset]["target"]
        args.annotation = args.annotation or str(SHARED / "annotation" / ann)
        os.chdir(ROOT)  # the config's paths are relative to the project, as for Snakemake
        spec = load_config(ROOT / "config" / "diagonal.yaml")["datasets"][args.dataset]
        raw_path = Path(tempfile.gettempdir()) / f"mmvae_plus_sc_{args.dataset}.h5mu"
        prepare_dataset(args.dataset, spec, cache_dir=tempfile.gettempdir()).write(raw_path)
        name = args.dataset
    else:
        raw_path, name = Path(args.raw), Path(args.raw).parent.name
        args.target = args.target or (arm["data"].get(name) or {}).get("target")
        if not args.target:
            raise SystemExit(f"--target is needed for {name} (not in the claim file)")
    out = Path(args.out or OUT_DIR / f"reproduce_mmvae_plus_sc_{name}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not raw_path.exists():
        reason = (f"{raw_path} not found: prepare it with `snakemake {raw_path}` (downloads the "
                  "data set)")
        table = claim_rows(pd.DataFrame(), standin=False, reason=reason)
        out.with_suffix(".md").write_text("# MMVAE++ single-cell arm: not run\n\n" + reason
                                          + "\n\n" + toy.md_table(table) + "\n")
        print(reason)
        return
    training = toy.training_config(claims["protocol"], "converged", args.epochs)
    tasks = [{"raw": str(raw_path), "target": args.target, "annotation": args.annotation,
              "n_unrelated": k, "seed": s, "models": args.models, "training": training}
             for s in range(args.seeds) for k in args.unrelated]
    t0 = time.perf_counter()
    rows: list[dict] = []
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as ex:
            for out_rows in ex.map(run_cell, tasks):
                rows += out_rows
                print(f"[{time.perf_counter() - t0:6.0f} s] K={out_rows[0]['n_unrelated']} "
                      f"seed={out_rows[0]['seed']} done", flush=True)
    else:
        for task in tasks:
            rows += run_cell(task)
            print(f"[{time.perf_counter() - t0:6.0f} s] K={task['n_unrelated']} "
                  f"seed={task['seed']} done", flush=True)
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    df.to_csv(out, index=False)
    verd = verdicts(df)
    table = claim_rows(verd, standin)
    s = df.groupby(["model", "n_unrelated", "metric"])["value"].agg(["mean", "std"]).reset_index()
    s["cell"] = [f"{m:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{m:.3f}"
                 for m, sd in zip(s["mean"], s["std"], strict=True)]
    wide = s.pivot_table(index=["model", "n_unrelated"], columns="metric", values="cell",
                         aggfunc="first").fillna("").reset_index()
    md_text = "\n".join([
        f"# MMVAE++ single-cell arm on `{name}`" + (" (stand-in)" if standin else ""), "",
        f"Generated by `benchmarks/bench_reproduce_mmvae_plus_sc.py`: target `{args.target}` vs "
        f"rest, 10 markers + K unrelated genes, distal peaks (count in `n_distal_peaks`), "
        f"{args.seeds} seed(s), test cells, mean ± sd; wall {wall:.0f} s with {args.jobs} "
        "worker(s).", "", toy.md_table(wide), "",
        "## Verdict per model (smallest -> largest K; drop = fall > 0.05 or > 2 pooled sd)", "",
        toy.md_table(verd.round(3)), "", "## Claim table", "", toy.md_table(table), ""])
    out.with_suffix(".md").write_text(md_text)
    print(md_text)


if __name__ == "__main__":
    main()
