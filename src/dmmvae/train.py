"""Plain-PyTorch training loop and the ``train_model`` entry point (:func:`run_training`).

Training configuration (``training:`` in the workflow config; defaults in
:data:`TRAINING_DEFAULTS`):

===========================  ==========  ======================================================
key                          default     meaning
===========================  ==========  ======================================================
max_epochs                   100         upper bound on epochs
batch_size                   256         cells per minibatch
lr                           1e-3        AdamW learning rate
weight_decay                 0.0         AdamW weight decay
kl_warmup_epochs             10          KL weight rises linearly 0 -> 1 over these epochs
early_stopping_patience      10          stop after this many epochs without a validation
                                         improvement (counted once warm-up is over); 0 = off
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
===========================  ==========  ======================================================

The loop: seeded (python, numpy, torch; deterministic algorithms with ``warn_only`` on CUDA),
device resolved at run time (``"auto"`` -> CUDA when available), validation loss computed at
full KL weight, best-validation weights restored at the end, per-epoch history of every loss
term (``train_<term>``, ``validation_<term>``, ``kl_weight``, ``seconds``). A non-finite loss
or the time limit raises :class:`TrainingFailure`; :func:`run_training` turns it (and
out-of-memory errors) into a failure record instead of raising.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import resource
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from .constants import SPLIT, TEST, TRAIN
from .io import InputError, Predictions, atomic_path, write_yaml

TRAINING_DEFAULTS: dict[str, Any] = {
    "max_epochs": 100,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "kl_warmup_epochs": 10,
    "early_stopping_patience": 10,
    "validation_fraction": 0.1,
    "grad_clip": 10.0,
    "amp": "none",
    "time_limit_minutes": None,
    "progress_bar": "auto",
    "semi_supervised_fraction": 0.0,
    "num_threads": "auto",
}

AMP_MODES = ("none", "bf16", "fp16")


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
    unknown = sorted(set(training) - set(TRAINING_DEFAULTS))
    if unknown:
        raise ValueError(
            f"training: unknown key(s) {unknown}; valid keys are {sorted(TRAINING_DEFAULTS)}"
        )
    cfg = {**TRAINING_DEFAULTS, **training}
    amp = cfg["amp"]
    cfg["amp"] = {False: "none", None: "none", True: "bf16"}.get(amp, amp)
    if cfg["amp"] not in AMP_MODES:
        raise ValueError(f"training.amp={amp!r}; valid values are {list(AMP_MODES)}")
    if not 0.0 <= float(cfg["validation_fraction"]) < 1.0:
        raise ValueError("training.validation_fraction must be in [0, 1)")
    if not 0.0 <= float(cfg["semi_supervised_fraction"]) <= 1.0:
        raise ValueError("training.semi_supervised_fraction must be in [0, 1]")
    return cfg


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available else CPU; ``"cuda"`` without a GPU -> ValueError."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device '{device}' requested but torch sees no CUDA device; use 'auto' or 'cpu'"
        )
    return dev


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the legacy API
    torch.manual_seed(seed)
    if device is not None and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def set_num_threads(num_threads: int | str | None) -> int:
    """Set torch's intra-op threads; ``"auto"`` = available cores - 1 (1..8). Returns the count.

    Measured on a shared 2-core machine: one thread trains the demo MVAE (2000 cells x
    500 genes + 1000 peaks) in 12 s wall / 8 s CPU, two threads in 118 s / 87 s (the small
    matrix products of these models do not amortise OpenMP synchronisation, and spinning
    threads compete with the other jobs of the machine). On the same machine when idle, the
    wider 6k-cell benchmark (2000 genes + 8000 peaks, ``benchmarks/bench_training.py``) trains
    1.6x faster on two threads than on one: more threads pay off for wide modalities on a
    machine that is not shared.
    """
    if num_threads is None:
        return torch.get_num_threads()
    if num_threads == "auto":
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        n = max(1, min(8, cores - 1))
    else:
        n = int(num_threads)
        if n < 1:
            raise ValueError(
                f"training.num_threads={num_threads!r}; use a positive integer, 'auto' or null"
            )
    torch.set_num_threads(n)
    return n


def cpu_bf16_supported() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (oneDNN: AVX512-BF16 or AMX).

    Measured on an AMD EPYC with AVX512-BF16: a 256 x 128 by 128 x 8000 product takes
    1.1 ms in bf16 against 5.2 ms in float32 (one thread).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - build without oneDNN
        return False


def effective_amp(device: torch.device, amp: str) -> str:
    """The autocast mode actually used: ``amp`` on CUDA; on CPU "bf16" where supported."""
    if device.type == "cuda":
        return amp
    if device.type == "cpu" and amp == "bf16" and cpu_bf16_supported():
        return "bf16"
    return "none"


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
    from .constants import visible_key

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


def fit_model(
    model,
    mdata,
    *,
    seed: int = 0,
    device: str = "auto",
    time_limit_s: float | None = None,
    training: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Build ``model`` (a :class:`~dmmvae.methods.vae.MultimodalVAE`) from ``mdata`` and train it."""
    from .methods.data import MultimodalData, build_spec

    cfg = resolve_training(training)
    if time_limit_s is None and cfg["time_limit_minutes"]:
        time_limit_s = 60.0 * float(cfg["time_limit_minutes"])
    set_num_threads(cfg["num_threads"])
    dev = resolve_device(device)
    seed_everything(seed, dev)
    t0 = time.perf_counter()
    spec = build_spec(mdata, model.params.get("likelihoods"))
    semi = float(cfg["semi_supervised_fraction"])
    model.n_classes = len(spec.labels) if semi > 0 and spec.labels else 0
    model.build(spec)
    model.to(dev)
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
    optimizers = model.configure_optimizers(cfg)
    ctx = StepContext(dev, cfg["amp"], cfg["grad_clip"])
    gen = torch.Generator().manual_seed(seed)
    bs = int(cfg["batch_size"])
    eval_bs = eval_batch_size(bs, sum(ms.n_features for ms in spec.modalities.values()))
    warm = int(cfg["kl_warmup_epochs"])
    patience = int(cfg["early_stopping_patience"])
    min_last = 2 if model.params.get("norm") == "batch" else 1
    rows: list[dict[str, Any]] = []
    best, best_epoch, best_state, wait = math.inf, -1, None, 0
    bar = _progress(int(cfg["max_epochs"]), cfg["progress_bar"])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    epoch = -1
    try:
        for epoch in range(int(cfg["max_epochs"])):
            te = time.perf_counter()
            kl_weight = min(1.0, epoch / warm) if warm > 0 else 1.0
            model.train()
            sums: dict[str, torch.Tensor] = {}
            n = 0
            for batch in data.batches(
                train_cells, bs, shuffle=True, generator=gen, min_last=min_last
            ):
                terms = model.train_step(batch, kl_weight, optimizers, ctx)
                b = len(batch["index"])
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
                    terms = model.validation_step(batch, 1.0)
                    b = len(batch["index"])
                    for k, v in terms.items():
                        vs[k] = vs[k] + v * b if k in vs else v * b
                    nv += b
                row.update(_mean_terms(vs, nv, "validation"))
                monitored = row["validation_loss"]
            else:
                monitored = row["train_loss"]
            row["seconds"] = time.perf_counter() - te
            rows.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{monitored:.4g}")
            if math.isfinite(monitored) and monitored < best - 1e-4 * abs(
                best if math.isfinite(best) else 0
            ):
                best, best_epoch, wait = monitored, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            elif epoch >= warm:
                wait += 1
                if patience and wait >= patience:
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
        "train_seconds": time.perf_counter() - t0,
        "n_train_cells": len(train_cells),
        "n_validation_cells": len(val_cells),
        "training": cfg,
    }
    return history


