"""What a VAE's imputation should be, asked on train cells only: the expected scoring view of
cells drawn from the decoder's likelihood (what ``MultimodalVAE.scoring_mean`` returns) against
the scoring view of the decoded mean (what it returned before), with ``knn_regression`` on the
same cells.

Each stand-in of ``config/paired_standins.yaml`` (paired scenario, split seed 0) passes through
:func:`dmmvae.selection.train_only`; the default ``dmmvae`` is fitted on the train cells and
:func:`dmmvae.selection.validation_imputation` scores the training loop's held-back train cells
(per-cell Pearson, every direction). ``knn_regression`` predicts the same held-back cells from
the other train cells. No test cell is loaded.

Usage::

    python benchmarks/bench_imputation_view.py                       # the four stand-ins, seed 0
    python benchmarks/bench_imputation_view.py --datasets snare_mop5232 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT, diagonal_scenario

from dmmvae.config import load_config
from dmmvae.selection import train_only, validation_imputation

OUT = Path(__file__).parent / "results" / "imputation_view.csv"
CONFIG = ROOT / "config" / "paired_standins.yaml"
DATASETS = ["snare_mop5232", "bmmc_multiome500", "cite_bmmc600", "teaseq_pbmc1262"]


def view_of_the_mean(module):
    """Make ``module`` impute the scoring view of its decoded mean (the former rule)."""
    from dmmvae.methods.modules.likelihoods import to_scoring

    def scoring_mean(m, params):
        ms, lik = module.spec.modalities[m], module.decoders[m].likelihood
        if ms.kind == "atac":
            return to_scoring(ms.kind, lik, lik.prob_nonzero(params), is_probability=True)
        return to_scoring(ms.kind, lik, lik.mean(params), kept_fraction=ms.kept_fraction)

    module.scoring_mean = scoring_mean


def knn_on_held_back(sc, training: dict, seed: int) -> dict[str, float]:
    """``knn_regression``'s per-cell Pearson on the held-back cells ``validation_imputation`` scores."""
    from dmmvae.constants import SPLIT, TEST, TRAIN
    from dmmvae.evaluate import evaluate_predictions
    from dmmvae.methods import build_model
    from dmmvae.methods.training.loop import resolve_training, train_and_validation_cells

    _, val = train_and_validation_cells(sc, float(resolve_training(training)["validation_fraction"]), seed)
    inner = sc.copy()
    split = np.full(inner.n_obs, TRAIN, dtype=object)
    split[val] = TEST
    inner.obs[SPLIT] = pd.Categorical(split, categories=[TRAIN, TEST])
    knn = build_model("knn_regression", {})
    knn.fit(inner, training=training, seed=seed, device="cpu")
    rows = evaluate_predictions(inner, knn.predict(inner), {"families": ["imputation"]})
    name = "imputation_pearson_cell/"
    return {m[len(name):]: float(v) for m, v in zip(rows["metric"], rows["value"], strict=True)
            if m.startswith(name) and m != name + "mean"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import torch

    from dmmvae.methods import build_model

    torch.set_num_threads(1)
    os.chdir(ROOT)
    config = load_config(CONFIG)
    training = dict(config["training"])
    rows = []
    for name in args.datasets:
        sc = train_only(diagonal_scenario(config, name, 0, kind="paired"))
        for seed in args.seeds:
            model = build_model("dmmvae", config["models"]["dmmvae"]["params"])
            model.fit(sc, training=training, seed=seed, device="cpu")
            scores = {"expected view": validation_imputation(model, sc, training, seed)}
            view_of_the_mean(model.module)
            scores["view of the mean"] = validation_imputation(model, sc, training, seed)
            scores["knn_regression"] = knn_on_held_back(sc, training, seed)
            for rule, by_pair in scores.items():
                rows += [{"dataset": name, "seed": seed, "direction": pair, "imputation": rule,
                          "pearson_cell": value} for pair, value in by_pair.items()]
            pd.DataFrame(rows).to_csv(args.out, index=False)
    table = (pd.DataFrame(rows).groupby(["dataset", "direction", "imputation"]).pearson_cell.mean()
             .unstack("imputation"))
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
