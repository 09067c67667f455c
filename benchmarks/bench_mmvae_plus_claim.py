"""Does MMVAE++ keep the shared factors where MMVAE and MVAE lose them? (Märtens & Yau 2024)

On :func:`dmmvae.data.synthetic.simulate_shared_private` data (RNA + ATAC, 4 shared factors,
``n_private`` private factors per modality) with the private variance rising (``--ratios``),
train ``mvae``, ``mmvae`` and ``mmvae_plus`` on the paired scenario and measure, on the test
cells, ground-truth recovery (:func:`dmmvae.metrics.ground_truth_recovery`: held-out R^2 of a
linear regression from the learned shared latent, fitted on half the test cells and scored on
the other half) of the true shared factors (higher is better) and of each modality's true
private factors (leakage, lower is better). The learned shared latent is the joint embedding
(for ``mmvae_plus``: its shared part; its private dimensions are not in the embedding) and,
separately, the embedding from RNA alone. FOSCTTM (RNA vs ATAC) is printed for context.

Latent budgets: ``mvae``/``mmvae`` get ``--n-latent`` dimensions in one latent (default 8 =
4 shared + 2 + 2 private: enough room for every factor), ``mmvae_plus`` the same number of
shared dimensions plus ``--n-private`` private ones per modality.

Usage::

    python benchmarks/bench_mmvae_plus_claim.py                    # full table (CPU: ~10 min)
    python benchmarks/bench_mmvae_plus_claim.py --quick            # small smoke run
    python benchmarks/bench_mmvae_plus_claim.py --out results.tsv  # also write the table
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch

from dmmvae.constants import JOINT, SPLIT, TEST, TRUE_SHARED, true_private_key
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import make_scenario
from dmmvae.data.synthetic import simulate_shared_private
from dmmvae.methods import build_model
from dmmvae.metrics import foscttm, ground_truth_recovery

MODELS = ("mvae", "mmvae", "mmvae_plus")


def run(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    mods = {
        "rna": {"kind": "rna", "n_features": args.rna_features, "n_private": args.true_private},
        "atac": {"kind": "atac", "n_features": args.atac_features, "n_private": args.true_private},
    }
    training = {"max_epochs": args.epochs, "batch_size": 256, "lr": args.lr, "kl_warmup_epochs": 10,
                "early_stopping_patience": args.patience, "progress_bar": False}
    for ratio in args.ratios:
        raw = simulate_shared_private(n_cells=args.n_cells, private_variance_ratio=ratio,
                                      modalities=mods, seed=args.seed)
        sc = make_scenario(preprocess(raw, seed=args.seed), "paired", seed=args.seed)
        test = sc.obs[SPLIT].to_numpy() == TEST
        true_s = np.asarray(sc.obsm[TRUE_SHARED])[test]
        true_p = {m: np.asarray(sc.obsm[true_private_key(m)])[test] for m in mods}
        for name in args.models:
            params = {"n_latent": args.n_latent, "n_hidden": args.n_hidden}
            if name == "mmvae_plus":
                params["n_private"] = args.n_private
            t0 = time.perf_counter()
            model = build_model(name, params)
            hist = model.fit(sc, seed=args.seed, device=args.device, training=training)
            secs = time.perf_counter() - t0
            p = model.predict(sc)
            for source in (JOINT, "rna"):
                rec = ground_truth_recovery(p.embeddings[source], true_s, true_p, seed=args.seed)
                rows.append({
                    "private_variance_ratio": ratio, "model": name, "embedding": source,
                    "shared_r2": rec["shared_r2"],
                    "private_r2_rna": rec["private_r2/rna"], "private_r2_atac": rec["private_r2/atac"],
                    "foscttm": foscttm(p.embeddings["rna"], p.embeddings["atac"]),
                    "epochs": len(hist), "train_seconds": secs,
                })
            print(pd.DataFrame(rows).tail(2).round(3).to_string(index=False, header=False), flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 2.0, 8.0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--n-cells", type=int, default=2000)
    ap.add_argument("--rna-features", type=int, default=500)
    ap.add_argument("--atac-features", type=int, default=1000)
    ap.add_argument("--true-private", type=int, default=2, help="true private factors per modality")
    ap.add_argument("--n-latent", type=int, default=8)
    ap.add_argument("--n-private", type=int, default=4, help="mmvae_plus private dims per modality")
    ap.add_argument("--n-hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--patience", type=int, default=0,
                    help="early-stopping patience (0 = train all epochs: equal budgets)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="600 cells, 15 epochs (smoke test)")
    ap.add_argument("--out", default=None, help="write the table as TSV")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_cells, args.epochs, args.rna_features, args.atac_features = 600, 15, 150, 250
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    df = run(args)
    table = df.pivot_table(index=["private_variance_ratio", "embedding"], columns="model",
                           values=["shared_r2", "private_r2_rna", "private_r2_atac", "foscttm"])
    print("\nGround-truth recovery (held-out R^2; shared: higher is better, private = leakage: lower)")
    print(table.round(3).to_string())
    if args.out:
        df.to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
