"""Cell labels (and batches) from a CSV / TSV table, a zip of one, or an ``.h5ad``'s obs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from ...constants import BATCH, LABEL
from ...io import InputError
from ._anndata import _read_h5_generic
from ._common import _check_exists


def read_labels(
    path: str | Path,
    *,
    label_column: str,
    batch_column: str | Sequence[str] | None = None,
    barcode_column: str | None = None,
    member: str | None = None,
    keep: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Labels table -> DataFrame indexed by barcode with ``cell_type`` (and ``batch``) columns.

    CSV / TSV (optionally gzipped; first column = barcode unless ``barcode_column``), a CSV
    inside a ``.zip`` (journal source-data archives; ``member`` names it when there are
    several), or the ``obs`` of an ``.h5ad`` (only obs is read). A list ``batch_column`` is
    joined with "_" (e.g. Hao et al.: ``[donor, time]``). ``keep`` ({column: [values]})
    leaves only the rows whose columns hold one of the values labelled (the rest get no label
    and leave the data set at the barcode join): e.g. scMODAL's tutorial uses donor P1 only.
    """
    path = Path(path)
    _check_exists(path)
    names = [s.lower() for s in path.suffixes]
    if names and names[-1] == ".zip":
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                tables = [
                    n
                    for n in zf.namelist()
                    if n.lower().endswith((".csv", ".tsv", ".txt")) and "__MACOSX" not in n
                ]
                pick = [n for n in tables if member and n.endswith(member)] if member else tables
                if len(pick) != 1:
                    raise InputError(
                        f"file {path}: expected one table{' named ' + member if member else ''} "
                        f"in the zip, found {tables}; fix: set labels.member"
                    )
                sep = "\t" if pick[0].lower().endswith((".tsv", ".txt")) else ","
                with zf.open(pick[0]) as fh:
                    df = pd.read_csv(
                        fh, sep=sep, index_col=None if barcode_column else 0, dtype=str
                    )
        except zipfile.BadZipFile as err:
            raise InputError(f"file {path}: corrupt zip ({err}); fix: download it again") from err
    elif ".h5ad" in names:

        def _obs(p: Path) -> pd.DataFrame:
            with h5py.File(p, "r") as f:
                return ad.io.read_elem(f["obs"])

        df = _read_h5_generic(path, _obs, ".h5ad")
    else:
        sep = "\t" if (".tsv" in names or ".txt" in names) else ","
        try:
            df = pd.read_csv(path, sep=sep, index_col=None if barcode_column else 0, dtype=str)
        except Exception as err:
            raise InputError(
                f"file {path}: cannot read the labels table ({err}); fix: give a CSV/TSV"
            ) from err
    if barcode_column:
        if barcode_column not in df:
            raise InputError(
                f"file {path}: no column '{barcode_column}' (columns: {list(df.columns)}); "
                "fix: set labels.barcode_column"
            )
        df = df.set_index(barcode_column)
    cols = [label_column] + (
        [batch_column] if isinstance(batch_column, str) else list(batch_column or [])
    ) + list(keep or {})
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(
            f"file {path}: labels table has no column(s) {missing}; its columns are "
            f"{list(df.columns)}; fix: set labels.column / labels.batch_column to one of them"
        )
    out = pd.DataFrame(index=pd.Index(df.index.astype(str), name=None))
    out[LABEL] = df[label_column].astype(str).to_numpy()
    out.loc[df[label_column].isna().to_numpy(), LABEL] = np.nan
    if batch_column:
        bcols = [batch_column] if isinstance(batch_column, str) else list(batch_column)
        out[BATCH] = df[bcols].astype(str).agg("_".join, axis=1).to_numpy()
    for col, values in (keep or {}).items():
        drop = ~df[col].astype(str).isin([str(v) for v in values]).to_numpy()
        if drop.all():
            raise InputError(
                f"file {path}: labels.keep {{{col}: {list(values)}}} matches no row; values "
                f"present: {sorted(df[col].astype(str).unique())[:20]}; fix: labels.keep")
        out.loc[drop, LABEL] = np.nan
    if not out.index.is_unique:
        dup = out.index[out.index.duplicated()][:3].tolist()
        raise InputError(
            f"file {path}: duplicated barcodes in the labels table (e.g. {dup}); fix: deduplicate"
        )
    return out
