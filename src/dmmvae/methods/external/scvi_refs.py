"""Reference methods run through scvi-tools' public API: ``totalvi`` and ``multivi``.

Optional: scvi-tools is imported inside the methods; without it they raise a
``ModuleNotFoundError`` telling the user to ``pip install -e .[refs]`` (the workflow then
records a failure for that run instead of stopping the grid).

What each method trains on (train cells only, scenario masks respected)
---------------------------------------------------------------------
- ``totalvi`` (RNA + ADT, ``scvi.model.TOTALVI``): raw counts of ``layers["counts"]``, proteins
  in ``obsm``. A train cell that hides its ADT gets zero proteins in a separate batch, the
  batch-level missing-protein mechanism of totalVI (its likelihood then ignores the proteins of
  that batch). totalVI cannot encode a cell without RNA: train cells that show only ADT are
  left out (reported in ``info``).
- ``multivi`` (``scvi.model.MULTIVI`` via ``setup_mudata``): RNA + ATAC (binarised peaks), and
  RNA + ADT or RNA + ATAC + ADT where the installed version's ``setup_mudata`` has a protein
  layer. MultiVI marks a modality missing for a cell when its counts are all zero, so hidden
  modalities are zeroed (its native mechanism for unpaired cells).

Predictions (test cells)
------------------------
- Embeddings from one modality alone: the other modalities are zeroed / moved to the
  missing-protein batch, the model's own missing-modality path. For totalVI only the RNA-alone
  embedding exists (no ADT-alone: totalVI needs RNA); its validity depends on the model having
  seen RNA-only cells in training (mosaic / diagonal), which ``info["notes"]`` states.
  Joint embedding: all modalities.
- Imputations, converted to the PROTOCOL scoring normalization: RNA from
  ``get_normalized_expression`` (frequencies ``rho``) -> ``log1p(1e4 * f * rho)`` with ``f`` the
  median train fraction of counts in the kept genes (as the core VAEs do); ADT (totalVI) from
  the expected protein counts -> CLR; ATAC (MultiVI) ``get_normalized_accessibility``
  (probabilities). Pairs the API cannot predict are left out and listed in ``info["notes"]``.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...constants import ADT, ATAC, BATCH, COUNTS, JOINT, RNA, SPLIT, TEST, TRAIN, visible_key
from ...io import InputError, Predictions
from .._base import Method, MissingDependencyError

INSTALL_HINT = (
    "scvi-tools is not installed; the reference methods totalvi / multivi need it. "
    "Install the optional extra: pip install -e .[refs] (or leave these models out of the config)"
)


def import_scvi():
    """``import scvi`` or a ``ModuleNotFoundError`` naming the extra to install."""
    try:
        import scvi
    except ModuleNotFoundError as e:
        raise MissingDependencyError(INSTALL_HINT) from e
    return scvi


def _counts(mdata: md.MuData, mod: str) -> sp.csr_matrix:
    a = mdata.mod[mod]
    if COUNTS not in a.layers:
        raise InputError(
            f"{getattr(mdata, 'filename', None) or 'scenario MuData'}: modality '{mod}' has no "
            f"layers['{COUNTS}']; scvi-tools models need raw counts. Fix: preprocess raw counts "
            "with dmmvae.data.preprocess."
        )
    return sp.csr_matrix(a.layers[COUNTS], dtype=np.float32)


def _rows_zeroed(X: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(sp.diags(keep.astype(np.float32)) @ X)


def _visible(mdata: md.MuData, mod: str) -> np.ndarray:
    key = visible_key(mod)
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    return mdata.obs[key].to_numpy(bool) if key in mdata.obs else train


def _rna_scoring(rho: np.ndarray, kept_fraction: float) -> np.ndarray:
    rho = np.asarray(rho, dtype=np.float64)
    rho = rho / np.clip(rho.sum(1, keepdims=True), 1e-12, None)
    return np.log1p(1e4 * kept_fraction * rho).astype(np.float32)


def _clr(y: np.ndarray) -> np.ndarray:
    ly = np.log1p(np.clip(np.asarray(y, dtype=np.float64), 0, None))
    return (ly - ly.mean(1, keepdims=True)).astype(np.float32)


def _kept_fraction(mdata: md.MuData) -> float:
    from ..training.batches import build_spec

    return build_spec(mdata, modalities=[RNA]).modalities[RNA].kept_fraction


def _accelerator(device: str) -> str:
    return "gpu" if str(device).startswith("cuda") else ("cpu" if device != "auto" else "auto")


class _ScviMethod(Method):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_latent": 20,
        "max_epochs": 200,
        "batch_size": 256,
        "early_stopping": True,
        "lr": 4e-3,
    }
    uses_device: ClassVar[bool] = True
    #: epochs, batch size and lr are scvi-tools' own (``params``); of ``training`` only the
    #: time limit applies (Lightning's ``max_time``)
    TRAINING_KEYS: ClassVar[frozenset[str]] = frozenset({"time_limit_minutes"})
    #: modalities the method requires / accepts
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    ACCEPTED: ClassVar[tuple[str, ...]] = ()

    def _check_modalities(self, mdata: md.MuData) -> list[str]:
        mods = list(mdata.mod)
        missing = [m for m in self.REQUIRED if m not in mods]
        extra = [m for m in mods if m not in self.ACCEPTED]
        if missing or extra:
            raise InputError(
                f"{type(self).__name__.lower()}: needs modalities {list(self.REQUIRED)} (accepts "
                f"{list(self.ACCEPTED)}); the scenario has {mods}. Fix: leave this model out for "
                "this dataset in the config."
            )
        return mods

    def _train_kwargs(self, device: str, seed: int, training=None) -> dict[str, Any]:
        p = self.params
        limit = (training or {}).get("time_limit_minutes")
        kw = {
            "max_epochs": int(p["max_epochs"]),
            "batch_size": int(p["batch_size"]),
            "early_stopping": bool(p["early_stopping"]),
            "accelerator": _accelerator(device),
            "plan_kwargs": {"lr": float(p["lr"])},
            "enable_progress_bar": False,
        }
        if limit:  # Lightning stops at the time limit (training ends early, not a failure)
            kw["max_time"] = datetime.timedelta(minutes=float(limit))
        return kw

    def checkpoint(self) -> dict[str, Any]:
        """Params, train info and the scvi module's weights (reload with scvi's own API)."""
        model = getattr(self, "_model", None)
        state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()} if model else {}
        return {"class": type(self).__name__, "params": self.params,
                "train_info": getattr(self, "train_info", {}), "state_dict": state}

    def save(self, path: str) -> None:
        import torch

        torch.save(self.checkpoint(), path)

    @staticmethod
    def _history(model) -> pd.DataFrame:
        hist = getattr(model, "history", None) or {}
        frames = [v.rename(columns=lambda c, k=k: k) for k, v in hist.items()
                  if isinstance(v, pd.DataFrame) and not k.startswith("lr")]
        if not frames:
            return pd.DataFrame()
        out = pd.concat(frames, axis=1).reset_index(names="epoch")
        return out


class TotalVI(_ScviMethod):
    """scvi-tools totalVI on RNA + ADT (see module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {**_ScviMethod.DEFAULTS}
    REQUIRED = (RNA, ADT)
    ACCEPTED = (RNA, ADT)
    is_neural: ClassVar[bool] = True

    def _adata(self, mdata: md.MuData, rows: np.ndarray, show_adt: np.ndarray) -> ad.AnnData:
        x = _counts(mdata, RNA)[rows]
        y = _rows_zeroed(_counts(mdata, ADT)[rows], show_adt).toarray()
        batch = mdata.obs[BATCH].astype(str).to_numpy()[rows] if BATCH in mdata.obs else np.full(len(rows), "b")
        group = np.where(show_adt, batch + "|adt", batch + "|no_adt")
        a = ad.AnnData(X=x, obs=pd.DataFrame({"_dmmvae_batch": pd.Categorical(group)},
                                               index=mdata.obs_names[rows].astype(str)),
                       var=pd.DataFrame(index=mdata.mod[RNA].var_names.astype(str)))
        a.layers[COUNTS] = x
        a.obsm["protein_expression"] = pd.DataFrame(y, index=a.obs_names,
                                                    columns=mdata.mod[ADT].var_names.astype(str))
        return a

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        scvi = import_scvi()
        self._check_modalities(mdata)
        scvi.settings.seed = int(seed)
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        shows_rna, shows_adt = _visible(mdata, RNA) & train, _visible(mdata, ADT) & train
        rows = np.flatnonzero(shows_rna)
        if len(rows) < 10:
            raise InputError("totalvi: fewer than 10 train cells show RNA; totalVI cannot train on ADT alone")
        self._dropped_adt_only = int((shows_adt & ~shows_rna).sum())
        adata = self._adata(mdata, rows, shows_adt[rows])
        self._groups = sorted(adata.obs["_dmmvae_batch"].cat.categories)
        scvi.model.TOTALVI.setup_anndata(adata, protein_expression_obsm_key="protein_expression",
                                         layer=COUNTS, batch_key="_dmmvae_batch")
        self._model = scvi.model.TOTALVI(adata, n_latent=int(self.params["n_latent"]))
        self._model.train(**self._train_kwargs(device, seed, training))
        self._kept = _kept_fraction(mdata)
        self.train_info = {"epochs_run": len(self._history(self._model)), "n_train_cells": len(rows),
                           "scvi_version": scvi.__version__}
        return self._history(self._model)

    def _test_adata(self, mdata, test, show_adt: bool) -> ad.AnnData:
        a = self._adata(mdata, test, np.full(len(test), show_adt))
        # reuse a training group name: totalVI only knows the batches it was trained with
        known = [g for g in self._groups if g.endswith("|adt" if show_adt else "|no_adt")] or self._groups
        a.obs["_dmmvae_batch"] = pd.Categorical(np.full(len(test), known[0]), categories=self._groups)
        return a

    def predict(self, mdata) -> Predictions:
        test = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TEST)
        joint = self._test_adata(mdata, test, True)
        rna_only = self._test_adata(mdata, test, False)
        m = self._model
        emb = {JOINT: m.get_latent_representation(joint), RNA: m.get_latent_representation(rna_only)}
        _, prot = m.get_normalized_expression(rna_only, n_samples=1, return_mean=True, return_numpy=True,
                                              include_protein_background=True)
        notes = ["no ADT-alone embedding and no ADT->RNA imputation: totalVI needs RNA"]
        if not any(g.endswith("|no_adt") for g in self._groups):
            notes.append("RNA-alone embedding / RNA->ADT from zeroed proteins in a batch that showed "
                         "proteins in training (no RNA-only train cells in this scenario)")
        if self._dropped_adt_only:
            notes.append(f"{self._dropped_adt_only} ADT-only train cells left out")
        return Predictions(mdata.obs_names[test], embeddings=emb,
                           imputations={(RNA, ADT): _clr(prot)},
                           info={"model": "totalvi", "params": self.params, "notes": notes, **self.train_info})