def _peak_memory_mb(dev: torch.device | None) -> dict[str, float]:
    out = {"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if dev is not None and dev.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


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
) -> None:
    """Train one model on one scenario and write its four outputs (atomically).

    Bad input (unreadable file, unknown model / parameter / training key) raises and writes
    nothing. Divergence (non-finite loss), out-of-memory and the time limit do NOT raise: the
    predictions file then carries ``failure={"reason", "epoch", "log"}`` and the other three
    files are written as usual, so the grid goes on.
    """
    import mudata as md

    from .methods import build_model
    from .methods._base import MissingDependencyError
    from .methods.controls import MissingPairsError

    cfg = resolve_training(training)
    method = build_model(model_name, params or {})
    dev = resolve_device(device) if method.is_neural else torch.device("cpu")
    try:
        mdata = md.read_h5mu(scenario_path)
    except Exception as e:  # noqa: BLE001 - re-raised as a clear input error
        raise InputError(
            f"{scenario_path}: cannot read the scenario MuData ({type(e).__name__}: {e}). "
            "Fix: re-run the preprocess/make-scenario rules that produce it."
        ) from e
    time_limit_s = 60.0 * float(cfg["time_limit_minutes"]) if cfg["time_limit_minutes"] else None
    t0 = time.perf_counter()
    failure = None
    history = pd.DataFrame()
    preds = None
    try:
        if method.is_neural:
            history = method.fit(
                mdata, seed=seed, device=str(dev), time_limit_s=time_limit_s, training=cfg
            )
        else:
            history = method.fit(mdata, seed=seed, device="cpu", time_limit_s=time_limit_s)
        if history is None:
            history = pd.DataFrame()
        preds = method.predict(mdata)
    except TrainingFailure as e:
        failure = {"reason": e.reason, "epoch": e.epoch, "log": e.log}
        history = e.history
    except MissingPairsError as e:  # a control that needs paired cells, on diagonal data
        failure = {"reason": "missing_pairs", "epoch": 0, "log": str(e)}
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
    info = {
        "model": model_name,
        "status": "failed" if failure else "ok",
        "device": str(dev),
        "torch_version": str(torch.__version__),
        "cuda_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "seed": int(seed),
        "params": method.params,
        "training": cfg if method.is_neural else {},
        "epochs_run": int(len(history)) if history is not None else 0,
        "best_epoch": train_info.get("best_epoch"),
        "num_threads": torch.get_num_threads(),
        "seconds": seconds,
        **_peak_memory_mb(dev),
        "failure": failure,
        "scenario": str(scenario_path),
    }
    preds.info.update({k: v for k, v in info.items() if k not in ("params", "training")})
    preds.write(out_predictions)
    with atomic_path(out_checkpoint) as tmp:
        if method.is_neural and failure is None:
            ckpt = method.checkpoint()
            ckpt.update({"model": model_name, "training": cfg, "seed": int(seed)})
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


__all__ = [
    "TRAINING_DEFAULTS",
    "StepContext",
    "TrainingFailure",
    "cpu_bf16_supported",
    "effective_amp",
    "eval_batch_size",
    "fit_model",
    "resolve_device",
    "resolve_training",
    "run_training",
    "seed_everything",
    "set_num_threads",
    "train_and_validation_cells",
]
