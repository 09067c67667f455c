"""Raw MuData (counts) -> preprocessed MuData (the data contract of :mod:`dmmvae.constants`).

Steps, in order (every *fitted* quantity uses TRAIN cells only, as ``../shared/PROTOCOL.md``
demands):

1. **Validate** each modality: known ``uns["modality_kind"]``, finite values, and for count
   kinds (rna/adt/atac) non-negative integers. Bad input raises :class:`~dmmvae.io.InputError`.
2. **Cell QC** (per-cell thresholds, nothing fitted): RNA genes detected, percent
   mitochondrial counts; every count modality needs ``min_counts`` total counts. A cell is kept
   only when it passes in every modality. Zero cells left -> ``InputError``.
3. **Split** of the kept cells with :func:`dmmvae.data.scenarios.protocol_split`
   (``obs["split"]``).
4. Per modality kind:

   - ``rna``: genes detected in fewer than ``min_cells`` train cells are dropped; highly
     variable genes by the ``seurat_v3`` method on train raw counts (default 2000; all genes
     when fewer). ``.X`` = normalize_total(1e4) over ALL genes -> log1p -> kept genes.
     ``extra_genes=K`` additionally keeps the K *least* variable genes of the same ranking
     (``var["extra_gene"]``, ``var["extra_gene_rank"]`` 0 = least variable, -1 otherwise).
   - ``atac``: peaks open (count > 0) in >= ``min_cell_fraction`` of train cells are kept;
     ``.X`` = binarised (0/1). TF-IDF (``log1p(1e4 * x / n_open(cell)) * log1p(n_train /
     n_open_train(peak))``) and a truncated SVD (scikit-learn ``TruncatedSVD``) fitted on train
     cells give ``obsm["X_lsi"]``; the IDF sits in ``var["idf"]``, the loadings in
     ``varm["lsi_loadings"]``.
   - ``adt``: ``.X`` = CLR as PROTOCOL defines it: ``log1p(x) - mean over the cell's proteins
     of log1p(x)`` (dense float32).
   - ``gaussian``: already normalised; ``.X`` kept as float32, no counts layer.

   Count kinds keep ``layers["counts"]`` (float32 CSR raw counts of the kept features) and
   ``obs["library_size"]`` (total counts over all features before selection).

Highly variable genes: ``scanpy.pp.highly_variable_genes(flavor="seurat_v3")`` (Stuart et
al. 2019; loess from scikit-misc) on the raw counts of the train cells, so the gene ranking is
the one every scanpy user gets.

Sparse matrices stay sparse end to end; derived matrices share index arrays where possible.

Parameters (``params`` dict; every key optional; defaults in the config schema, read by
:func:`dmmvae.schema.schema_defaults`)
------------------------------------------------------------------------------------
``train_fraction`` (float, 0.8)
    Fraction of the kept cells in the train split (PROTOCOL: 0.8).
``rna.min_genes`` (int or "auto", "auto")
    A cell needs at least this many detected genes. "auto" = 200 for a whole transcriptome
    (>= ``whole_transcriptome_genes`` genes), 0 for a gene panel or a gene subset (such as the
    offline stand-ins), where the number of detected genes says little about cell quality.
``rna.max_genes`` (int or null, null)
    Upper bound on detected genes (doublet guard); null = no bound.
``rna.max_pct_mito`` (float, null or "auto", "auto")
    Cells with more than this percent of counts in mitochondrial genes are removed (skipped
    when the data have no gene starting with ``mito_prefix``). "auto" = 20 for a whole
    transcriptome, no filter for a gene subset (the percentage over a subset is inflated);
    null = no filter.
``rna.whole_transcriptome_genes`` (int, 10000)
    Gene count from which the "auto" thresholds treat the RNA modality as a transcriptome.
``rna.mito_prefix`` (str, "MT-")
    Mitochondrial gene name prefix, matched case-insensitively (covers mouse "mt-").
``rna.min_cells`` (int, 3)
    A gene must be detected in at least this many TRAIN cells to be considered.
``rna.n_top_genes`` (int, 2000)
    Number of highly variable genes (seurat_v3 on train counts); all genes when fewer.
``rna.extra_genes`` (int, 0)
    K least variable genes kept in addition (MMVAE++ "unrelated genes" experiment).
``rna.target_sum`` (float, 1e4)
    normalize_total target.
``<kind>.min_counts`` (int, 1) for rna, adt, atac
    A cell needs at least this many counts in that modality (an empty modality cannot be
    normalised).
``atac.min_cell_fraction`` (float, 0.01)
    Keep peaks open in at least this fraction of train cells.
``atac.n_lsi`` (int, 50)
    LSI components (capped at ``min(n_peaks, n_train) - 1``); 0 disables LSI.
``atac.tfidf_scale`` (float, 1e4)
    Scale factor inside the TF log.
``atac.n_lsi_all`` (int, 100)
    Components of GLUE's LSI over ALL peaks (``obsm["X_lsi_all"]``, fitted on train cells), the
    ATAC input of the methods whose recipe reads every peak (GLUE, MaxFuse); 0 disables it.
``links.*`` (linked features, :mod:`dmmvae.data.links`)
    ``promoter_bp`` (2000), ``weighting`` ("none" or "glue"), ``extend_bp`` (150000),
    ``gene_annotation`` (BED/GTF path or null: the dataset's ``gene_annotation``),
    ``protein_gene`` (protein -> gene overrides: the dataset's ``protein_gene``).

The config schema (``src/dmmvae/schemas/config.schema.yaml``) holds the defaults (the top-level
``preprocessing`` default) and checks these keys (``$defs/preprocessing``) before any job runs.
"""

from .._validate import validate_modality
from ._adt import clr
from ._atac import tfidf
from ._hvg import rank_genes_seurat_v3, seurat_v3_variances
from ._params import resolve_params
from ._pipeline import preprocess
from ._sparse import CHUNK_ROWS as CHUNK_ROWS

__all__ = [
    "clr",
    "preprocess",
    "rank_genes_seurat_v3",
    "resolve_params",
    "seurat_v3_variances",
    "tfidf",
    "validate_modality",
]
