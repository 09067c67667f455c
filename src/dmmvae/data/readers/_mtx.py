"""Matrix Market: a folder, a tarball or explicit matrix / features / barcodes files."""

from __future__ import annotations

import gzip
import tarfile
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from ...io import InputError
from ._common import _by_feature_type, _check_exists, _pick_modalities


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
