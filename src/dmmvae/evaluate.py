"""Score one method's predictions on the test cells of a scenario (``PROTOCOL.md``).

The metric registry :data:`dmmvae.metrics.METRICS` says which metrics exist, what each needs
and how it is computed; this module builds the inputs (:func:`eval_inputs`), runs the
registry (:func:`evaluate_predictions`) and writes one run's table (:func:`evaluate_run`).

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
``realism_c2st_auroc/mean``             mean of the above (0.5 best); only for methods
                                        that generate cells (``generated`` predictions)
``epochs``                              epochs run (from ``history.csv``)
``failed``                              value NaN; the ``reason`` column says why
=====================================  ======================================================

Every row also has ``reason`` (empty unless failed or not computable) and ``note`` (the
parameters used, e.g. ``k=5``, and the scib-metrics version).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import mudata as md
import numpy as np
import pandas as pd

from .constants import (
    BATCH,
    LABEL,
    MODALITY_KIND,
    SPLIT,
    TEST,
    TRUE_SHARED,
    true_private_key,
)
from .io import InputError, Predictions, atomic_path
from .metrics import EvalInputs, compute_rows, computed_families
from .schema import schema_defaults

COLUMNS = ["metric", "value", "reason", "note"]
RUN_COLUMNS = ["dataset", "scenario", "model", "seed", *COLUMNS]


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``evaluation`` section's schema defaults updated with ``params``.

    ``families`` None (the default) means every family of the metric registry. ValueError
    naming unknown keys / families and listing the valid ones.
    """
    defaults = schema_defaults("evaluation")
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"evaluation: unknown parameter(s) {unknown}; valid parameters are "
            f"{sorted(defaults)}"
        )
    out = {**defaults, **params}
    valid = computed_families()
    if out.get("families") is None:
        out["families"] = valid
    bad = sorted(set(out["families"]) - set(valid))
    if bad:
        raise ValueError(f"evaluation: unknown metric families {bad}; valid families are {valid}")
    return out


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


def eval_inputs(mdata, preds: Predictions, params: Mapping[str, Any]) -> EvalInputs:
    """What the metric functions see: the test cells of ``mdata`` in ``preds``' order."""
    idx = _test_view(mdata, preds)
    mods = list(mdata.mod)
    obs = mdata.obs.iloc[idx]
    # label-based metrics use the labelled test cells (all of them when every cell has one)
    labels, lab_mask = None, np.ones(len(idx), dtype=bool)
    if LABEL in obs:
        lab_mask = np.asarray(obs[LABEL].notna())
        if lab_mask.sum() >= 10 and obs[LABEL][lab_mask].nunique() >= 2:
            labels = np.asarray(obs[LABEL][lab_mask]).astype(str)
    batch = None
    if BATCH in obs:
        bobs = obs[BATCH][lab_mask]
        if bobs.notna().all() and bobs.nunique() > 1:
            batch = np.asarray(bobs).astype(str)
    true_shared, true_private = None, {}
    if TRUE_SHARED in mdata.obsm:
        true_shared = np.asarray(mdata.obsm[TRUE_SHARED])[idx]
        true_private = {m: np.asarray(mdata.obsm[true_private_key(m)])[idx]
                        for m in mods if true_private_key(m) in mdata.obsm}
    scenario = (mdata.uns.get("scenario") or {}).get("kind")
    return EvalInputs(
        mods=mods,
        kinds={m: str(mdata.mod[m].uns.get(MODALITY_KIND, m)) for m in mods},
        embeddings={k: np.asarray(v) for k, v in preds.embeddings.items()},
        imputations=dict(preds.imputations),
        generated=dict(preds.generated),
        cross_generated=dict(preds.cross_generated),
        read_observed=lambda m: mdata.mod[m].X[idx],
        labels=labels,
        label_mask=lab_mask,
        label_note="" if lab_mask.all() else f" labelled cells={int(lab_mask.sum())}",
        batch=batch,
        true_shared=true_shared,
        true_private=true_private,
        scenario=None if scenario is None else str(scenario),
        info=dict(preds.info),
        params=dict(params),
    )


def evaluate_predictions(
    mdata, preds: Predictions, params: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Every registered metric (:data:`dmmvae.metrics.METRICS`) of a selected family that
    applies to ``preds``, as a DataFrame (metric, value, reason, note). A metric whose
    requirements ``preds`` or the data do not meet (no embeddings, no generated cells, no
    labels, ...) is skipped.

    A failed method (``preds.failure``) gives the single row ``failed`` with its reason.
    """
    p = resolve_params(params)
    if preds.failed:
        reason = str((preds.failure or {}).get("reason", "unknown failure"))
        return pd.DataFrame([{"metric": "failed", "value": np.nan, "reason": reason, "note": ""}])
    rows = compute_rows(eval_inputs(mdata, preds, p), p["families"])
    df = pd.DataFrame([r._asdict() for r in rows], columns=COLUMNS)
    df["value"] = df["value"].astype(float)
    return df


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
