"""Score one method's predictions on the test cells of a scenario (``PROTOCOL.md``).

Metric names (the ``metric`` column; ``a``, ``b`` are modalities in the order of
``mdata.mod``, ``src -> tgt`` an ordered pair):

=====================================  ======================================================
``foscttm/a-b``, ``foscttm/mean``       FOSCTTM per modality pair, mean over pairs (lower)
``label_transfer_acc/a->b``             k-NN fitted on ``a``-alone embeddings predicts ``b``
``label_transfer_bacc/a->b``            same, balanced accuracy
``label_transfer_{acc,bacc}/a-b``       mean of the two directions of a pair
``label_transfer_{acc,bacc}/mean``      mean over all directions
``imputation_<s>/src->tgt``             ``<s>`` in pearson_cell, pearson_feature, cosine_cell
                                        (RNA/ADT/gaussian targets), auroc, pearson_cell (ATAC)
``imputation_<s>/mean``                 mean over the pairs that have ``<s>``
``scib/<name>``                         scib-metrics on the joint embedding (see
                                        :mod:`dmmvae.metrics._scib`), incl. ``scib/total``
``recovery_shared_r2``                  synthetic data: held-out R^2 shared latent -> true shared
``recovery_private_r2/<mod>``, ``/mean``  same to true private factors (leakage, lower)
``realism_c2st_auroc/prior/<mod>``      classifier two-sample test, prior samples vs observed
``realism_c2st_auroc/src->tgt``         same, cross-modal generation vs observed
``realism_c2st_auroc/mean``             mean of the above (0.5 best)
``epochs``                              epochs run (from ``history.csv``)
``failed``                              value NaN; the ``reason`` column says why
=====================================  ======================================================

Every row also has ``reason`` (empty unless failed or not computable) and ``note`` (the
parameters used, e.g. ``k=5``, and the scib-metrics version).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from .constants import (
    BATCH,
    JOINT,
    LABEL,
    MODALITY_KIND,
    SPLIT,
    TEST,
    TRUE_SHARED,
    true_private_key,
)
from .io import InputError, Predictions, atomic_path
from .metrics import (
    c2st_auroc,
    foscttm,
    ground_truth_recovery,
    imputation_scores,
    label_transfer,
    scib_scores,
)

#: Every metric family, in the order they are computed.
FAMILIES = ("foscttm", "label_transfer", "imputation", "scib", "recovery", "realism")

DEFAULT_PARAMS: dict[str, Any] = {
    "families": list(FAMILIES),  # which metric families to compute
    "knn_k": 5,  # label transfer
    "foscttm_device": None,  # None: CUDA when available
    "realism_n_pcs": 50,
    "realism_folds": 5,
    "realism_max_cells": 5000,
    "recovery_seed": 0,
}

COLUMNS = ["metric", "value", "reason", "note"]
RUN_COLUMNS = ["dataset", "scenario", "model", "seed", *COLUMNS]


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults updated with ``params``; ValueError naming unknown keys / families."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(
            f"evaluation: unknown parameter(s) {unknown}; valid parameters are "
            f"{sorted(DEFAULT_PARAMS)}"
        )
    out = {**DEFAULT_PARAMS, **params}
    bad = sorted(set(out["families"]) - set(FAMILIES))
    if bad:
        raise ValueError(
            f"evaluation: unknown metric families {bad}; valid families are {list(FAMILIES)}"
        )
    return out


def _dense(a) -> np.ndarray:
    return a.toarray() if hasattr(a, "toarray") else np.asarray(a)


def _test_view(mdata, preds: Predictions) -> np.ndarray:
    """Row indices into ``mdata`` of the predictions' test cells, in the predictions' order."""
    if SPLIT not in mdata.obs:
        raise InputError(
            f"scenario data has no obs['{SPLIT}'] column; rebuild it with the preprocess rule"
        )
    is_test = np.asarray(mdata.obs[SPLIT] == TEST)
    test_names = np.asarray(mdata.obs_names[is_test]).astype(str)
    pos = pd.Index(np.asarray(mdata.obs_names).astype(str))
    if len(preds.obs_names) != len(test_names) or set(preds.obs_names) != set(test_names):
        raise InputError(
            f"predictions cover {len(preds.obs_names)} cells but the scenario has "
            f"{len(test_names)} test cells (or other cell names); the predictions were made for "
            "another split — rerun train_model for this scenario"
        )
    return pos.get_indexer(preds.obs_names)


def _rows(rows: list, metric: str, value: float, reason: str = "", note: str = "") -> None:
    rows.append({"metric": metric, "value": float(value), "reason": reason, "note": note})


def _mean_row(rows: list, prefix: str, values: list[float], note: str = "") -> None:
    vals = [v for v in values if np.isfinite(v)]
    if vals:
        _rows(rows, f"{prefix}/mean", float(np.mean(vals)), note=note)


def evaluate_predictions(
    mdata, preds: Predictions, params: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """All metrics of ``PROTOCOL.md`` that ``preds`` allows, as a DataFrame (metric, value,
    reason, note). Absent parts of ``preds`` (no embeddings, no imputations, ...) are skipped.

    A failed method (``preds.failure``) gives the single row ``failed`` with its reason.
    """
    p = resolve_params(params)
    if preds.failed:
        reason = str((preds.failure or {}).get("reason", "unknown failure"))
        return pd.DataFrame([{"metric": "failed", "value": np.nan, "reason": reason, "note": ""}])
    idx = _test_view(mdata, preds)
    mods = list(mdata.mod)
    fam = set(p["families"])
    rows: list[dict] = []
    emb = {m: np.asarray(preds.embeddings[m]) for m in mods if m in preds.embeddings}
    obs = mdata.obs.iloc[idx]
    # label-based metrics use the labelled test cells (all of them when every cell has one)
    labels, lab_mask = None, np.ones(len(idx), dtype=bool)
    if LABEL in obs:
        lab_mask = np.asarray(obs[LABEL].notna())
        if lab_mask.sum() >= 10 and obs[LABEL][lab_mask].nunique() >= 2:
            labels = np.asarray(obs[LABEL][lab_mask]).astype(str)
    lab_note = "" if lab_mask.all() else f" labelled cells={int(lab_mask.sum())}"

    def finite(a: np.ndarray) -> bool:
        return bool(np.isfinite(a).all())

    # ---- FOSCTTM ----------------------------------------------------------------------------
    if "foscttm" in fam:
        vals = []
        for a, b in combinations([m for m in mods if m in emb], 2):
            name = f"foscttm/{a}-{b}"
            if not (finite(emb[a]) and finite(emb[b])):
                _rows(rows, name, np.nan, "non-finite embedding")
                continue
            if emb[a].shape != emb[b].shape:
                _rows(rows, name, np.nan, f"embedding shapes differ {emb[a].shape} {emb[b].shape}")
                continue
            v = foscttm(emb[a], emb[b], device=p["foscttm_device"])
            vals.append(v)
            _rows(rows, name, v)
        _mean_row(rows, "foscttm", vals)

    # ---- label transfer ---------------------------------------------------------------------
    if "label_transfer" in fam and labels is not None:
        k = int(p["knn_k"])
        note = f"k={k}{lab_note}"
        accs, baccs = [], []
        for a, b in combinations([m for m in mods if m in emb], 2):
            if not (finite(emb[a]) and finite(emb[b])) or emb[a].shape != emb[b].shape:
                _rows(rows, f"label_transfer_acc/{a}-{b}", np.nan, "non-finite embedding", note)
                continue
            r = label_transfer(emb[a][lab_mask], emb[b][lab_mask], labels, k=k)
            for kind, short in (("acc", "acc"), ("bacc", "bacc")):
                _rows(rows, f"label_transfer_{kind}/{a}->{b}", r[f"{short}_ab"], note=note)
                _rows(rows, f"label_transfer_{kind}/{b}->{a}", r[f"{short}_ba"], note=note)
                _rows(rows, f"label_transfer_{kind}/{a}-{b}", r[f"{short}_mean"], note=note)
            accs += [r["acc_ab"], r["acc_ba"]]
            baccs += [r["bacc_ab"], r["bacc_ba"]]
        _mean_row(rows, "label_transfer_acc", accs, note)
        _mean_row(rows, "label_transfer_bacc", baccs, note)

    # ---- imputation -------------------------------------------------------------------------
    if "imputation" in fam:
        per_score: dict[str, list[float]] = {}
        for (src, tgt), pred in sorted(preds.imputations.items()):
            if tgt not in mdata.mod:
                continue
            truth = mdata.mod[tgt].X[idx]
            kind = str(mdata.mod[tgt].uns.get(MODALITY_KIND, tgt))
            scores = imputation_scores(truth, pred, kind)
            for s, v in scores.items():
                _rows(rows, f"imputation_{s}/{src}->{tgt}", v)
                per_score.setdefault(s, []).append(v)
        for s, vals in per_score.items():
            _mean_row(rows, f"imputation_{s}", vals)

    # ---- scib-metrics on the joint embedding ------------------------------------------------
    if "scib" in fam and labels is not None and JOINT in preds.embeddings:
        z = np.asarray(preds.embeddings[JOINT])[lab_mask]
        if not finite(z):
            _rows(rows, "scib/total", np.nan, "non-finite joint embedding")
        else:
            batch = None
            bobs = obs[BATCH][lab_mask] if BATCH in obs else None
            if bobs is not None and bobs.notna().all() and bobs.nunique() > 1:
                batch = np.asarray(bobs).astype(str)
            res = scib_scores(z, labels, batch)
            note = f"scib-metrics {res['version']}{lab_note}"
            for s, v in res["scores"].items():
                _rows(rows, f"scib/{s}", v, res["errors"].get(s, ""), note)

    # ---- ground-truth recovery (synthetic) --------------------------------------------------
    if "recovery" in fam and TRUE_SHARED in mdata.obsm:
        z = _shared_latent(preds, mods)
        if z is not None:
            true_shared = np.asarray(mdata.obsm[TRUE_SHARED])[idx]
            private = {
                m: np.asarray(mdata.obsm[true_private_key(m)])[idx]
                for m in mods
                if true_private_key(m) in mdata.obsm
            }
            note = "held-out half of test cells"
            if not finite(z):
                _rows(rows, "recovery_shared_r2", np.nan, "non-finite embedding", note)
            elif len(z) < 4:
                _rows(rows, "recovery_shared_r2", np.nan, f"only {len(z)} test cells", note)
            else:
                res = ground_truth_recovery(z, true_shared, private, seed=int(p["recovery_seed"]))
                _rows(rows, "recovery_shared_r2", res["shared_r2"], note=note)
                priv = []
                for m in private:
                    _rows(rows, f"recovery_private_r2/{m}", res[f"private_r2/{m}"], note=note)
                    priv.append(res[f"private_r2/{m}"])
                _mean_row(rows, "recovery_private_r2", priv, note)

    # ---- realism of generated cells ---------------------------------------------------------
    if "realism" in fam:
        kw = {
            "n_pcs": int(p["realism_n_pcs"]),
            "folds": int(p["realism_folds"]),
            "max_cells": p["realism_max_cells"],
        }
        note = f"pca={kw['n_pcs']} folds={kw['folds']}"
        vals = []
        sources = [(f"prior/{m}", m, g) for m, g in sorted(preds.generated.items())]
        sources += [(f"{s}->{t}", t, g) for (s, t), g in sorted(preds.imputations.items())]
        observed: dict[str, Any] = {}
        cache: dict = {}  # one PCA per modality, shared by its generated sets
        for name, mod, gen in sources:
            if mod not in mdata.mod:
                continue
            if mod not in observed:
                observed[mod] = mdata.mod[mod].X[idx]
            try:
                v = c2st_auroc(observed[mod], gen, cache=cache, **kw)
            except ValueError as err:  # e.g. too few cells for 5-fold CV: say so, go on
                _rows(rows, f"realism_c2st_auroc/{name}", np.nan, str(err), note)
                continue
            vals.append(v)
            _rows(rows, f"realism_c2st_auroc/{name}", v, note=note)
        _mean_row(rows, "realism_c2st_auroc", vals, note)

    return pd.DataFrame(rows, columns=COLUMNS)


def _shared_latent(preds: Predictions, mods: list[str]) -> np.ndarray | None:
    """The learned shared latent: ``info["shared_dims"]`` columns of the joint (else first
    modality) embedding when given, else the whole joint (else first modality) embedding."""
    base = None
    if JOINT in preds.embeddings:
        base = np.asarray(preds.embeddings[JOINT])
    else:
        for m in mods:
            if m in preds.embeddings:
                base = np.asarray(preds.embeddings[m])
                break
    if base is None:
        return None
    dims = preds.info.get("shared_dims")
    if dims:
        base = base[:, np.asarray(dims, dtype=int)]
    return base


def history_epochs(history_path: str | os.PathLike) -> int:
    """Epochs run, from ``history.csv`` (number of distinct values of its ``epoch`` column)."""
    try:
        hist = pd.read_csv(history_path)
    except pd.errors.EmptyDataError:
        return 0
    if hist.empty:
        return 0
    if "epoch" not in hist:
        raise InputError(
            f"{history_path}: no 'epoch' column (columns: {list(hist.columns)}); the training "
            "history must have one row per epoch with an 'epoch' column"
        )
    return int(hist["epoch"].nunique())


def evaluate_run(
    scenario_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    dataset: str,
    scenario: str,
    model: str,
    seed: int,
    params: Mapping[str, Any] | None = None,
    history_path: str | os.PathLike | None = None,
) -> None:
    """Evaluate one (dataset, scenario, model, seed) and write the tidy CSV atomically.

    Columns: dataset, scenario, model, seed, metric, value, reason, note.
    """
    import mudata as md

    for path, what in ((scenario_path, "scenario data"), (predictions_path, "predictions")):
        if not os.path.exists(path):
            raise InputError(f"{path}: {what} file not found; run the workflow rule that makes it")
    try:
        preds = Predictions.read(predictions_path)
    except (OSError, KeyError) as err:
        raise InputError(
            f"{predictions_path}: not a readable predictions file ({err}); delete it and rerun "
            "train_model"
        ) from err
    if preds.failed:
        df = evaluate_predictions(None, preds, params)
    else:
        try:
            mdata = md.read_h5mu(scenario_path)
        except OSError as err:
            raise InputError(
                f"{scenario_path}: not a readable MuData file ({err}); delete it and rerun the "
                "scenario rule"
            ) from err
        try:
            df = evaluate_predictions(mdata, preds, params)
        except InputError as err:
            raise InputError(f"{predictions_path} vs {scenario_path}: {err}") from err
    if history_path is not None and os.path.exists(history_path):
        df = pd.concat(
            [df, pd.DataFrame([{"metric": "epochs", "value": float(history_epochs(history_path)),
                                "reason": "", "note": ""}])],
            ignore_index=True,
        )
    df.insert(0, "seed", int(seed))
    df.insert(0, "model", model)
    df.insert(0, "scenario", scenario)
    df.insert(0, "dataset", dataset)
    df["reason"] = df["reason"].fillna("")
    df["note"] = df["note"].fillna("")
    with atomic_path(out_csv) as tmp:
        df[RUN_COLUMNS].to_csv(tmp, index=False)
