"""What every reader shares: the feature-type table, the per-modality finish (float32 CSR,
unique names, notes, validated counts) and the split of a file's features by 10x feature type."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import scipy.sparse as sp

from ...constants import MODALITY_KIND
from ...io import InputError
from .._validate import validate_modality

log = logging.getLogger(__package__)  # "dmmvae.data.readers", the logger name before the split

#: 10x ``feature_type`` (and common short forms) -> modality kind
FEATURE_TYPES: dict[str, str] = {
    "Gene Expression": "rna",
    "GEX": "rna",
    "Peaks": "atac",
    "ATAC": "atac",
    "Antibody Capture": "adt",
    "ADT": "adt",
}
#: modality kind -> the 10x feature_type it is read from
KIND_FEATURE_TYPE = {"rna": "Gene Expression", "atac": "Peaks", "adt": "Antibody Capture"}

READER_NOTES = "reader_notes"


def _kind_of_feature_type(ft: str) -> str | None:
    return FEATURE_TYPES.get(str(ft))


def _finish(adata: ad.AnnData, path: Path, kind: str, name: str, notes: list[str]) -> ad.AnnData:
    """float32 CSR counts, str names, kind + notes in uns, counts validated."""
    X = adata.X
    X = (
        sp.csr_matrix(X, dtype=np.float32)
        if sp.issparse(X)
        else sp.csr_matrix(np.asarray(X, dtype=np.float32))
    )
    out = ad.AnnData(X=X, obs=adata.obs.copy(), var=adata.var.copy())
    out.obs_names = out.obs_names.astype(str)
    out.var_names = out.var_names.astype(str)
    if not out.var_names.is_unique:
        out.var_names_make_unique()
        notes.append("feature names made unique (suffix -1, -2, ...)")
    out.uns[MODALITY_KIND] = kind
    out.uns[READER_NOTES] = {"file": str(path), "notes": list(notes)}
    validate_modality(out, name, kind, where=f"file {path}")
    if not out.obs_names.is_unique:
        dup = out.obs_names[out.obs_names.duplicated()][:3].tolist()
        raise InputError(
            f"file {path}: modality '{name}' has duplicated cell barcodes (e.g. {dup}); "
            "fix: give one file per sample, or make barcodes unique (e.g. prefix the sample)"
        )
    return out


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"file {path}: not found; fix: check the path in the dataset config")


def _by_feature_type(mdata: md.MuData) -> dict[str, ad.AnnData]:
    """MuData split by feature type (muon/mudata) -> {10x feature_type: AnnData}; "" when the
    file has no feature_type column (CellRanger v2, GEO genes.tsv)."""
    out = {}
    for a in mdata.mod.values():
        ft = a.var["feature_types"].astype(str).iloc[0] if "feature_types" in a.var else ""
        out[ft] = a
    return out


def _pick_modalities(
    parts: Mapping[str, ad.AnnData],
    origin: Path,
    modalities: Mapping[str, str] | None,
    default_kind: str,
    what: str,
) -> dict[str, ad.AnnData]:
    """One AnnData per requested modality kind from the per-feature-type parts of a file (10x
    HDF5, Matrix Market); without a feature_type column every feature is ``default_kind``."""
    present = {ft: (_kind_of_feature_type(ft) if ft else default_kind) for ft in parts}
    if modalities is None:
        modalities = {k: k for k in present.values() if k is not None}
    out = {}
    for name, kind in modalities.items():
        fts = [ft for ft, k in present.items() if k == kind]
        if not fts:
            has = (
                sorted(present)
                if "" not in present
                else [f"{default_kind} (no feature_type column)"]
            )
            raise InputError(
                f"file {origin}: modality '{name}' ({KIND_FEATURE_TYPE.get(kind, kind)}) is "
                f"missing; the file has feature types {has}; fix: drop '{name}' from the "
                "dataset's modalities or point it to the file that holds it"
            )
        a = (
            parts[fts[0]]
            if len(fts) == 1
            else ad.concat([parts[ft] for ft in fts], axis=1, merge="same")
        )
        notes = [f"{what}: {a.n_vars} features of type {[ft for ft in fts if ft] or [kind]}"]
        out[name] = _finish(a, origin, kind, name, notes)
    ignored = sorted(ft for ft, k in present.items() if k is None)
    if ignored:
        log.info("%s: ignored feature types %s", origin, ignored)
    return out
