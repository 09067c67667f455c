"""Key names shared by every stage. Import these instead of writing the strings.

The data contract (one MuData ``.h5mu`` per dataset and scenario)
-----------------------------------------------------------------
``mdata.mod[m]`` for each modality ``m`` the dataset has (``rna``, ``adt``, ``atac``, or any name for
``gaussian`` modalities such as the pbmc68k gene halves):

- ``.X``: the *scoring normalization* of ``../shared/PROTOCOL.md`` (RNA: normalize_total 1e4
  over all genes -> log1p, restricted to the kept genes; ADT: CLR; ATAC: binary 0/1),
  float32, sparse (CSR) for RNA/ATAC, dense or sparse for ADT.
- ``.layers[COUNTS]``: raw counts of the same features (float32 CSR holding integers) when the
  modality is count-like; absent for ``gaussian`` modalities (e.g. the pbmc68k gene split).
- ``.uns[MODALITY_KIND]``: one of :data:`MODALITY_KINDS` (decides the default likelihood and how
  a decoded mean is turned into the scoring normalization).
- ``.obs[LIBRARY]`` (count-like): total counts over ALL features before feature selection
  (RNA: all genes), used for library-size handling.
- ``.obsm[LSI]`` (ATAC only, optional): TF-IDF + LSI of the kept peaks, fitted on train cells.
- ``.obsm[LSI_ALL]`` (ATAC only, optional): GLUE's LSI (100 components) over ALL peaks of the
  dataset, fitted on train cells, for methods whose recipe reads every peak (GLUE, MaxFuse).

``mdata.obs`` (one row per cell, same order in every modality):

- ``SPLIT``: ``"train"`` or ``"test"`` (PROTOCOL split, seeded).
- ``LABEL``: cell type (str) when known.  ``BATCH``: batch (str) when known.
- ``visible_key(m)``: bool, whether modality ``m`` of this cell may be seen during training
  (scenario mask; always False for test cells).

``mdata.uns[PROVENANCE]``: dict describing the source, versions and preprocessing parameters.
Synthetic data also carry ``mdata.obsm[TRUE_SHARED]`` and ``mdata.obsm["true_private_<m>"]``.
"""

from __future__ import annotations

from typing import NamedTuple

RNA, ADT, ATAC = "rna", "adt", "atac"
MODALITY_KINDS = ("rna", "adt", "atac", "gaussian")

COUNTS = "counts"
LIBRARY = "library_size"
MODALITY_KIND = "modality_kind"
LSI = "X_lsi"
LSI_ALL = "X_lsi_all"

SPLIT = "split"
TRAIN, TEST = "train", "test"
LABEL = "cell_type"
BATCH = "batch"
PROVENANCE = "provenance"

TRUE_SHARED = "true_shared"


class _BatchKeys(NamedTuple):
    """Keys of a training minibatch (``methods.training.batches.MultimodalData.batch``), as
    scvi-tools' ``REGISTRY_KEYS``: each a dict over modalities unless noted."""

    X: str = "x"  # the model's input per modality (cells x features)
    MASK: str = "mask"  # bool per cell: the modality is shown
    LIBRARY: str = "library"  # library size per cell (cells x 1), 0 where not shown
    NONZERO: str = "nonzero"  # CPU count modalities: ((rows, cols), values) of the nonzero entries
    LABEL: str = "label"  # one tensor: the given label per cell (-1: none)
    INDEX: str = "index"  # one tensor: the cells' row numbers in the MuData


BATCH_KEYS = _BatchKeys()


def true_private_key(mod: str) -> str:
    return f"true_private_{mod}"


def visible_key(mod: str) -> str:
    """obs column telling whether modality ``mod`` of a cell is shown to the model in training."""
    return f"visible_{mod}"


# Predictions file (HDF5, written by train_model, read by evaluate_model)
EMBEDDING_GROUP = "embedding"  # /embedding/<mod>  (test cells, encoded from <mod> alone); /embedding/joint
IMPUTATION_GROUP = "imputation"  # /imputation/<src>_to_<tgt>  (test cells, scoring normalization)
GENERATED_GROUP = "generated"  # /generated/prior/<mod>  (cells sampled from the prior, scoring normalization)
JOINT = "joint"
