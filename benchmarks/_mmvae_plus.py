"""What the two MMVAE+ reproductions share (``bench_reproduce_mmvae_plus.py`` on the authors'
toy data, ``bench_reproduce_mmvae_plus_sc.py`` on real cells): the claims file, the training
configuration of a schedule, the shared-latent classifier probe and the keeps / drops verdict."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from _common import ROOT

CLAIMS = ROOT / "config" / "reproduce" / "mmvae_plus_2024.yaml"


VERDICT_METRICS = ("auc_shared", "r2_1to2_shared", "r2_2to1_shared")


DROP_ABS = 0.05


DROP_SD = 2.0


def training_config(protocol: dict, schedule: str, epochs: int | None) -> dict:
    base = {k: v for k, v in protocol["training"].items()
            if k not in ("optimizer", "note")}
    base.update(progress_bar=False, num_threads=1, amp="none")
    if schedule == "authors":
        n = int(epochs or protocol["authors"]["n_epochs"])
        base.update(max_epochs=n, kl_warmup_epochs=n, early_stopping_patience=0,
                    validation_fraction=0.0)
    elif epochs:
        base["max_epochs"] = int(epochs)
        base["kl_warmup_epochs"] = min(int(base["kl_warmup_epochs"]), max(1, int(epochs) // 2))
    return base


def classify(z: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float]:
    """(AUC, accuracy) of an unpenalised logistic regression fitted on half of the cells
    (stratified) and scored on the other half."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    a, b = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=np.inf, max_iter=2000).fit(z[a], y[a])
    auc = float(roc_auc_score(y[b], clf.predict_proba(z[b])[:, 1]))
    acc = float((clf.predict(z[b]) == y[b]).mean())
    return auc, acc


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["model", "n_private_1", "metric"])["value"]
    return pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()}).reset_index()


def verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Per model and verdict metric: keeps / drops between the smallest and largest grid size."""
    s = summarise(df)
    lo, hi = int(df.n_private_1.min()), int(df.n_private_1.max())
    out = []
    for (model, metric), d in s[s.metric.isin(VERDICT_METRICS)].groupby(["model", "metric"]):
        d = d.set_index("n_private_1")
        if lo not in d.index or hi not in d.index:
            continue
        m_lo, m_hi = d.loc[lo, "mean"], d.loc[hi, "mean"]
        sd = math.sqrt((np.nan_to_num(d.loc[lo, "sd"]) ** 2 + np.nan_to_num(d.loc[hi, "sd"]) ** 2) / 2)
        fall = m_lo - m_hi
        drop = fall > DROP_ABS or (sd > 0 and fall > DROP_SD * sd)
        out.append({"model": model, "metric": metric, "n_lo": lo, "n_hi": hi,
                    "mean_lo": m_lo, "mean_hi": m_hi, "fall": fall, "pooled_sd": sd,
                    "verdict": "drops" if drop else "keeps"})
    return pd.DataFrame(out)


def md_table(d: pd.DataFrame) -> str:
    cols = [str(c) for c in d.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in d.iterrows():
        out.append("| " + " | ".join(str(v) for v in r.to_numpy()) + " |")
    return "\n".join(out)
