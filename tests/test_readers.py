"""Readers: 10x HDF5, Matrix Market, ADT CSV, h5ad, h5mu, labels, barcode matching, bad input."""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from dmmvae.constants import BATCH, LABEL, MODALITY_KIND
from dmmvae.data.readers import (
    READER_NOTES,
    get_reader,
    match_barcodes,
    read_10x_h5,
    read_adt_csv,
    read_h5ad,
    read_h5mu,
    read_labels,
    read_mtx,
)
from dmmvae.io import InputError

CITE = "tenx/neurips2021_bmmc_cite_600.filtered_feature_bc_matrix.h5"
MULTIOME = "tenx/muon_test_pbmc_multiome_1000.filtered_feature_bc_matrix.h5"
MTX_TAR = "upstream/scvi_tools_pbmc_10k_protein_v3_mtx/filtered_feature_bc_matrix.tar.gz"
H5AD_RNA = "upstream/neurips2021_bmmc_cite_starter/openproblems_bmmc_cite_starter.output_rna.h5ad"


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _write_mtx_triple(
    folder: Path, X: np.ndarray, feats: list[list[str]], bcs: list[str], prefix=""
):
    """GEO-style gzipped triple: features x cells matrix, features and barcodes tsv."""
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{prefix}matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(X.T.astype(np.int64)), field="integer")
    with gzip.open(folder / f"{prefix}features.tsv.gz", "wt") as fh:
        fh.writelines("\t".join(r) + "\n" for r in feats)
    with gzip.open(folder / f"{prefix}barcodes.tsv.gz", "wt") as fh:
        fh.writelines(b + "\n" for b in bcs)


# ---------------------------------------------------------------------------------------
# real stand-in files
# ---------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_10x_h5_split_by_feature_type(shared_data):
    import scanpy as sc

    mods = read_10x_h5(shared_data / MULTIOME)
    assert set(mods) == {"rna", "atac"}
    full = sc.read_10x_h5(shared_data / MULTIOME, gex_only=False)
    for m, ft in (("rna", "Gene Expression"), ("atac", "Peaks")):
        sel = (full.var["feature_types"] == ft).to_numpy()
        np.testing.assert_array_equal(_dense(mods[m].X), _dense(full.X[:, sel]))
        assert mods[m].uns[MODALITY_KIND] == m
    assert mods["atac"].n_vars == 174 and mods["rna"].n_vars == 45
    only = read_10x_h5(shared_data / CITE, modalities={"protein": "adt"})
    assert list(only) == ["protein"] and only["protein"].n_vars == 134


@pytest.mark.shared_data
def test_10x_h5_missing_modality(shared_data):
    with pytest.raises(InputError) as err:
        read_10x_h5(shared_data / CITE, modalities={"atac": "atac"})
    msg = str(err.value)
    assert CITE.split("/")[1] in msg and "Peaks" in msg and "Antibody Capture" in msg


@pytest.mark.shared_data
def test_truncated_hdf5(shared_data, tmp_path):
    bad = tmp_path / "truncated.h5"
    data = (shared_data / CITE).read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated\.h5.*(truncated or corrupt|not an HDF5)"):
        read_10x_h5(bad)


def test_wrong_format_file(tmp_path):
    fake = tmp_path / "filtered_feature_bc_matrix.h5"
    fake.write_text("barcode,CD3\nAAAC,1\n")
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_10x_h5(fake)
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_h5ad(fake)
    # an HDF5 file of another layout
    a = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    a.write_h5ad(tmp_path / "x.h5ad")
    with pytest.raises(InputError, match="without a 10x 'matrix' group"):
        read_10x_h5(tmp_path / "x.h5ad")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_10x_h5(tmp_path / "nope.h5")


@pytest.mark.shared_data
def test_mtx_tarball_with_mixed_feature_types(shared_data):
    mods = read_mtx(shared_data / MTX_TAR)
    assert set(mods) == {"rna", "adt"}
    assert mods["rna"].shape == (1024, 100) and mods["adt"].shape == (1024, 17)
    assert "CD3_TotalSeqB" in mods["adt"].var_names
    assert mods["rna"].X.sum() + mods["adt"].X.sum() > 0
    assert mods["adt"].X.dtype == np.float32


