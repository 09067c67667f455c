"""Readers for single-cell count files: each returns raw-count AnnData per modality.

Formats (registry :data:`READERS`, name -> function ``(path, **options) -> dict[str, AnnData]``):

- ``10x_h5``: CellRanger / cellranger-arc ``filtered_feature_bc_matrix.h5`` (v2 or v3 layout),
  read by ``muon.read_10x_h5`` (scanpy's reader, split by ``feature_type`` into a MuData;
  Gene Expression -> rna, Peaks -> atac, Antibody Capture -> adt); every feature field of the
  file is kept in ``var`` (``gene_ids``, ``feature_types``, ``genome``, ``interval``).
- ``mtx``: 10x / GEO Matrix Market output: a folder, a ``.tar.gz`` tarball, or explicit
  ``matrix`` / ``features`` / ``barcodes`` paths (GEO prefixes such as
  ``GSM5008737_RNA_3P-matrix.mtx.gz`` are fine); ``features.tsv`` (3 columns), ``genes.tsv``
  (2 columns) or a 1-column list; CellRanger v3/v2 layouts read by ``scanpy.read_10x_mtx``,
  the other GEO layouts by ``scipy.io.mmread``; split by feature type with ``mudata``.
- ``adt_csv``: an ADT count table (CSV/TSV, optionally gzipped), cells x proteins or proteins x
  cells: the orientation is detected (barcode-like labels, or overlap with the barcodes of the
  other modalities) and reported; a ``total`` column is dropped.
- ``h5ad``: one AnnData per modality; counts from ``layers['counts']`` when present, else ``.X``.
- ``h5mu``: a MuData; same rule per modality.

Plus :func:`read_labels` (CSV/TSV table or the ``obs`` of an ``.h5ad``) and
:func:`match_barcodes` (inner join of barcodes across modalities and labels, with a clear error
when the overlap is empty or tiny). Every reader validates the counts (finite, non-negative
integers) and raises :class:`~dmmvae.io.InputError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import gzip
import logging
import re
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import mudata as md
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from ..constants import BATCH, LABEL, MODALITY_KIND
from ..io import InputError
from ._validate import validate_modality

log = logging.getLogger(__name__)

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
_BARCODE_RE = re.compile(r"^[ACGTN]{6,}([-_.].*)?$|^.*[-_][ACGTN]{6,}([-_.].*)?$")


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


# --------------------------------------------------------------------------------------
# 10x HDF5
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Matrix Market (folder, tarball, explicit files)
# --------------------------------------------------------------------------------------
def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _find_one(folder: Path, patterns: Sequence[str], what: str, origin: Path) -> Path:
    hits = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith("._") and any(p.name.endswith(s) for s in patterns)
    )
    if len(hits) != 1:
        raise InputError(
            f"file {origin}: expected one {what} file (name ending in {list(patterns)}), found "
            f"{[str(h.relative_to(folder)) for h in hits]}; fix: give 'matrix', 'features' and "
            "'barcodes' paths explicitly"
        )
    return hits[0]


def _scanpy_layout(matrix: Path, features: Path, barcodes: Path, n_cols: int) -> dict | None:
    """Canonical names under which ``scanpy.read_10x_mtx`` reads these files, or None when it
    cannot: it knows only CellRanger v3 (all three gzipped, features with >= 3 columns) and v2
    (all plain, genes.tsv with 2 columns) and always reads features x cells."""
    gz = {p.suffix == ".gz" for p in (matrix, features, barcodes)}
    if gz == {True} and n_cols >= 3:
        names = ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz")
    elif gz == {False} and n_cols == 2:
        names = ("matrix.mtx", "genes.tsv", "barcodes.tsv")
    else:
        return None
    return dict(zip(names, (matrix, features, barcodes), strict=True))


def _read_mtx_files(matrix: Path, features: Path, barcodes: Path) -> ad.AnnData:
    """A Matrix Market triple -> cells x features AnnData (var: gene_ids, feature_types).

    CellRanger layouts are read by ``scanpy.read_10x_mtx`` (files linked into a temporary folder
    under its canonical names, so GEO prefixes, tarball sub-folders and explicit paths all
    work). The layouts it cannot read and that GEO ships (1-column feature lists, 2-column
    gzipped features, mixed compression, uncompressed 3-column features, a cells x features
    matrix) are read with ``scipy.io.mmread`` here.
    """
    import scanpy as sc

    for p in (matrix, features, barcodes):
        _check_exists(p)
    try:
        with _open_text(barcodes) as fh:
            bc = pd.read_csv(fh, sep="\t", header=None, dtype=str).iloc[:, 0].to_numpy()
        with _open_text(features) as fh:
            feat = pd.read_csv(fh, sep="\t", header=None, dtype=str)
    except Exception as err:
        raise InputError(
            f"file {features} / {barcodes}: cannot read as tab-separated text ({err}); "
            "fix: give the features/genes.tsv(.gz) and barcodes.tsv(.gz) of the same matrix"
        ) from err
    bad_mtx = (
        f"file {matrix}: cannot read as Matrix Market ({{}}); the file is truncated, corrupt or "
        "not a .mtx; fix: download it again"
    )
    try:
        shape = tuple(scipy.io.mminfo(str(matrix))[:2])  # the header only
    except Exception as err:
        raise InputError(bad_mtx.format(f"{type(err).__name__}: {err}")) from err
    n_f, n_b = len(feat), len(bc)
    if shape not in ((n_f, n_b), (n_b, n_f)):
        raise InputError(
            f"file {matrix}: matrix is {shape[0]} x {shape[1]} but {features.name} lists {n_f} "
            f"features and {barcodes.name} {n_b} barcodes; fix: use the three files of one sample"
        )
    layout = _scanpy_layout(matrix, features, barcodes, feat.shape[1])
    try:
        if layout is not None and shape == (n_f, n_b):
            with tempfile.TemporaryDirectory(prefix="dmmvae_mtx_") as tmp:
                for canonical, src in layout.items():
                    (Path(tmp) / canonical).symlink_to(src.resolve())
                return sc.read_10x_mtx(
                    tmp, var_names="gene_symbols", make_unique=False, gex_only=False
                )
        opener = gzip.open if matrix.suffix == ".gz" else open
        with opener(matrix, "rb") as fh:
            X = sp.csr_matrix(scipy.io.mmread(fh))
    except Exception as err:
        raise InputError(bad_mtx.format(f"{type(err).__name__}: {err}")) from err
    if shape == (n_f, n_b):
        X = X.T.tocsr()
    var = pd.DataFrame(index=feat.iloc[:, 1 if feat.shape[1] > 1 else 0].astype(str).to_numpy())
    if feat.shape[1] > 1:
        var["gene_ids"] = feat.iloc[:, 0].to_numpy()
    if feat.shape[1] > 2:
        var["feature_types"] = feat.iloc[:, 2].to_numpy()
    return ad.AnnData(X=X.astype(np.float32), obs=pd.DataFrame(index=bc), var=var)


def read_mtx(
    path: str | Path | None = None,
    *,
    matrix: str | Path | None = None,
    features: str | Path | None = None,
    barcodes: str | Path | None = None,
    modalities: Mapping[str, str] | None = None,
    default_kind: str = "rna",
) -> dict[str, ad.AnnData]:
    """Read a Matrix Market triple; split by the features file's third column when present.

    Without a feature-type column every feature belongs to ``default_kind`` (e.g. GEO's
    separate RNA and ADT matrices of Hao et al. 2021: give ``modalities={"adt": "adt"}``).
    """
    with tempfile.TemporaryDirectory(prefix="dmmvae_mtx_") as tmp:
        if matrix is None:
            if path is None:
                raise InputError("mtx reader: give 'path' (folder or tarball) or 'matrix'")
            p = Path(path)
            _check_exists(p)
            if p.is_file():
                if not tarfile.is_tarfile(p):
                    raise InputError(
                        f"file {p}: neither a folder nor a tar archive of Matrix Market files; "
                        "fix: give the folder, the .tar.gz, or the three files explicitly"
                    )
                try:
                    with tarfile.open(p) as tar:
                        tar.extractall(tmp, filter="data")
                except (tarfile.TarError, OSError, EOFError) as err:
                    raise InputError(
                        f"file {p}: corrupt tar archive ({err}); fix: download it again"
                    ) from err
                folder = Path(tmp)
            else:
                folder = p
            matrix = _find_one(folder, ("matrix.mtx", "matrix.mtx.gz"), "matrix", p)
            features = features or _find_one(
                folder,
                ("features.tsv", "features.tsv.gz", "genes.tsv", "genes.tsv.gz"),
                "features",
                p,
            )
            barcodes = barcodes or _find_one(
                folder, ("barcodes.tsv", "barcodes.tsv.gz"), "barcodes", p
            )
        if features is None or barcodes is None:
            raise InputError(f"file {matrix}: give 'features' and 'barcodes' with 'matrix'")
        adata = _read_mtx_files(Path(matrix), Path(features), Path(barcodes))
        if path is not None and Path(path).is_file():  # tarball: name the member too
            origin = Path(f"{path} (member {Path(matrix).relative_to(tmp)})")
        else:
            origin = Path(matrix)
    with warnings.catch_warnings():  # duplicated names are made unique per modality
        warnings.filterwarnings("ignore", message="var_names are not unique")
        parts = _by_feature_type(md.MuData(adata))
    return _pick_modalities(parts, origin, modalities, default_kind, "Matrix Market")


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


# --------------------------------------------------------------------------------------
# ADT CSV table
# --------------------------------------------------------------------------------------
def _looks_like_barcodes(labels: pd.Index) -> float:
    labels = pd.Index(labels).astype(str)
    if len(labels) == 0:
        return 0.0
    sample = labels[: min(len(labels), 200)]
    return float(np.mean([bool(_BARCODE_RE.match(s)) for s in sample]))


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


# --------------------------------------------------------------------------------------
# h5ad / h5mu
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# labels and barcode matching
# --------------------------------------------------------------------------------------
def read_labels(
    path: str | Path,
    *,
    label_column: str,
    batch_column: str | Sequence[str] | None = None,
    barcode_column: str | None = None,
    member: str | None = None,
) -> pd.DataFrame:
    """Labels table -> DataFrame indexed by barcode with ``cell_type`` (and ``batch``) columns.

    CSV / TSV (optionally gzipped; first column = barcode unless ``barcode_column``), a CSV
    inside a ``.zip`` (journal source-data archives; ``member`` names it when there are
    several), or the ``obs`` of an ``.h5ad`` (only obs is read). A list ``batch_column`` is
    joined with "_" (e.g. Hao et al.: ``[donor, time]``).
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
    )
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
    if not out.index.is_unique:
        dup = out.index[out.index.duplicated()][:3].tolist()
        raise InputError(
            f"file {path}: duplicated barcodes in the labels table (e.g. {dup}); fix: deduplicate"
        )
    return out


