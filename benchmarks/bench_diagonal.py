"""Diagonal integration on the real stand-ins and the gene split: every method, 3 seeds.

The question of the D-MMVAE project: can a method align modalities that were never measured in
the same cell? Each stand-in of ``../shared/data`` (CITE-seq BMMC 600, TEA-seq 1262, BMMC
multiome 500, SNARE-seq 5232) and the pbmc68k gene split at link fraction 0 and 0.1 goes through
the workflow's own functions: ``prepare_dataset`` -> ``preprocess`` (PROTOCOL split, linked
features) -> ``make_scenario("diagonal")`` -> every method's ``fit`` / ``predict`` ->
``evaluate_predictions`` (the evaluation code of every other number of the benchmark). One
process runs them all, so scib-metrics' compilation (kBET's numba, jax) is paid once, not once
per run as in the workflow's per-run evaluation jobs.

Printed: mean +- sd over seeds per dataset x method; written (appended run by run, so a partial
run keeps what it measured; ``--resume`` skips what is there): the tidy table
``benchmarks/results/diagonal.csv`` with columns ``dataset, link_fraction, model, seed, metric,
value``. Metrics: ``foscttm/mean`` (lower is better), ``label_transfer_acc/mean``,
``label_transfer_bacc/mean``, ``mixing/batch_correction`` and ``mixing/total`` (the stacked
single-modality embeddings, batch = modality), ``train_seconds`` (wall seconds of ``fit``).

Usage::

    python benchmarks/bench_diagonal.py                        # everything (hours on 2 cores)
    python benchmarks/bench_diagonal.py --datasets cite_bmmc600 --models random linked_cca
    python benchmarks/bench_diagonal.py --report-only           # print the table of the CSV
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DMMVAE_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
OUT_CSV = ROOT / "benchmarks" / "results" / "diagonal.csv"
COLUMNS = ["dataset", "link_fraction", "model", "seed", "metric", "value"]
METRICS = ("foscttm/mean", "label_transfer_acc/mean", "label_transfer_bacc/mean",
           "mixing/batch_correction", "mixing/total")
#: every method that applies to the diagonal scenario (needs no paired train cell)
MODELS = ("random", "linked_cca", "gw_ot", "glue", "maxfuse", "scmodal", "dmmvae",
          "dmmvae_shared_core", "mmaavi", "mmvae", "mvae", "mopoe", "mmvae_plus", "mlp_fusion")
TRAINING = {"max_epochs": 100, "batch_size": 128, "progress_bar": False, "num_threads": 1}


def _tenx(name: str, label: str, batch: str | None = None, annotation: str | None = None):
    tenx = SHARED / "tenx"
    h5 = str(tenx / f"{name}.filtered_feature_bc_matrix.h5")
    labels = {"path": str(tenx / f"{name}.labels.csv"), "column": label}
    if batch:
        labels["batch_column"] = batch
    kinds = ("rna", "atac") if "multiome" in name or "snare" in name else ("rna", "adt")
    spec = {"source": "local", "labels": labels,
            "modalities": {k: {"format": "10x_h5", "path": h5} for k in kinds}}
    pre = {"links": {"gene_annotation": str(SHARED / "annotation" / annotation)}} if annotation else {}
    return None, spec, pre


DATASETS = {
    "cite_bmmc600": lambda: _tenx("neurips2021_bmmc_cite_600", "cell_type", "batch"),
    "teaseq_pbmc1262": lambda: _tenx("teaseq_matilda_train_rna_adt_1262", "cell_type"),
    "bmmc_multiome500": lambda: _tenx("neurips2021_bmmc_multiome_500", "cell_type", "batch",
                                      "hg38_genes.bed"),
    "snare_mop5232": lambda: _tenx("mop_snareseq_half_a_5232", "cluster (remapped)", "Batch",
                                   "mm10_genes.bed"),
    "genesplit_link0": lambda: (0.0, {"source": "pbmc68k_genesplit",
                                      "params": {"link_fraction": 0.0}}, {}),
    "genesplit_link0.1": lambda: (0.1, {"source": "pbmc68k_genesplit",
                                        "params": {"link_fraction": 0.1}}, {}),
}


def scenario(name: str):
    from dmmvae.data.prepare import prepare_dataset
    from dmmvae.data.preprocess import preprocess
    from dmmvae.data.scenarios import make_scenario

    link_fraction, spec, pre = DATASETS[name]()
    raw = prepare_dataset(name, spec, cache_dir=tempfile.gettempdir())
    return link_fraction, make_scenario(preprocess(raw, pre, seed=0), "diagonal")


#: per-method parameters of this bench (everything else: the method's defaults). GLUE's
#: automatic epoch budget ran > 8 min per seed on the 600-cell CITE stand-in on one core; it is
#: capped here (burn-in and patiences keep GLUE's fractions of the budget, see methods/glue.py)
METHOD_PARAMS = {"glue": {"max_epochs": 300}, "dmmvae": {"guidance_graph": True}}
#: named variants of this bench: row name -> (registry name, parameters[, training]), as in
#: config/config.yaml
#: D-MMVAE's global anchors (Seurat's, in a 5-component linked-gene CCA space) and the longer
#: patience they need; the variants below differ from it in one setting each
_GLOBAL = {"guidance_graph": True, "anchor_space": "cca", "anchor_scope": "global",
           "anchor_components": 5}
_LATE = {"early_stopping_patience": 30}
_GLOBAL20 = {**_GLOBAL, "n_knn": 20}  # n_knn 20: the train-only rule's choice (--grid knn)
#: and the ATAC encoder's input (LSI + peaks, Bernoulli kept) and 32 latent dimensions: the
#: second rule's choices over seeds 0-2 (--grid atac, --grid latent_lsipeaks)
_GLOBAL_CHOSEN = {**_GLOBAL20, "atac_input": "lsi+peaks", "n_latent": 32}
VARIANTS = {"dmmvae_shared_core": ("dmmvae", {"shared_core": True, "output_adversarial_weight": 0.05}),
            "mmaavi_graph": ("mmaavi", {"guidance_graph": True}),
            "dmmvae_nograph": ("dmmvae", {}),
            "dmmvae_global": ("dmmvae", _GLOBAL_CHOSEN, _LATE),
            # dmmvae_global of 2026-11-23 (the second rule on seed 0 only: NB on ATAC counts)
            "dmmvae_global_lsipeaks_nb_l32": ("dmmvae", {**_GLOBAL_CHOSEN,
                                                         "likelihoods": {"atac": "nb"}}, _LATE),
            # dmmvae_global until the second rule: 16 latent dimensions, peaks, Bernoulli
            "dmmvae_global_l16_peaks": ("dmmvae", _GLOBAL20, _LATE),
            # the same with Seurat's k.anchor 5 (dmmvae_global until the knn grid) and 10
            "dmmvae_global_k5": ("dmmvae", _GLOBAL, _LATE),
            "dmmvae_global_k10": ("dmmvae", {**_GLOBAL, "n_knn": 10}, _LATE),
            # the ATAC settings of the sweep's "atac" grid: LSI + peaks as the ATAC encoder's
            # input, GLUE's negative binomial on ATAC counts, and both
            "dmmvae_global_lsipeaks": ("dmmvae", {**_GLOBAL20, "atac_input": "lsi+peaks"}, _LATE),
            "dmmvae_global_nb": ("dmmvae", {**_GLOBAL20, "likelihoods": {"atac": "nb"}}, _LATE),
            "dmmvae_global_lsipeaks_nb": ("dmmvae", {**_GLOBAL20, "atac_input": "lsi+peaks",
                                                     "likelihoods": {"atac": "nb"}}, _LATE),
            "dmmvae_global_refresh": ("dmmvae", {**_GLOBAL, "anchor_refresh": 10}, _LATE),
            "dmmvae_gw": ("dmmvae", {**_GLOBAL, "anchor_space": "gw",
                                     "anchor_components": [20, 30, 50]}, _LATE)}


def run_one(sc, model: str, seed: int, max_epochs: int) -> dict[str, float]:
    from dmmvae.evaluate import evaluate_predictions
    from dmmvae.methods import MissingDependencyError, NotApplicableError, build_model
    from dmmvae.methods._loop import TrainingFailure

    name, params, *training = VARIANTS.get(model, (model, METHOD_PARAMS.get(model)))
    method = build_model(name, params)
    t0 = time.perf_counter()
    try:
        method.fit(sc, training={**TRAINING, "max_epochs": max_epochs, **(training[0] if training else {})},
                   seed=seed, device="cpu")
    except (MissingDependencyError, NotApplicableError, TrainingFailure) as err:
        print(f"    {model} seed {seed}: {type(err).__name__}: {err}"[:300], flush=True)
        return {}
    seconds = time.perf_counter() - t0
    df = evaluate_predictions(sc, method.predict(sc),
                              {"families": ["foscttm", "label_transfer", "mixing"]})
    values = df.set_index("metric")["value"]
    out = {m: float(values[m]) for m in METRICS if m in values}
    out["train_seconds"] = seconds
    return out


def table(rows: pd.DataFrame) -> pd.DataFrame:
    agg = rows.groupby(["dataset", "model", "metric"])["value"].agg(["mean", "std", "count"])
    cell = agg.apply(lambda r: f"{r['mean']:.3f} ± {0 if pd.isna(r['std']) else r['std']:.3f}"
                     f" ({int(r['count'])})", axis=1)
    order = [m for m in (*METRICS, "train_seconds") if m in set(rows["metric"])]
    return cell.unstack("metric").reindex(columns=order)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=OUT_CSV)
    ap.add_argument("--resume", action="store_true", help="skip runs already in --out")
    ap.add_argument("--report-only", action="store_true", help="only print the table of --out")
    args = ap.parse_args()
    if not args.report_only:
        if not SHARED.is_dir():
            sys.exit(f"the stand-in data folder {SHARED} is absent (set DMMVAE_SHARED_DATA)")
        import torch

        torch.set_num_threads(1)
        done = set()
        if args.resume and args.out.exists():
            old = pd.read_csv(args.out)
            done = set(zip(old["dataset"], old["model"], old["seed"], strict=True))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        data = {name: scenario(name) for name in args.datasets}
        for name, (_, sc) in data.items():
            print(f"{name}: {sc.n_obs} cells, modalities {list(sc.mod)}", flush=True)
        for model in args.models:  # model-major: a partial run has every dataset of a method
            for name, (link_fraction, sc) in data.items():
                for seed in args.seeds:
                    if (name, model, seed) in done:
                        continue
                    values = run_one(sc, model, seed, args.max_epochs)
                    rows = pd.DataFrame(
                        [(name, link_fraction, model, seed, m, v) for m, v in values.items()],
                        columns=COLUMNS)
                    rows.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
                    print(f"  {name} {model} seed {seed}: " + ", ".join(
                        f"{m} {v:.3f}" for m, v in values.items()), flush=True)
    rows = pd.read_csv(args.out)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table(rows).to_string())
    print(f"\n{args.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