def test_mtx_geo_prefixed_triple_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(30, 8))
    feats = [[f"G{j}"] for j in range(8)]  # one-column features file
    bcs = [f"L1_{'ACGT' * 4}{i}" for i in range(30)]
    _write_mtx_triple(tmp_path / "geo", X, feats, bcs, prefix="GSM1_RNA_3P-")
    d = tmp_path / "geo"
    mods = read_mtx(
        matrix=d / "GSM1_RNA_3P-matrix.mtx.gz",
        features=d / "GSM1_RNA_3P-features.tsv.gz",
        barcodes=d / "GSM1_RNA_3P-barcodes.tsv.gz",
        modalities={"adt": "adt"},
        default_kind="adt",
    )
    np.testing.assert_array_equal(_dense(mods["adt"].X), X)
    assert mods["adt"].obs_names[0] == bcs[0]
    # the folder form finds the prefixed files too
    assert read_mtx(d)["rna"].shape == (30, 8)
    # features file that does not fit the matrix
    _write_mtx_triple(tmp_path / "bad", X, feats[:-1], bcs)
    with pytest.raises(InputError, match=r"matrix is 8 x 30 but features.tsv.gz lists 7 features"):
        read_mtx(tmp_path / "bad")
    # a tarball that is not one
    junk = tmp_path / "x.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(InputError, match="neither a folder nor a tar archive"):
        read_mtx(junk)


def test_mtx_non_integer_counts(tmp_path):
    X = np.full((5, 4), 1.5)
    folder = tmp_path / "m"
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(X.T))
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        fh.writelines(f"id{j}\tG{j}\tGene Expression\n" for j in range(4))
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.writelines(f"c{i}\n" for i in range(5))
    with pytest.raises(InputError, match=r"matrix.mtx.gz.*non-integer"):
        read_mtx(folder)


def test_adt_csv_orientation_detected_both_ways(tmp_path):
    rng = np.random.default_rng(0)
    bcs = [f"{''.join(rng.choice(list('ACGT'), 16))}" for _ in range(40)]
    prots = ["CD3", "CD4", "CD8a", "CD14", "CD19"]
    X = rng.poisson(5, size=(40, 5))
    df = pd.DataFrame(X, index=bcs, columns=prots)
    df.insert(0, "total", X.sum(1))
    df.to_csv(tmp_path / "cells_x_prot.csv.gz")
    a = read_adt_csv(tmp_path / "cells_x_prot.csv.gz", barcode_suffix="-1")["adt"]
    assert list(a.var_names) == prots  # 'total' dropped
    assert a.obs_names[0] == bcs[0] + "-1"
    np.testing.assert_array_equal(_dense(a.X), X)
    notes = " ".join(a.uns[READER_NOTES]["notes"])
    assert "cells_x_proteins" in notes and "total" in notes
    df.drop(columns="total").T.to_csv(tmp_path / "prot_x_cells.tsv", sep="\t")
    b = read_adt_csv(tmp_path / "prot_x_cells.tsv")["adt"]
    assert "proteins_x_cells" in " ".join(b.uns[READER_NOTES]["notes"])
    np.testing.assert_array_equal(_dense(b.X), X)
    # orientation from the other modality's barcodes when labels are not barcode-like
    names = [f"cell{i}" for i in range(40)]
    pd.DataFrame(X.T[:, :40], index=prots, columns=names).to_csv(tmp_path / "p.csv")
    c = read_adt_csv(tmp_path / "p.csv", reference_barcodes=names)["adt"]
    assert c.shape == (40, 5) and "match the other modalities" in " ".join(
        c.uns[READER_NOTES]["notes"]
    )


def test_adt_csv_nan_and_non_integer(tmp_path):
    df = pd.DataFrame(
        {"CD3": [1.0, np.nan, 3.0], "CD4": [1, 2, 3]},
        index=["AAAACCCCGGGG", "ACGTACGTACGT", "TTTTGGGGCCCC"],
    )
    df.to_csv(tmp_path / "nan.csv")
    with pytest.raises(InputError, match=r"nan\.csv.*NaN/inf"):
        read_adt_csv(tmp_path / "nan.csv")
    df["CD3"] = [0.5, 1.2, 3.0]
    df.to_csv(tmp_path / "frac.csv")
    with pytest.raises(InputError, match=r"frac\.csv.*non-integer"):
        read_adt_csv(tmp_path / "frac.csv")


