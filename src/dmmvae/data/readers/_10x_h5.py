"""10x HDF5 (CellRanger / cellranger-arc ``filtered_feature_bc_matrix.h5``)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import h5py

from ...io import InputError
from ._common import _by_feature_type, _check_exists, _pick_modalities


def read_10x_h5(
    path: str | Path, *, modalities: Mapping[str, str] | None = None
) -> dict[str, ad.AnnData]:
    """Read a 10x HDF5 file and split it into modalities by ``feature_type``.

    ``modalities`` maps the wanted modality names to kinds (default: every kind present, named
    by kind). A requested kind absent from the file -> InputError listing what the file has.
    """
    import muon as mu

    path = Path(path)
    _check_exists(path)
    if not h5py.is_hdf5(path):
        raise InputError(
            f"file {path}: not an HDF5 file (wrong format, or a download error page); fix: "
            "give a 10x 'filtered_feature_bc_matrix.h5', or set the right 'format' for this file"
        )
    try:
        with h5py.File(path, "r") as f:
            keys = list(f.keys())
            if "matrix" not in keys and not any(
                isinstance(f[k], h5py.Group) and "data" in f[k] for k in keys
            ):
                raise InputError(
                    f"file {path}: HDF5 file without a 10x 'matrix' group (groups: {keys}); "
                    "fix: give CellRanger's filtered_feature_bc_matrix.h5 (an .h5ad/.h5mu file "
                    "needs format 'h5ad'/'h5mu')"
                )
        with warnings.catch_warnings():  # duplicated names are made unique per modality below
            warnings.filterwarnings("ignore", message="(Variable names|var_names) are not unique")
            # muon: scanpy.read_10x_h5(gex_only=False) split by feature_type into a MuData; all
            # of matrix/features is kept (interval, genome); extended=False: no side files
            # (fragments, peak annotation) are looked up next to the file
            mdata = mu.read_10x_h5(path, extended=False)
    except InputError:
        raise
    except Exception as err:  # h5py/scanpy raise OSError, KeyError, ValueError on bad files
        raise InputError(
            f"file {path}: cannot read as 10x HDF5 ({type(err).__name__}: {err}); the file is "
            "truncated or corrupt; fix: delete it and download it again"
        ) from err
    # CellRanger v2 files have no feature_type: genes only
    return _pick_modalities(_by_feature_type(mdata), path, modalities, "rna", "10x HDF5")
