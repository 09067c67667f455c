"""The entry point: validate, cell QC, split, per-kind processing, assembly, linked features."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

from ...constants import (
    BATCH,
    LABEL,
    MODALITY_KIND,
    MODALITY_KINDS,
    PROVENANCE,
    SPLIT,
    TRAIN,
)
from ...io import InputError
from .._validate import COUNT_KINDS, validate_modality
from ..links import add_links
from ..scenarios import protocol_split
from ._adt import _process_adt
from ._atac import _process_atac
from ._gaussian import _process_gaussian
from ._params import resolve_params
from ._provenance import _clean_for_h5, _version
from ._qc import _qc_mask
from ._rna import _process_rna
from ._sparse import _as_csr, _subset_rows


def _kind_of(name: str, a: ad.AnnData) -> str:
    kind = a.uns.get(MODALITY_KIND, name if name in MODALITY_KINDS else None)
    if kind not in MODALITY_KINDS:
        raise InputError(
            f"input: modality '{name}' has uns['{MODALITY_KIND}']={kind!r}; "
            f"fix: set it to one of {list(MODALITY_KINDS)}"
        )
    return str(kind)


def preprocess(
    raw: md.MuData, params: Mapping[str, Any] | None = None, seed: int = 0,
    where: str = "input",
) -> md.MuData:
    """Preprocess a raw-count MuData into the data contract (see the docstring of
    :mod:`dmmvae.data.preprocess`).

    ``raw.obs`` may hold ``cell_type`` / ``batch`` (cast to str) and any other columns; they and
    ``raw.obsm`` (e.g. synthetic ground truth) are carried over for the kept cells.
    ``raw.uns["provenance"]`` is extended with the resolved parameters and a QC/feature report.
    """
    t0 = time.perf_counter()
    p = resolve_params(params)
    if len(raw.mod) == 0:
        raise InputError("input: the MuData has no modality; fix: give at least one modality")
    obs_names = pd.Index(raw.obs_names.astype(str))
    if raw.n_obs == 0:
        raise InputError("input: the MuData has zero cells; fix: check the source files")
    mods: dict[str, tuple[str, ad.AnnData]] = {}
    for name, a in raw.mod.items():
        kind = _kind_of(name, a)
        if a.n_obs != raw.n_obs or not np.array_equal(a.obs_names.astype(str), obs_names):
            raise InputError(
                f"input: modality '{name}' does not hold the same cells in the same order as the "
                "MuData (raw data must be a paired, aligned MuData); fix: intersect barcodes "
                "first (dmmvae.data.prepare does this)"
            )
        validate_modality(a, name, kind)
        mods[name] = (kind, a)

    # 1. cell QC -----------------------------------------------------------------------
    keep = np.ones(raw.n_obs, dtype=bool)
    qc: dict[str, Any] = {"n_cells_in": int(raw.n_obs)}
    for name, (kind, a) in mods.items():
        if kind in COUNT_KINDS:
            m_keep, rep = _qc_mask(name, kind, _as_csr(a.X), a.var_names, p[kind])
            qc[name] = rep
            keep &= m_keep
    qc["n_cells_out"] = int(keep.sum())
    if not keep.any():
        raise InputError(
            f"QC removed all {raw.n_obs} cells (report: {qc}); fix: relax the preprocessing QC "
            "thresholds (rna.min_genes, rna.max_pct_mito, <modality>.min_counts) or check that "
            "the matrix is cells x features with raw counts"
        )
    n = int(keep.sum())
    split = protocol_split(n, seed=seed, train_fraction=float(p["train_fraction"]))
    train = split == TRAIN
    if train.sum() < 2 or (~train).sum() < 1:
        raise InputError(
            f"QC left {n} cells, too few for a train/test split; fix: relax QC or use more cells"
        )

    # 2. per modality ------------------------------------------------------------------
    out_mods: dict[str, ad.AnnData] = {}
    report: dict[str, Any] = {}
    kept_idx = np.flatnonzero(keep)
    for name, (kind, a) in mods.items():
        a_kept = a[kept_idx] if n < a.n_obs else a
        if kind == "gaussian":
            res, info = _process_gaussian(a_kept)
        else:
            X = _subset_rows(_as_csr(a.X), keep)
            if kind == "rna":
                res, info = _process_rna(a_kept, X, train, p["rna"])
            elif kind == "atac":
                res, info = _process_atac(a_kept, X, train, p["atac"], seed)
            else:
                res, info = _process_adt(a_kept, X)
            del X
        res.uns[MODALITY_KIND] = kind
        res.obs_names = obs_names[kept_idx]
        out_mods[name] = res
        report[name] = {"kind": kind, **info}

    # 3. assemble ----------------------------------------------------------------------
    with md.set_options(pull_on_update=False):
        mdata = md.MuData(out_mods)
    prefixes = tuple(f"{m}:" for m in raw.mod)
    obs = raw.obs.iloc[kept_idx].copy()
    obs = obs.loc[:, [c for c in obs.columns if not str(c).startswith(prefixes)]]
    obs.index = obs_names[kept_idx]
    for key in (LABEL, BATCH):
        if key in obs:
            col = obs[key]
            obs[key] = pd.Categorical(np.where(col.isna(), "unknown", col.astype(str)))
    obs[SPLIT] = pd.Categorical(split, categories=["train", "test"])
    mdata.obs = obs
    for key, val in raw.obsm.items():
        if isinstance(val, pd.DataFrame):
            mdata.obsm[key] = val.iloc[kept_idx].set_axis(obs.index)
        else:
            mdata.obsm[key] = np.asarray(val)[kept_idx]
    prov = dict(raw.uns.get(PROVENANCE, {}))
    prov["preprocessing"] = {
        "params": p,
        "seed": seed,
        "n_train": int(train.sum()),
        "n_test": int((~train).sum()),
        "qc": qc,
        "features": report,
        "versions": {
            k: _version(k) for k in ("dmmvae", "anndata", "mudata", "scipy", "scikit-learn")
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }
    for k, v in raw.uns.items():
        if k != PROVENANCE:
            mdata.uns[k] = v
    # 4. linked features (from feature annotations only; PROTOCOL "Linked features") -------
    prov["preprocessing"]["links"] = add_links(mdata, **p["links"], where=where)
    mdata.uns[PROVENANCE] = _clean_for_h5(prov)
    return mdata
