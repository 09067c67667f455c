"""The format registry: format name -> reader."""

from __future__ import annotations

from collections.abc import Callable

import anndata as ad

from ._10x_h5 import read_10x_h5
from ._adt_csv import read_adt_csv
from ._anndata import read_h5ad, read_h5mu
from ._mtx import read_mtx

READERS: dict[str, Callable[..., dict[str, ad.AnnData]]] = {
    "10x_h5": read_10x_h5,
    "mtx": read_mtx,
    "adt_csv": read_adt_csv,
    "h5ad": read_h5ad,
    "h5mu": read_h5mu,
}


def get_reader(fmt: str) -> Callable[..., dict[str, ad.AnnData]]:
    if fmt not in READERS:
        raise ValueError(f"unknown input format '{fmt}'; valid formats are {sorted(READERS)}")
    return READERS[fmt]