def _strip_suffix(index: pd.Index) -> pd.Index:
    return pd.Index(index.astype(str).str.replace(r"-\d+$", "", regex=True))


def match_barcodes(
    sources: Mapping[str, pd.Index], *, min_fraction: float = 0.5
) -> tuple[dict[str, np.ndarray], pd.Index, dict[str, Any]]:
    """Inner join of the barcodes of several sources (modalities, labels).

    Returns, for each source, the positions of the common cells (in the order of the first
    source), the common barcodes (as the first source spells them) and a report. Exact match
    first; when that matches too few cells, barcodes are compared without a trailing "-N"
    (CellRanger GEM-well suffix), and the report says so. Fewer than ``min_fraction`` of the
    smallest source matched -> InputError with counts and examples from each side.
    """
    names = list(sources)
    idx = {k: pd.Index(v).astype(str) for k, v in sources.items()}
    smallest = min(len(v) for v in idx.values())
    need = max(1, int(np.ceil(min_fraction * smallest)))

    def _common(keys: dict[str, pd.Index]) -> pd.Index:
        common = keys[names[0]]
        for k in names[1:]:
            common = common[common.isin(keys[k])]
        return common

    rule = "exact"
    keys = idx
    common = _common(keys)
    if len(common) < need:
        stripped = {k: _strip_suffix(v) for k, v in idx.items()}
        if all(v.is_unique for v in stripped.values()):
            c2 = _common(stripped)
            if len(c2) > len(common):
                keys, common, rule = stripped, c2, "after removing a trailing '-N' suffix"
    if len(common) < need:
        pair = []
        for k in names[1:]:
            n_pair = int(idx[names[0]].isin(idx[k]).sum())
            pair.append(f"'{names[0]}' vs '{k}': {n_pair} matched")
        examples = "; ".join(f"{k}: {idx[k][:3].tolist()}" for k in names)
        raise InputError(
            f"barcodes do not match: {len(common)} cells are common to {names} "
            f"(sizes {[len(idx[k]) for k in names]}; {', '.join(pair)}; need >= {need}). "
            f"Examples: {examples}. Fix: check that the files come from the same sample/run; "
            "set 'barcode_suffix' on a modality (e.g. '-1') or 'barcode_column' on the labels so "
            "that the barcodes are spelled the same way"
        )
    positions = {k: keys[k].get_indexer(common) for k in names}
    report = {
        "rule": rule,
        "n_matched": int(len(common)),
        "n_barcodes": {k: int(len(idx[k])) for k in names},
        "n_dropped": {k: int(len(idx[k]) - len(common)) for k in names},
    }
    return positions, idx[names[0]][positions[names[0]]], report


__all__ = [
    "FEATURE_TYPES",
    "READERS",
    "get_reader",
    "match_barcodes",
    "read_10x_h5",
    "read_adt_csv",
    "read_h5ad",
    "read_h5mu",
    "read_labels",
    "read_mtx",
]