@pytest.mark.shared_data
def test_h5ad_counts_from_layer_or_error(shared_data, tmp_path):
    a = read_h5ad(shared_data / H5AD_RNA, name="rna")["rna"]
    full = ad.read_h5ad(shared_data / H5AD_RNA)
    np.testing.assert_array_equal(_dense(a.X), _dense(full.layers["counts"]))
    assert "layers['counts']" in " ".join(a.uns[READER_NOTES]["notes"])
    assert a.obs[LABEL].iloc[0] == full.obs[LABEL].iloc[0]  # obs carried (labels source)
    del full.layers["counts"]
    full.write_h5ad(tmp_path / "normalised_only.h5ad")
    with pytest.raises(InputError, match=r"normalised_only\.h5ad.*non-integer.*layers\['counts'\]"):
        read_h5ad(tmp_path / "normalised_only.h5ad", name="rna")


def test_h5mu_read_and_missing_modality(tmp_path):
    rng = np.random.default_rng(0)
    mods = {
        "rna": ad.AnnData(sp.csr_matrix(rng.poisson(1, (20, 6)).astype(np.float32))),
        "prot": ad.AnnData(rng.poisson(4, (20, 3)).astype(np.float32)),
    }
    for m, a in mods.items():
        a.obs_names = [f"c{i}" for i in range(20)]
        a.var_names = [f"{m}{j}" for j in range(a.n_vars)]
    mods["prot"].layers["counts"] = mods["prot"].X.copy()
    mods["prot"].X = np.log1p(mods["prot"].X)
    with md.set_options(pull_on_update=False):
        m = md.MuData(mods)
    m.write(tmp_path / "x.h5mu")
    out = read_h5mu(tmp_path / "x.h5mu")
    assert out["rna"].uns[MODALITY_KIND] == "rna" and out["prot"].uns[MODALITY_KIND] == "adt"
    np.testing.assert_array_equal(_dense(out["prot"].X), mods["prot"].layers["counts"])
    with pytest.raises(
        InputError, match=r"modality 'atac' is missing; the file has \['rna', 'prot'\]"
    ):
        read_h5mu(tmp_path / "x.h5mu", modalities={"atac": "atac"})


def test_labels_table(tmp_path):
    df = pd.DataFrame(
        {"celltype.l2": ["B", "T", None], "donor": ["P1", "P2", "P1"], "time": [0, 3, 7]},
        index=["L1_AAA", "L1_CCC", "L2_GGG"],
    )
    df.to_csv(tmp_path / "meta.csv.gz")
    lab = read_labels(
        tmp_path / "meta.csv.gz", label_column="celltype.l2", batch_column=["donor", "time"]
    )
    assert list(lab[BATCH]) == ["P1_0", "P2_3", "P1_7"]
    assert lab[LABEL].isna().tolist() == [False, False, True]
    with pytest.raises(InputError, match=r"no column\(s\) \['celltype'\].*celltype.l2"):
        read_labels(tmp_path / "meta.csv.gz", label_column="celltype")
    # keep: scMODAL's tutorial subset (donor P1): other donors lose their label
    lab = read_labels(tmp_path / "meta.csv.gz", label_column="celltype.l2", keep={"donor": ["P1"]})
    assert lab[LABEL].isna().tolist() == [False, True, True]
    with pytest.raises(InputError, match=r"matches no row.*'P1', 'P2'"):
        read_labels(tmp_path / "meta.csv.gz", label_column="celltype.l2", keep={"donor": ["P9"]})