class MultiVI(_ScviMethod):
    """scvi-tools MultiVI on RNA + ATAC (and ADT where the API allows; see module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {**_ScviMethod.DEFAULTS}
    REQUIRED = (RNA,)
    ACCEPTED = (RNA, ATAC, ADT)
    is_neural: ClassVar[bool] = True

    def _mudata(self, mdata: md.MuData, rows: np.ndarray, show: dict[str, np.ndarray]) -> md.MuData:
        mods = {}
        batch = mdata.obs[BATCH].astype(str).to_numpy()[rows] if BATCH in mdata.obs else np.full(len(rows), "b")
        for m in self._mods:
            X = _counts(mdata, m)[rows]
            if m == ATAC:
                X = X.copy()
                X.data = (X.data > 0).astype(np.float32)
            X = _rows_zeroed(X, show[m])
            a = ad.AnnData(X=X, obs=pd.DataFrame({"_dmmvae_batch": pd.Categorical(batch)},
                                                   index=mdata.obs_names[rows].astype(str)),
                           var=pd.DataFrame(index=[f"{m}:{v}" for v in mdata.mod[m].var_names.astype(str)]))
            a.layers[COUNTS] = X
            mods[m] = a
        with md.set_options(pull_on_update=False):
            out = md.MuData(mods)
        out.obs["_indices"] = np.arange(out.n_obs)  # MultiVI's registry field (setup adds it)
        return out

    def _setup(self, scvi, mdata_s: md.MuData) -> None:
        names = {RNA: "rna_layer", ATAC: "atac_layer", ADT: "protein_layer"}
        modalities = {names[m]: m for m in self._mods}
        modalities["batch_key"] = RNA
        layers = {f"{names[m]}": COUNTS for m in self._mods}
        scvi.model.MULTIVI.setup_mudata(mdata_s, batch_key="_dmmvae_batch", modalities=modalities, **layers)

    def fit(self, mdata, *, training=None, seed=0, device="cpu") -> pd.DataFrame:
        scvi = import_scvi()
        self._mods = [m for m in (RNA, ATAC, ADT) if m in self._check_modalities(mdata)]
        if len(self._mods) < 2:
            raise InputError(f"multivi: needs RNA and at least one of atac/adt; the scenario has {list(mdata.mod)}")
        scvi.settings.seed = int(seed)
        train = mdata.obs[SPLIT].to_numpy() == TRAIN
        show = {m: _visible(mdata, m) & train for m in self._mods}
        rows = np.flatnonzero(np.any([show[m] for m in self._mods], axis=0))
        mdata_s = self._mudata(mdata, rows, {m: v[rows] for m, v in show.items()})
        self._setup(scvi, mdata_s)
        self._model = scvi.model.MULTIVI(mdata_s, n_latent=int(self.params["n_latent"]))
        self._model.train(**self._train_kwargs(device, seed, training))
        self._kept = _kept_fraction(mdata)
        self.train_info = {"epochs_run": len(self._history(self._model)), "n_train_cells": len(rows),
                           "scvi_version": scvi.__version__}
        return self._history(self._model)

    def predict(self, mdata) -> Predictions:
        test = np.flatnonzero(mdata.obs[SPLIT].to_numpy() == TEST)
        n = len(test)
        m = self._model
        every = {k: np.ones(n, bool) for k in self._mods}
        emb = {JOINT: m.get_latent_representation(self._mudata(mdata, test, every))}
        imp: dict[tuple[str, str], np.ndarray] = {}
        notes = []
        for src in self._mods:
            alone = self._mudata(mdata, test, {k: np.full(n, k == src) for k in self._mods})
            emb[src] = m.get_latent_representation(alone)
            for tgt in self._mods:
                if tgt == src:
                    continue
                if tgt == RNA:
                    rho = m.get_normalized_expression(alone, return_numpy=True)
                    imp[(src, tgt)] = _rna_scoring(rho, self._kept)
                elif tgt == ATAC:
                    acc = m.get_normalized_accessibility(alone)
                    acc = acc.to_numpy() if hasattr(acc, "to_numpy") else np.asarray(acc)
                    imp[(src, tgt)] = np.asarray(acc, dtype=np.float32)
                else:
                    notes.append(f"no {src}->{tgt} imputation: MultiVI's API has no protein prediction")
        return Predictions(mdata.obs_names[test], embeddings=emb, imputations=imp,
                           info={"model": "multivi", "params": self.params, "notes": notes, **self.train_info})


__all__ = ["INSTALL_HINT", "MultiVI", "TotalVI", "import_scvi"]
