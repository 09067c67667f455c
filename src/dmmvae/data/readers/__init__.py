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

from ._10x_h5 import read_10x_h5
from ._adt_csv import read_adt_csv
from ._anndata import read_h5ad, read_h5mu
from ._barcodes import match_barcodes
from ._common import FEATURE_TYPES
from ._common import KIND_FEATURE_TYPE as KIND_FEATURE_TYPE
from ._common import READER_NOTES as READER_NOTES
from ._labels import read_labels
from ._mtx import read_mtx
from ._registry import READERS, get_reader

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
