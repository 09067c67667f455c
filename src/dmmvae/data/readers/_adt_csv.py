"""ADT count table (CSV / TSV, optionally gzipped) in either orientation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...io import InputError
from ._barcodes import _looks_like_barcodes
from ._common import _check_exists, _finish

log = logging.getLogger(__package__)  # "dmmvae.data.readers", the logger name before the split


def read_adt_csv(
    path: str | Path,
    *,
    orientation: str = "auto",
    drop_columns: Sequence[str] = ("total",),
    barcode_column: str | None = None,
    barcode_suffix: str = "",
    reference_barcodes: Sequence[str] | None = None,
    name: str = "adt",
) -> dict[str, ad.AnnData]:
    """Read an ADT count table. ``orientation``: auto | cells_x_proteins | proteins_x_cells.

    auto: the axis whose labels overlap ``reference_barcodes`` (the other modalities' cells)
    more, else the axis whose labels look like barcodes (``[ACGT]{6,}``), else the longer axis
    is taken as cells. The decision is recorded in ``uns['reader_notes']``.
    ``barcode_suffix`` is appended to every barcode (e.g. "-1" to match CellRanger barcodes).
    """
    path = Path(path)
    _check_exists(path)
    names = [s.lower() for s in path.suffixes]
    sep = "\t" if (".tsv" in names or ".txt" in names) else ","
    try:
        df = pd.read_csv(path, sep=sep, index_col=None if barcode_column else 0)
    except Exception as err:
        raise InputError(
            f"file {path}: cannot read as a {'TSV' if sep == chr(9) else 'CSV'} table ({err}); "
            "fix: give a text table with barcodes or protein names in the first column"
        ) from err
    if barcode_column:
        if barcode_column not in df:
            raise InputError(
                f"file {path}: no column '{barcode_column}' (columns: {list(df.columns)[:10]}); "
                "fix: set barcode_column to the column holding cell barcodes"
            )
        df = df.set_index(barcode_column)
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise InputError(f"file {path}: empty table; fix: check the file")
    notes: list[str] = []
    idx = pd.Index(df.index.astype(str))
    cols = pd.Index(df.columns.astype(str))
    if orientation == "auto":
        if reference_barcodes is not None:
            ref = pd.Index(pd.Index(reference_barcodes).astype(str))
            ref_stripped = ref.str.replace(r"-\d+$", "", regex=True)
            o_idx = max(
                idx.isin(ref).sum(),
                idx.str.replace(r"-\d+$", "", regex=True).isin(ref_stripped).sum(),
            )
            o_col = max(
                cols.isin(ref).sum(),
                cols.str.replace(r"-\d+$", "", regex=True).isin(ref_stripped).sum(),
            )
        else:
            o_idx = o_col = 0
        if o_idx != o_col:
            cells_on_rows = o_idx > o_col
            why = f"{max(o_idx, o_col)} {'row' if cells_on_rows else 'column'} labels match the other modalities' barcodes"
        else:
            b_idx, b_col = _looks_like_barcodes(idx), _looks_like_barcodes(cols)
            if abs(b_idx - b_col) > 0.5:
                cells_on_rows = b_idx > b_col
                why = f"{'row' if cells_on_rows else 'column'} labels look like cell barcodes"
            else:
                cells_on_rows = df.shape[0] >= df.shape[1]
                why = "more rows than columns" if cells_on_rows else "more columns than rows"
        orientation = "cells_x_proteins" if cells_on_rows else "proteins_x_cells"
        notes.append(f"orientation detected: {orientation} ({why})")
        log.info("%s: %s", path, notes[-1])
    elif orientation not in ("cells_x_proteins", "proteins_x_cells"):
        raise ValueError(
            f"unknown orientation '{orientation}'; valid: auto, cells_x_proteins, proteins_x_cells"
        )
    else:
        notes.append(f"orientation given: {orientation}")
    if orientation == "proteins_x_cells":
        df = df.T
    drop = [c for c in df.columns if str(c).lower() in {d.lower() for d in drop_columns}]
    if drop:
        df = df.drop(columns=drop)
        notes.append(f"dropped columns {drop}")
    non_num = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_num:
        raise InputError(
            f"file {path}: non-numeric protein columns {non_num[:5]} (orientation {orientation}); "
            "fix: remove annotation columns from the ADT table, or set 'orientation' explicitly"
        )
    obs_names = df.index.astype(str) + barcode_suffix
    if barcode_suffix:
        notes.append(f"barcode suffix '{barcode_suffix}' appended")
    a = ad.AnnData(
        X=sp.csr_matrix(df.to_numpy(dtype=np.float64)),
        obs=pd.DataFrame(index=obs_names),
        var=pd.DataFrame(index=df.columns.astype(str)),
    )
    return {name: _finish(a, path, "adt", name, notes)}