@pytest.mark.shared_data
def test_labels_from_h5ad_obs_and_zip(shared_data, tmp_path):
    import zipfile

    lab = read_labels(shared_data / H5AD_RNA, label_column="cell_type", batch_column="batch")
    assert len(lab) == 600 and lab[BATCH].nunique() == 2
    csv = (shared_data / "tenx/neurips2021_bmmc_cite_600.labels.csv").read_text()
    table = "barcode," + csv.split(",", 1)[1]  # a named barcode column, as in source data
    with zipfile.ZipFile(tmp_path / "fig4-data2.zip", "w") as zf:
        zf.writestr("Figure4_SourceData2_TypeLabelsUMAP.csv", table)
        zf.writestr("README.txt", "source data")
    with pytest.raises(InputError, match="set labels.member"):
        read_labels(tmp_path / "fig4-data2.zip", label_column="cell_type", barcode_column="barcode")
    z = read_labels(
        tmp_path / "fig4-data2.zip",
        label_column="cell_type",
        barcode_column="barcode",
        member="TypeLabelsUMAP.csv",
    )
    pd.testing.assert_series_equal(z[LABEL], lab[LABEL], check_names=False)


def test_match_barcodes_rules():
    a = pd.Index([f"BC{i}-1" for i in range(100)])
    b = pd.Index([f"BC{i}-1" for i in range(50, 150)][::-1])
    pos, common, rep = match_barcodes({"rna": a, "adt": b})
    assert list(common) == [f"BC{i}-1" for i in range(50, 100)]
    np.testing.assert_array_equal(b[pos["adt"]], common)
    assert rep["rule"] == "exact" and rep["n_dropped"] == {"rna": 50, "adt": 50}
    # CellRanger "-1" suffix missing on one side (TEA-seq ADT tables)
    c = pd.Index([f"BC{i}" for i in range(100)])
    pos, common, rep = match_barcodes({"rna": a, "adt": c})
    assert rep["rule"].startswith("after removing") and len(common) == 100
    assert common[0] == "BC0-1"


def test_match_barcodes_empty_overlap_is_clear():
    with pytest.raises(InputError) as err:
        match_barcodes(
            {"rna": pd.Index(["AAAC-1", "GGGT-1"]), "labels": pd.Index(["x1", "x2", "x3"])}
        )
    msg = str(err.value)
    assert (
        "0 cells are common" in msg and "AAAC-1" in msg and "x1" in msg and "barcode_suffix" in msg
    )
    with pytest.raises(InputError, match="3 cells are common"):  # tiny overlap
        match_barcodes({"a": pd.Index(range(100)), "b": pd.Index(range(97, 200))})


def test_unknown_format_lists_valid():
    with pytest.raises(ValueError, match="valid formats.*10x_h5"):
        get_reader("loom")


@pytest.mark.shared_data
def test_corrupt_tarball(shared_data, tmp_path):
    data = (shared_data / MTX_TAR).read_bytes()
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.tar\.gz"):
        read_mtx(bad)
    assert tarfile.is_tarfile(shared_data / MTX_TAR)
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.shared_data
def test_10x_h5_keeps_feature_interval(shared_data):
    """muon keeps every feature field; gene-peak links need `interval` for genes and peaks."""
    import h5py

    path = shared_data / "tenx/mop_snareseq_half_a_5232.filtered_feature_bc_matrix.h5"
    mods = read_10x_h5(path)
    with h5py.File(path, "r") as f:
        interval = f["matrix/features/interval"][:].astype(str)
        ftype = f["matrix/features/feature_type"][:].astype(str)
    for m, ft in (("rna", "Gene Expression"), ("atac", "Peaks")):
        assert list(mods[m].var["interval"]) == list(interval[ftype == ft])
        assert mods[m].var["genome"].notna().all()


@pytest.mark.shared_data
def test_mtx_cellranger_layout_read_by_scanpy_geo_layouts_by_us(shared_data, tmp_path, monkeypatch):
    import scanpy as sc

    calls = []
    real = sc.read_10x_mtx
    monkeypatch.setattr(sc, "read_10x_mtx", lambda *a, **k: calls.append(a) or real(*a, **k))
    read_mtx(shared_data / MTX_TAR)  # CellRanger v3 layout
    assert len(calls) == 1
    # a 1-column GEO feature list: scanpy.read_10x_mtx raises KeyError 1 on it; ours reads it
    X = np.arange(12).reshape(4, 3)
    _write_mtx_triple(tmp_path / "geo", X, [["A"], ["B"], ["C"]], [f"c{i}" for i in range(4)])
    got = read_mtx(tmp_path / "geo")["rna"]
    assert len(calls) == 1
    np.testing.assert_array_equal(_dense(got.X), X)
    assert list(got.var_names) == ["A", "B", "C"]
