"""``.h5ad`` and ``.h5mu``: counts from ``layers['counts']`` when present, else ``.X``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import mudata as md
import pandas as pd

from ...constants import MODALITY_KIND
from ...io import InputError
from ._common import KIND_FEATURE_TYPE, _check_exists, _finish, _kind_of_feature_type


def _counts_of(a: ad.AnnData, path: Path, name: str, kind: str, notes: list[str]) -> ad.AnnData:
    if "counts" in a.layers:
        X = a.layers["counts"]
        notes.append("counts taken from layers['counts']")
    else:
        X = a.X
        notes.append("counts taken from .X (no layers['counts'])")
    b = ad.AnnData(X=X, obs=a.obs.copy(), var=a.var.copy())
    return _finish(b, path, kind, name, notes)


def _guess_kind(name: str, a: ad.AnnData, kind: str | None) -> str:
    if kind:
        return kind
    if MODALITY_KIND in a.uns:
        return str(a.uns[MODALITY_KIND])
    if name in KIND_FEATURE_TYPE:
        return name
    if "feature_types" in a.var:
        kinds = {_kind_of_feature_type(ft) for ft in pd.unique(a.var["feature_types"].astype(str))}
        if len(kinds) == 1 and None not in kinds:
            return kinds.pop()  # type: ignore[return-value]
    if name in {"prot", "protein", "cite"}:
        return "adt"
    raise InputError(f"modality '{name}': cannot tell its kind; fix: set 'kind' (rna, adt or atac)")


def _read_h5_generic(path: Path, reader: Callable[[Path], Any], what: str) -> Any:
    _check_exists(path)
    if not h5py.is_hdf5(path):
        raise InputError(
            f"file {path}: not an HDF5 file, so not {what} (wrong format or a failed download); "
            f"fix: give a valid {what} file or set the right 'format'"
        )
    try:
        return reader(path)
    except Exception as err:
        raise InputError(
            f"file {path}: cannot read as {what} ({type(err).__name__}: {err}); the file is "
            "truncated, corrupt or of another layout; fix: re-create or download it again"
        ) from err


def read_h5ad(
    path: str | Path, *, name: str = "rna", kind: str | None = None
) -> dict[str, ad.AnnData]:
    """One modality from an ``.h5ad``; counts from ``layers['counts']`` when present."""
    path = Path(path)
    a = _read_h5_generic(path, ad.read_h5ad, ".h5ad")
    kind = _guess_kind(name, a, kind)
    return {name: _counts_of(a, path, name, kind, [f"h5ad, {a.n_obs} cells x {a.n_vars} features"])}


def read_h5mu(
    path: str | Path, *, modalities: Mapping[str, str | None] | None = None
) -> dict[str, ad.AnnData]:
    """Modalities of a ``.h5mu`` (``modalities``: wanted name -> kind or None to infer)."""
    path = Path(path)
    m = _read_h5_generic(path, md.read_h5mu, ".h5mu")
    wanted = modalities if modalities is not None else {k: None for k in m.mod}
    out = {}
    for name, kind in wanted.items():
        if name not in m.mod:
            raise InputError(
                f"file {path}: modality '{name}' is missing; the file has {list(m.mod)}; fix: use "
                "one of those names"
            )
        a = m.mod[name]
        out[name] = _counts_of(
            a, path, name, _guess_kind(name, a, kind), [f"h5mu modality '{name}'"]
        )
    return out
