"""Linked features (dmmvae.data.links; PROTOCOL "Linked features")."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dmmvae.constants import COUNTS, MODALITY_KIND
from dmmvae.data.links import (
    add_links,
    gene_coordinates,
    gene_peak_links,
    gene_space,
    link_counts,
    link_matrix,
    normalise_protein,
    parse_intervals,
    protein_gene_links,
)
from dmmvae.io import InputError


def _genes(rows):
    return pd.DataFrame(rows, columns=["name", "chrom", "start", "end", "strand"]).set_index("name")


def _peaks(rows):
    return pd.DataFrame(rows, columns=["name", "chrom", "start", "end"]).set_index("name")


def test_promoter_is_upstream_of_the_tss_by_strand_and_both_sides_when_unknown():
    genes = _genes([
        ("plus", "chr1", 10_000, 20_000, "+"),   # TSS at 10,000: promoter 8,000-10,000
        ("minus", "chr1", 50_000, 60_000, "-"),  # TSS at 60,000: promoter 60,000-62,000
        ("nostrand", "chr2", 10_000, 20_000, "."),
    ])
    peaks = _peaks([
        ("up_plus", "chr1", 8_500, 9_000),       # promoter of plus
        ("down_plus", "chr1", 21_000, 21_500),   # downstream of plus: no link
        ("body_minus", "chr1", 55_000, 55_500),  # body of minus
        ("up_minus", "chr1", 61_000, 61_500),    # promoter of minus (upstream = higher coords)
        ("down_minus", "chr1", 48_500, 49_000),  # downstream of minus: no link
        ("left_ns", "chr2", 8_500, 9_000),       # within 2 kb on either side: both link
        ("right_ns", "chr2", 21_000, 21_500),
        ("far", "chr2", 30_000, 30_500),
        ("other_chrom", "chr3", 10_000, 20_000),
    ])
    i, j, w = gene_peak_links(genes, peaks, promoter_bp=2000)
    got = {(genes.index[a], peaks.index[b]) for a, b in zip(i, j, strict=True)}
    assert got == {("plus", "up_plus"), ("minus", "body_minus"), ("minus", "up_minus"),
                   ("nostrand", "left_ns"), ("nostrand", "right_ns")}
    assert np.all(w == 1)
    # GLUE's distance weighting adds distal peaks with weights decaying with distance
    i, j, w = gene_peak_links(genes, peaks, weighting="glue", extend_bp=15_000)
    by = {(genes.index[a], peaks.index[b]): x for a, b, x in zip(i, j, w, strict=True)}
    assert by[("plus", "up_plus")] == 1.0
    assert 0 < by[("plus", "down_plus")] < 1 and ("nostrand", "other_chrom") not in by
    assert by[("nostrand", "far")] < by[("plus", "down_plus")]  # 10 kb away vs 1 kb away


def test_intervals_malformed_and_missing():
    iv = parse_intervals(["chr1:10-20", "NA", ""], ["a", "b", "c"], where="f.h5")
    assert iv.loc["a"].tolist() == ["chr1", 10, 20] and iv["chrom"].isna().sum() == 2
    with pytest.raises(InputError, match="f.h5: feature 'bad' has a malformed"):
        parse_intervals(["chr1-10-20"], ["bad"], where="f.h5")


def test_annotation_of_another_naming_scheme_stops_with_the_count_placed():
    var = pd.DataFrame(index=[f"GENE{i}" for i in range(100)])
    ann = _genes([(f"ENSG{i:011d}", "chr1", i * 1000, i * 1000 + 500, "+") for i in range(100)])
    with pytest.raises(InputError, match=r"places only 0 of 100 RNA genes.*naming scheme"):
        gene_coordinates(var, ann, where="dataset 'x'")


def test_protein_names_link_to_their_genes():
    proteins = ["ADT_CD3-TotalSeqB", "CD8a", "HLA.DR", "CD45RA", "CD4-2", "IgG1.K.Isotype.Control",
                "CD999"]
    genes = ["CD3E", "CD8A", "HLA-DRA", "PTPRC", "CD4", "ACTB"]
    i, j, unmatched, iso = protein_gene_links(proteins, genes)
    assert {proteins[a]: genes[b] for a, b in zip(i, j, strict=True)} == {
        "ADT_CD3-TotalSeqB": "CD3E", "CD8a": "CD8A", "HLA.DR": "HLA-DRA", "CD45RA": "PTPRC",
        "CD4-2": "CD4"}
    assert unmatched == ["CD999"] and iso == ["IgG1.K.Isotype.Control"]
    i, j, unmatched, _ = protein_gene_links(proteins, genes, {"CD999": "ACTB", "CD4-2": None})
    linked = {proteins[a]: genes[b] for a, b in zip(i, j, strict=True)}
    assert linked["CD999"] == "ACTB" and "CD4-2" not in linked and not unmatched
    assert normalise_protein("ADT_CD45RO_TotalSeqA") == "CD45RO"
    assert normalise_protein("HLA.DR") == "HLA-DR"


def _toy_mudata() -> md.MuData:
    rng = np.random.default_rng(0)
    n = 30
    rna = ad.AnnData(sp.csr_matrix(rng.poisson(1, (n, 3)).astype(np.float32)),
                     var=pd.DataFrame({"interval": ["chr1:1000-5000", "chr1:20000-30000", "NA"]},
                                      index=["g1", "g2", "g3"]))
    atac = ad.AnnData(sp.csr_matrix(rng.poisson(1, (n, 4)).astype(np.float32)),
                      var=pd.DataFrame({"interval": ["chr1:200-600", "chr1:4000-4200",
                                                     "chr1:25000-25500", "chr2:1-100"]},
                                       index=["p1", "p2", "p3", "p4"]))
    adt = ad.AnnData(sp.csr_matrix(rng.poisson(5, (n, 2)).astype(np.float32)),
                     var=pd.DataFrame(index=["G1", "CD999"]))
    for a, k in ((rna, "rna"), (atac, "atac"), (adt, "adt")):
        a.uns[MODALITY_KIND] = k
        a.layers[COUNTS] = a.X.copy()
    return md.MuData({"rna": rna, "atac": atac, "adt": adt})


def test_links_are_stored_in_the_mudata_and_survive_h5mu(tmp_path):
    m = _toy_mudata()
    rep = add_links(m)
    assert rep["rna-atac"]["links"] == 3 and rep["rna-atac"]["genes_placed"] == 2
    assert rep["rna-adt"]["proteins_linked"] == 1 and rep["rna-adt"]["unmatched"] == ["CD999"]
    m.write(tmp_path / "m.h5mu")
    back = md.read_h5mu(tmp_path / "m.h5mu")
    L = link_matrix(back, "rna", "atac").toarray()
    np.testing.assert_array_equal(L, [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(link_matrix(back, "atac", "rna").toarray(), L.T)
    assert link_counts(back)["rna-adt"]["unmatched"] == 1
    # gene activity: a cell's ATAC counts summed over each gene's linked peaks
    X, genes = gene_space(back, "atac")
    counts = back.mod["atac"].layers[COUNTS].toarray()
    assert genes == ["g1", "g2"]
    np.testing.assert_array_equal(X.toarray(), np.c_[counts[:, :2].sum(1), counts[:, 2]])
    Xp, gp = gene_space(back, "adt")
    assert gp == ["g1"] and np.array_equal(Xp.toarray()[:, 0], back.mod["adt"].X.toarray()[:, 0])


@pytest.mark.shared_data
def test_keep_fraction_keeps_the_same_subset_of_real_links_for_every_split(shared_data):
    """``keep_fraction`` (the weak-link curve): round(f * n) of the SNARE-seq gene-peak links,
    all of them true links, the same ones however often it runs; 0 keeps none; a fraction
    outside [0, 1] stops with the key named."""
    from dmmvae.data.readers import read_10x_h5

    tenx, ann = shared_data / "tenx", shared_data / "annotation"
    snare = md.MuData(read_10x_h5(tenx / "mop_snareseq_half_a_5232.filtered_feature_bc_matrix.h5"))
    bed = str(ann / "mm10_genes.bed")
    full = add_links(snare, gene_annotation=bed)["rna-atac"]["links"]
    L_full = link_matrix(snare, "rna", "atac")
    rep = add_links(snare, gene_annotation=bed, keep_fraction=0.05)["rna-atac"]
    assert rep["links_before_keep_fraction"] == full and rep["links"] == round(0.05 * full)
    L = link_matrix(snare, "rna", "atac")
    assert L.nnz == rep["links"] and (L.multiply(L_full) != 0).sum() == L.nnz  # a subset
    add_links(snare, gene_annotation=bed, keep_fraction=0.05)
    assert (link_matrix(snare, "rna", "atac") != L).nnz == 0  # the same links again
    assert add_links(snare, gene_annotation=bed, keep_fraction=0.0)["rna-atac"]["links"] == 0
    with pytest.raises(ValueError, match="keep_fraction"):
        add_links(snare, gene_annotation=bed, keep_fraction=1.5)


@pytest.mark.shared_data
def test_link_counts_on_the_real_rna_atac_standins(shared_data):
    from dmmvae.data.readers import read_10x_h5

    tenx, ann = shared_data / "tenx", shared_data / "annotation"
    snare = md.MuData(read_10x_h5(tenx / "mop_snareseq_half_a_5232.filtered_feature_bc_matrix.h5"))
    rep = add_links(snare, gene_annotation=str(ann / "mm10_genes.bed"))["rna-atac"]
    # data README: ~24k gene-peak overlaps (gene body +- 2 kb) over 1677 genes x 25734 peaks
    assert rep["genes_placed"] > 1600 and 20_000 < rep["links"] < 30_000
    bmmc = md.MuData(read_10x_h5(tenx / "neurips2021_bmmc_multiome_500.filtered_feature_bc_matrix.h5"))
    rep = add_links(bmmc, gene_annotation=str(ann / "hg38_genes.bed"))["rna-atac"]
    assert rep["genes_placed"] > 550 and 20 < rep["links"] < 100  # the weak-link case
    with pytest.raises(InputError, match="places only"):  # human data, mouse annotation
        add_links(bmmc, gene_annotation=str(ann / "mm10_genes.bed"))
