"""The ``train_model`` job: build a method from the registry, fit it, write its four outputs.

Layering (data flows one way; ``tests/test_import_graph.py`` fails on any cycle):
``data`` (sources -> readers -> preprocess -> scenarios) -> ``methods`` (pure modules,
objectives, the one training loop :mod:`dmmvae.methods.training.loop`, controls, reference tools; the
:class:`~dmmvae.methods.Method` contract and the ``MODELS`` registry) -> ``train`` (this job:
runtime set-up from :mod:`dmmvae.runtime`, failure records, provenance) -> ``evaluate`` ->
``aggregate`` -> ``plots`` -> ``report``.

Every method honours one contract, ``fit(mdata, *, training, seed, device)``; what it cannot
honour it says (``Method.TRAINING_KEYS``: the training keys it applies; ``Method.uses_device``),
and ``run_info.yaml`` records what was really applied (``training``), what was ignored
(``training_ignored``) and the device really used.
"""

from __future__ import annotations

import time
import traceback

import mudata as md
import numpy as np
import pandas as pd
import torch

from .constants import SPLIT, TEST
from .io import InputError, Predictions, atomic_path, write_yaml
from .methods import apply_recipe, build_model, modality_kinds
from .methods._base import MissingDependencyError, NotApplicableError
from .methods.training.loop import TrainingFailure, resolve_training
from .runtime import peak_memory_mb, resolve_device


def run_training(
    scenario_path: str,
    *,
    model_name: str,
    params: dict | None,
    training: dict | None,
    seed: int,
    device: str,
    out_predictions: str,
    out_checkpoint: str,
    out_history: str,
    out_run_info: str,
    recipes: dict | None = None,
) -> None:
    """Train one model on one scenario and write its four outputs (atomically).

    Bad input (unreadable file, unknown model / parameter / training key) raises and writes
    nothing. Divergence (non-finite loss), out-of-memory and the time limit do NOT raise: the
    predictions file then carries ``failure={"reason", "epoch", "log"}`` and the other three
    files are written as usual, so the grid goes on. ``recipes`` (a model entry's settings per
    modality pair) apply over ``params`` and ``training`` when the scenario's modalities are
    that pair; ``run_info.yaml`` names the recipe applied.
    """
    cfg = resolve_training(training)
    method = build_model(model_name, params or {})
    try:
        mdata = md.read_h5mu(scenario_path)
    except Exception as e:  # noqa: BLE001 - re-raised as a clear input error
        raise InputError(
            f"{scenario_path}: cannot read the scenario MuData ({type(e).__name__}: {e}). "
            "Fix: re-run the preprocess/make-scenario rules that produce it."
        ) from e
    params, training, recipe = apply_recipe(params, training, recipes, modality_kinds(mdata))
    if recipe is not None:
        cfg = resolve_training(training)
        method = build_model(model_name, params)
    dev = resolve_device(device) if method.uses_device else torch.device("cpu")
    t0 = time.perf_counter()
    failure = None
    history = pd.DataFrame()
    preds = None
    try:
        history = method.fit(mdata, training=cfg, seed=seed, device=str(dev))
        if history is None:
            history = pd.DataFrame()
        preds = method.predict(mdata)
    except TrainingFailure as e:
        failure = {"reason": e.reason, "epoch": e.epoch, "log": e.log}
        history = e.history
    except NotApplicableError as e:  # e.g. needs paired cells or linked features
        failure = {"reason": e.reason, "epoch": 0, "log": str(e)}
    except MissingDependencyError as e:  # optional reference tool not installed
        failure = {"reason": "not_installed", "epoch": 0, "log": str(e)}
    except (torch.cuda.OutOfMemoryError, MemoryError) as e:
        failure = {
            "reason": "out_of_memory",
            "epoch": len(history),
            "log": f"{type(e).__name__}: {e}",
        }
    except RuntimeError as e:  # CPU allocator failures surface as RuntimeError
        if "out of memory" not in str(e).lower() and "can't allocate memory" not in str(e).lower():
            raise
        failure = {
            "reason": "out_of_memory",
            "epoch": len(history),
            "log": traceback.format_exc(limit=3),
        }
    seconds = time.perf_counter() - t0
    test_names = mdata.obs_names[mdata.obs[SPLIT].to_numpy() == TEST]
    if failure is not None or preds is None:
        preds = Predictions(obs_names=np.asarray(test_names), failure=failure)
    train_info = dict(getattr(method, "train_info", {}) or {})
    applied = method.applied_training(cfg)
    info = {
        "model": model_name,
        "status": "failed" if failure else "ok",
        "device": str(dev),
        "torch_version": str(torch.__version__),
        "cuda_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "seed": int(seed),
        "params": method.params,
        "recipe": recipe,
        # provenance: only what the method really applied; the rest is listed as ignored
        "training": applied,
        "training_ignored": sorted(set(cfg) - set(applied)),
        "epochs_run": int(len(history)) if history is not None else 0,
        "best_epoch": train_info.get("best_epoch"),
        "num_threads": torch.get_num_threads(),
        "seconds": seconds,
        **peak_memory_mb(dev),
        "failure": failure,
        "scenario": str(scenario_path),
    }
    preds.info.update({k: v for k, v in info.items() if k not in ("params", "training")})
    preds.write(out_predictions)
    with atomic_path(out_checkpoint) as tmp:
        if method.is_neural and failure is None:
            ckpt = method.checkpoint()
            ckpt.update({"model": model_name, "training": applied, "seed": int(seed)})
            torch.save(ckpt, tmp)
        else:
            torch.save(
                {
                    "model": model_name,
                    "class": type(method).__name__,
                    "params": method.params,
                    "training": info["training"],
                    "seed": int(seed),
                    "status": info["status"],
                    "failure": failure,
                },
                tmp,
            )
    if history is None or history.empty:
        history = pd.DataFrame(columns=["epoch"])  # header-only: readable by pd.read_csv
    with atomic_path(out_history) as tmp:
        history.to_csv(tmp, index=False)
    write_yaml(out_run_info, info)


__all__ = ["run_training"]
