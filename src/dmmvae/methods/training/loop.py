"""The one training loop of the neural methods (plain PyTorch): :func:`fit_model`.

Training configuration (``training:`` in the workflow config; defaults in the config schema,
:func:`dmmvae.schema.schema_defaults` ``("training")``):

===========================  ==========  ======================================================
key                          default     meaning
===========================  ==========  ======================================================
max_epochs                   100         upper bound on epochs
batch_size                   256         cells per minibatch
lr                           1e-3        AdamW learning rate
weight_decay                 0.0         AdamW weight decay
kl_warmup_epochs             10          KL weight rises linearly 0 -> 1 over these epochs
early_stopping_patience      10          stop after this many epochs without a validation
                                         improvement (counted once warm-up and a module's
                                         adversarial burn-in are over); 0 = off
validation_fraction          0.1         part of the train cells held out for early stopping
grad_clip                    10.0        max gradient norm (0 / null = off)
amp                          "none"      "none" | "bf16" | "fp16": autocast on CUDA; "bf16"
                                         also on CPUs with native bf16 (AVX512-BF16 / AMX,
                                         :func:`cpu_bf16_supported`), ignored on other CPUs
time_limit_minutes           null        wall-clock limit of the training; exceeded -> failure
progress_bar                 "auto"      tqdm bar; "auto" = only when stderr is a terminal
semi_supervised_fraction     0.0         fraction of train cells whose labels feed a
                                         classifier head on z (0 = unsupervised)
num_threads                  "auto"      torch CPU threads; "auto" = cores - 1 (at least 1,
                                         at most 8), null = torch's default (all cores)
optimizer                    "adamw"     "adamw" | "rmsprop" (GLUE's), for every optimiser
lr_plateau_patience          0           GLUE's schedule: every optimiser's learning rate is
                                         divided by 10 after more than this many epochs
                                         without a validation improvement (torch's
                                         ReduceLROnPlateau, from the end of the burn-in), and
                                         the weights kept and the early-stopping patience
                                         count only from the first reduction on (GLUE's
                                         ``wait_n_lrs=1``; with no reduction in
                                         ``max_epochs``, the best epoch as without it); 0 = off
budget                       "epochs"    "epochs": the budget is the epoch counts above;
                                         "glue": scglue's automatic budget in optimiser steps
                                         (:func:`glue_budget`), which replaces ``max_epochs``,
                                         ``early_stopping_patience``, a non-zero
                                         ``lr_plateau_patience`` and a module's non-zero
                                         ``align_burnin``; recorded in ``train_info``
===========================  ==========  ======================================================

The loop: seeded (python, numpy, torch; deterministic algorithms with ``warn_only`` on CUDA),
device resolved at run time (``"auto"`` -> CUDA when available), validation loss computed at
full KL weight, the best-validation weights among the epochs after the warm-up (the full
objective: KL weight 1, D-MMVAE's adversaries on) restored at the end, per-epoch history of every loss
term (``train_<term>``, ``validation_<term>``, ``kl_weight``, ``seconds``). A non-finite loss
or the time limit raises :class:`TrainingFailure`; :func:`run_training` turns it (and
out-of-memory errors) into a failure record instead of raising.
"""


from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...constants import BATCH_KEYS, SPLIT, TRAIN, visible_key
from ...io import InputError
from ...runtime import effective_amp, resolve_device, seed_everything, set_num_threads
from ...schema import schema_defaults
from .batches import MultimodalData, build_spec
from .state import TrainingState

AMP_MODES = ("none", "bf16", "fp16")
OPTIMIZERS = ("adamw", "rmsprop")
BUDGETS = ("epochs", "glue")
#: scglue's automatic budget (``SCGLUEModel``'s ``*_PRG``): learning rate x optimiser steps
GLUE_PROGRESS = {"max_epochs": 48.0, "early_stopping_patience": 4.0, "lr_plateau_patience": 2.0,
                 "align_burnin": 8.0}


class TrainingFailure(RuntimeError):
    """Training could not finish: ``reason`` in {"nan_loss", "time_limit", "out_of_memory"}."""

    def __init__(self, reason: str, epoch: int, log: str = "", history: pd.DataFrame | None = None):
        super().__init__(f"training failed at epoch {epoch}: {reason}. {log}".strip())
        self.reason = reason
        self.epoch = epoch
        self.log = log
        self.history = history if history is not None else pd.DataFrame()


def resolve_training(training: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults + overrides; an unknown key raises a ValueError listing the valid keys."""
    training = dict(training or {})
    defaults = schema_defaults("training")
    unknown = sorted(set(training) - set(defaults))
    if unknown:
        raise ValueError(
            f"training: unknown key(s) {unknown}; valid keys are {sorted(defaults)}"
        )
    cfg = {**defaults, **training}
    amp = cfg["amp"]
    cfg["amp"] = {False: "none", None: "none", True: "bf16"}.get(amp, amp)
    if cfg["amp"] not in AMP_MODES:
        raise ValueError(f"training.amp={amp!r}; valid values are {list(AMP_MODES)}")
    if cfg["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"training.optimizer={cfg['optimizer']!r}; valid values are "
                         f"{list(OPTIMIZERS)}")
    if cfg["budget"] not in BUDGETS:
        raise ValueError(f"training.budget={cfg['budget']!r}; valid values are {list(BUDGETS)}")
    if not 0.0 <= float(cfg["validation_fraction"]) < 1.0:
        raise ValueError("training.validation_fraction must be in [0, 1)")
    if not 0.0 <= float(cfg["semi_supervised_fraction"]) <= 1.0:
        raise ValueError("training.semi_supervised_fraction must be in [0, 1]")
    return cfg


class StepContext:
    """AMP autocast + gradient scaling + clipping for ``train_step`` implementations.

    ``amp`` is resolved by :func:`effective_amp` (CUDA: as asked; CPU: bf16 where the CPU
    has native bf16, else off; fp16 gradient scaling only on CUDA).
    """

    def __init__(self, device: torch.device, amp: str = "none", grad_clip: float | None = None):
        self.device = device
        self.amp = effective_amp(device, amp)
        self.grad_clip = float(grad_clip) if grad_clip else 0.0
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        self._params: tuple[int, list[torch.Tensor]] | None = None

    def autocast(self):
        if self.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _parameters(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        if self._params is None or self._params[0] != id(optimizer):  # once per optimizer
            self._params = (id(optimizer), [p for g in optimizer.param_groups for p in g["params"]])
        return self._params[1]

    def step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, retain_graph: bool = False
    ) -> None:
        """Backward, clip the optimizer's parameters' gradients, step."""
        params = self._parameters(optimizer)
        if self.scaler is not None:
            self.scaler.scale(loss).backward(retain_graph=retain_graph)
            if self.grad_clip:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward(retain_graph=retain_graph)
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            optimizer.step()


def eval_batch_size(batch_size: int, n_features: int, budget: int = 1 << 24) -> int:
    """Rows per validation / prediction batch: up to 1024 (fewer Python steps), but no more
    than ``budget`` dense values (``rows x features``) so wide data (10^5 ATAC peaks) keep
    the decoder outputs of a batch small; never fewer than the training ``batch_size``
    (benchmarks/bench_memory.py: 1024-row validation batches over 108k peaks dominated the
    peak memory of the fit).
    """
    return max(int(batch_size), min(1024, budget // max(1, int(n_features))))


def _progress(total: int, enabled: Any):
    show = sys.stderr.isatty() if enabled in ("auto", None) else bool(enabled)
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="epochs", leave=False)


def _mean_terms(sums: dict[str, torch.Tensor], n: int, prefix: str) -> dict[str, float]:
    if not sums:
        return {}
    keys = list(sums)
    vals = torch.stack([sums[k].float() for k in keys]).cpu().numpy() / max(n, 1)  # one sync
    return {f"{prefix}_{k}": float(v) for k, v in zip(keys, vals, strict=True)}


def train_and_validation_cells(
    mdata, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train cells that show at least one modality, split (seeded) into train / validation."""
    is_train = mdata.obs[SPLIT].to_numpy() == TRAIN
    shows = np.zeros(mdata.n_obs, dtype=bool)
    for m in mdata.mod:
        key = visible_key(m)
        shows |= mdata.obs[key].to_numpy(bool) if key in mdata.obs else is_train
    cells = np.flatnonzero(is_train & shows)
    if len(cells) == 0:
        raise InputError(
            f"{getattr(mdata, 'filename', None) or 'scenario MuData'}: no train cell shows any "
            "modality (obs['split'] / obs['visible_<mod>']). Fix: rebuild the scenario."
        )
    perm = np.random.default_rng(seed).permutation(cells)
    n_val = int(round(validation_fraction * len(cells)))
    if validation_fraction > 0 and len(cells) - n_val < 2:
        n_val = 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def glue_budget(lr: float, n_train_cells: int, batch_size: int) -> dict[str, int]:
    """scglue's automatic budget (``SCGLUEModel.fit``): each of :data:`GLUE_PROGRESS` becomes
    ``max(ceil(progress / lr / batches per epoch), ceil(progress))`` epochs, so that a budget
    is a number of optimiser steps whatever the data's size (48 / lr steps at most, a patience
    of 4 / lr steps, a burn-in of 8 / lr steps)."""
    per_epoch = max(n_train_cells, 1) / int(batch_size)
    return {k: max(math.ceil(p / float(lr) / per_epoch), math.ceil(p))
            for k, p in GLUE_PROGRESS.items()}


def fit_model(
    model,
    mdata,
    *,
    seed: int = 0,
    device: str = "auto",
    training: Mapping[str, Any] | None = None,
    init_state: Mapping[str, Any] | None = None,
    order_seed: int | None = None,
) -> pd.DataFrame:
    """Build ``model`` (a :class:`~dmmvae.methods.modules.vae.MultimodalVAE` module) from ``mdata`` and train it.

    ``init_state``: weights to start from (a second stage); ``order_seed``: seed of the minibatch
    order (default ``seed``; the validation cells always follow ``seed``)."""
    cfg = resolve_training(training)
    limit = cfg["time_limit_minutes"]
    time_limit_s = 60.0 * float(limit) if limit else None
    set_num_threads(cfg["num_threads"])
    dev = resolve_device(device)
    seed_everything(seed, dev)
    t0 = time.perf_counter()
    spec = build_spec(mdata, model.params.get("likelihoods"))
    semi = float(cfg["semi_supervised_fraction"])
    model.n_classes = len(spec.labels) if semi > 0 and spec.labels else 0
    model.build(spec)
    model.to(dev)
    if init_state is not None:
        model.load_state_dict(init_state)
    data = MultimodalData(mdata, spec, dev)
    train_cells, val_cells = train_and_validation_cells(
        mdata, float(cfg["validation_fraction"]), seed
    )
    if model.n_classes:
        rng = np.random.default_rng(seed + 1)
        labelled = np.concatenate([train_cells, val_cells])
        labelled = labelled[data.all_labels[labelled] >= 0]
        n_lab = int(round(semi * len(labelled)))
        data.set_given_labels(rng.choice(labelled, size=n_lab, replace=False))
    auto = None
    if cfg["budget"] == "glue":  # the counts in epochs of these cells' batches (glue_budget)
        auto = glue_budget(float(cfg["lr"]), len(train_cells), int(cfg["batch_size"]))
        cfg = {**cfg, "max_epochs": auto["max_epochs"],
               "early_stopping_patience": auto["early_stopping_patience"],
               "lr_plateau_patience": auto["lr_plateau_patience"] if cfg["lr_plateau_patience"] else 0}
        if int(model.params.get("align_burnin", 0) or 0) > 0:
            model.params = {**model.params, "align_burnin": auto["align_burnin"]}
    optimizers = model.configure_optimizers(cfg)
    ctx = StepContext(dev, cfg["amp"], cfg["grad_clip"])
    warm = int(cfg["kl_warmup_epochs"])
    state = TrainingState(data.n_obs, warmup_epochs=warm)  # what the module carries across steps
    gen = torch.Generator().manual_seed(seed if order_seed is None else order_seed)
    bs = int(cfg["batch_size"])
    eval_bs = eval_batch_size(bs, sum(ms.n_features for ms in spec.modalities.values()))
    patience = int(cfg["early_stopping_patience"])
    # the weights kept are the best of the epochs trained on the full objective: from the end of
    # the warm-up (KL weight 1, adversaries on) and of a module's adversarial burn-in
    # (``burnin_epochs``, GLUE's safe burn-in), or the last epoch when training is shorter
    first_kept = min(warm + int(getattr(model, "burnin_epochs", 0)), int(cfg["max_epochs"]) - 1)
    min_last = 2 if model.params.get("norm") == "batch" else 1
    rows: list[dict[str, Any]] = []
    best, best_epoch, best_state, wait = math.inf, -1, None, 0
    plateau, n_reduced = int(cfg["lr_plateau_patience"]), 0
    schedulers = [torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=plateau)
                  for opt in optimizers.values()] if plateau else []
    bar = _progress(int(cfg["max_epochs"]), cfg["progress_bar"])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    epoch = -1
    try:
        for epoch in range(int(cfg["max_epochs"])):
            te = time.perf_counter()
            kl_weight = min(1.0, epoch / warm) if warm > 0 else 1.0
            state.epoch = epoch
            model.train()
            sums: dict[str, torch.Tensor] = {}
            n = 0
            for batch in data.batches(
                train_cells, bs, shuffle=True, generator=gen, min_last=min_last
            ):
                terms = model.train_step(batch, kl_weight, optimizers, ctx, state)
                b = len(batch[BATCH_KEYS.INDEX])
                for k, v in terms.items():
                    sums[k] = sums[k] + v * b if k in sums else v * b
                n += b
                if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                    raise TrainingFailure(
                        "time_limit",
                        epoch,
                        f"time limit of {time_limit_s:.0f} s exceeded",
                        pd.DataFrame(rows),
                    )
            row: dict[str, Any] = {"epoch": epoch, "kl_weight": kl_weight}
            if plateau:  # the rate this epoch was trained at
                row["lr"] = next(iter(optimizers.values())).param_groups[0]["lr"]
            row.update(_mean_terms(sums, n, "train"))
            if not math.isfinite(row.get("train_loss", 0.0)):
                rows.append(row)
                raise TrainingFailure(
                    "nan_loss",
                    epoch,
                    f"non-finite training loss ({row.get('train_loss')})",
                    pd.DataFrame(rows),
                )
            if len(val_cells):
                model.eval()
                vs: dict[str, torch.Tensor] = {}
                nv = 0
                for batch in data.batches(val_cells, eval_bs, min_last=min_last):
                    terms = model.validation_step(batch, 1.0, state)
                    b = len(batch[BATCH_KEYS.INDEX])
                    for k, v in terms.items():
                        vs[k] = vs[k] + v * b if k in vs else v * b
                    nv += b
                row.update(_mean_terms(vs, nv, "validation"))
                monitored = row["validation_loss"]
            else:
                monitored = row["train_loss"]
            row["seconds"] = time.perf_counter() - te
            rows.append(row)
            on_epoch_end = getattr(model, "on_epoch_end", None)
            if on_epoch_end is not None:  # e.g. D-MMVAE's anchor refresh
                on_epoch_end(epoch, warm, state)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{monitored:.4g}")
            if epoch < first_kept:
                continue  # still warming up: not yet the objective the model is trained for
            if schedulers:  # GLUE's LRScheduler: torch's ReduceLROnPlateau on every optimiser
                before = schedulers[0].optimizer.param_groups[0]["lr"]
                for sched in schedulers:
                    sched.step(monitored)
                if schedulers[0].optimizer.param_groups[0]["lr"] < before:
                    n_reduced += 1
                    if n_reduced == 1:  # GLUE's wait_n_lrs=1: weights kept, patience from here
                        best, wait = math.inf, 0
            if math.isfinite(monitored) and monitored < best - 1e-4 * abs(
                best if math.isfinite(best) else 0
            ):
                best, best_epoch, wait = monitored, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                wait += 1
                if patience and wait >= patience and (n_reduced or not schedulers):
                    break
    except (torch.cuda.OutOfMemoryError, MemoryError) as e:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        raise TrainingFailure(
            "out_of_memory", max(epoch, 0), f"{type(e).__name__}: {e}", pd.DataFrame(rows)
        ) from e
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    model.train_info = {
        "device": str(dev),
        "amp": ctx.amp,
        "num_threads": torch.get_num_threads(),
        "seed": int(seed),
        "epochs_run": len(rows),
        "best_epoch": int(best_epoch),
        "lr_reductions": n_reduced,
        "train_seconds": time.perf_counter() - t0,
        "n_train_cells": len(train_cells),
        "n_validation_cells": len(val_cells),
        "training": cfg,
    }
    if auto is not None:
        model.train_info["auto_budget"] = auto
    return history




__all__ = [
    "AMP_MODES",
    "BUDGETS",
    "GLUE_PROGRESS",
    "glue_budget",
    "StepContext",
    "TrainingFailure",
    "eval_batch_size",
    "fit_model",
    "resolve_training",
    "train_and_validation_cells",
]
