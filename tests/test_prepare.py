"""prepare_dataset(): every source; every stand-in of ../shared/data through 'local' + preprocess."""

from __future__ import annotations

import hashlib
import shutil
import socket

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from _httpserver import serve

from dmmvae.constants import BATCH, COUNTS, LABEL, LIBRARY, LSI, PROVENANCE, SPLIT
from dmmvae.data.download import fetch_dataset
from dmmvae.data.prepare import (
    SOURCES,
    download_filenames,
    local_input_paths,
    prepare_dataset,
)
from dmmvae.data.preprocess import preprocess
from dmmvae.data.scenarios import protocol_split
from dmmvae.io import InputError

TENX = "tenx/{}.filtered_feature_bc_matrix.h5"
H5AD = "upstream/neurips2021_bmmc_cite_starter/openproblems_bmmc_cite_starter.output_{}.h5ad"
MTX_TAR = "upstream/scvi_tools_pbmc_10k_protein_v3_mtx/filtered_feature_bc_matrix.tar.gz"
V3 = "upstream/scanpy_10x_v3/filtered_feature_bc_matrix.h5"


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _tenx_spec(root, stem, mods, labels=None, batch=None):
    path = str(root / TENX.format(stem))
    spec = {"source": "local", "modalities": {m: {"format": "10x_h5", "path": path} for m in mods}}
    if labels:
        spec["labels"] = {"path": str(root / f"tenx/{stem}.labels.csv"), "column": "cell_type"}
        if batch:
            spec["labels"]["batch_column"] = batch
    return spec


def _check_contract(pre, raw):
    n = pre.n_obs
    np.testing.assert_array_equal(pre.obs[SPLIT].to_numpy(), protocol_split(n, seed=0))
    for m, a in pre.mod.items():
        assert (a.obs_names == pre.obs_names).all()
        counts = a.layers[COUNTS]
        assert sp.issparse(counts) and counts.dtype == np.float32
        # raw counts of the kept features and cells, exactly as read
        r = raw[m][pre.obs_names, a.var_names]
        np.testing.assert_array_equal(_dense(counts), _dense(r.X))
        np.testing.assert_allclose(
            a.obs[LIBRARY], _dense(raw[m][pre.obs_names].X).sum(1), rtol=1e-5
        )
        if a.uns["modality_kind"] == "atac":
            assert set(np.unique(a.X.data)) <= {1.0} and LSI in a.obsm
            assert np.isfinite(a.obsm[LSI]).all()
        if a.uns["modality_kind"] == "adt":
            np.testing.assert_allclose(np.asarray(a.X).mean(1), 0, atol=1e-5)


STANDINS = {
    # stem: (modalities, labelled, batch column, n cells)
    "neurips2021_bmmc_cite_600": (("rna", "adt"), True, "batch", 600),
    "teaseq_matilda_train_rna_adt_1262": (("rna", "adt"), True, None, 1262),
    "muon_test_pbmc_multiome_1000": (("rna", "atac"), False, None, 1000),
    "simba_test_pbmc_multiome_100": (("rna", "atac"), False, None, 100),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("stem", sorted(STANDINS))
def test_standin_10x_h5_local_then_preprocess(shared_data, tmp_path, stem):
    mods, labelled, batch, n_cells = STANDINS[stem]
    raw = prepare_dataset(
        stem, _tenx_spec(shared_data, stem, mods, labelled, batch), cache_dir=tmp_path
    )
    assert raw.n_obs == n_cells and tuple(raw.mod) == mods
    if labelled:
        table = pd.read_csv(shared_data / f"tenx/{stem}.labels.csv", index_col=0)
        np.testing.assert_array_equal(
            raw.obs[LABEL].astype(str), table.loc[raw.obs_names, "cell_type"].astype(str)
        )
        if batch:
            assert raw.obs[BATCH].nunique() == table["batch"].nunique() >= 2
    pre = preprocess(raw)
    _check_contract(pre, raw)
    # stand-ins are gene subsets: auto QC keeps (nearly) every cell
    assert pre.n_obs >= 0.95 * n_cells
    prov = pre.uns[PROVENANCE]
    assert prov["barcodes"]["rule"] == "exact" and prov["source"] == "local"
    if labelled:
        assert pre.obs[LABEL].nunique() >= 5


@pytest.mark.shared_data
def test_standin_h5ad_pair_labels_from_obs(shared_data, tmp_path):
    spec = {
        "source": "local",
        "modalities": {
            "rna": {"format": "h5ad", "path": str(shared_data / H5AD.format("rna"))},
            "adt": {
                "format": "h5ad",
                "path": str(shared_data / H5AD.format("mod2")),
                "kind": "adt",
            },
        },
        "labels": {"modality": "rna", "column": "cell_type", "batch_column": "batch"},
    }
    raw = prepare_dataset("cite_h5ad", spec, cache_dir=tmp_path)
    pre = preprocess(raw)
    _check_contract(pre, raw)
    assert pre.n_obs == 600 and pre["adt"].n_vars == 134
    assert any("layers['counts']" in n for n in pre.uns[PROVENANCE]["readers"]["rna"])
    # same cells and counts as the 10x HDF5 stand-in derived from the same files
    h5 = prepare_dataset(
        "cite_h5",
        _tenx_spec(shared_data, "neurips2021_bmmc_cite_600", ("rna", "adt")),
        cache_dir=tmp_path,
    )
    assert set(h5.obs_names) == set(raw.obs_names)
    np.testing.assert_array_equal(
        _dense(h5["adt"][raw.obs_names].X).sum(), _dense(raw["adt"].X).sum()
    )


@pytest.mark.shared_data
def test_standin_mtx_tarball(shared_data, tmp_path):
    spec = {
        "source": "local",
        "modalities": {
            "rna": {"format": "mtx", "path": str(shared_data / MTX_TAR)},
            "adt": {"format": "mtx", "path": str(shared_data / MTX_TAR)},
        },
    }
    raw = prepare_dataset("pbmc10k_protein", spec, cache_dir=tmp_path)
    assert raw.shape == (1024, 117)
    pre = preprocess(raw)
    _check_contract(pre, raw)
    assert pre["adt"].n_vars == 17


@pytest.mark.shared_data
def test_standin_scanpy_v3_rna_only(shared_data, tmp_path):
    spec = {
        "source": "local",
        "modalities": {"rna": {"format": "10x_h5", "path": str(shared_data / V3)}},
    }
    raw = prepare_dataset("v3", spec, cache_dir=tmp_path)
    pre = preprocess(raw)
    _check_contract(pre, raw)
    assert raw.shape == (1107, 507) and pre["rna"].n_vars <= 507


@pytest.mark.shared_data
def test_download_source_via_local_http_server(shared_data, tmp_path):
    stem = "neurips2021_bmmc_cite_600"
    site = tmp_path / "site"
    site.mkdir()
    h5 = shutil.copy(shared_data / TENX.format(stem), site / "cite.h5")
    shutil.copy(shared_data / f"tenx/{stem}.labels.csv", site / "labels.csv")
    md5 = hashlib.md5(open(h5, "rb").read()).hexdigest()
    with serve(site) as server:
        spec = {
            "source": "download",
            "files": {
                "matrix": {"url": f"{server.url}/cite.h5", "md5": md5},
                "labels": {"url": f"{server.url}/labels.csv"},  # no checksum: lock file
                "fragments": {"url": f"{server.url}/absent.tsv.gz", "optional": True},
            },
            "modalities": {
                "rna": {"format": "10x_h5", "file": "matrix"},
                "adt": {"format": "10x_h5", "file": "matrix"},
            },
            "labels": {"file": "labels", "column": "cell_type", "batch_column": "batch"},
        }
        # prepare only reads the cache: before the download step it names the file and the fix
        with pytest.raises(
            InputError, match=r"cite\.h5.*not in the download cache.*download_dataset"
        ):
            prepare_dataset("cite", spec, cache_dir=tmp_path / "cache")
        got = fetch_dataset("cite", spec, tmp_path / "cache", progress=False)
        assert set(got) == {"matrix", "labels"}  # the optional file is not fetched
        n_requests = len(server.requests)
        raw = prepare_dataset("cite", spec, cache_dir=tmp_path / "cache")
        assert len(server.requests) == n_requests  # no second download in prepare
    assert raw.n_obs == 600 and set(raw.obs[BATCH]) == {"s1d1", "s1d2"}
    lock = yaml.safe_load((tmp_path / "cache" / "checksums.lock.yaml").read_text())
    assert set(lock) == {"labels.csv"}
    assert raw.uns[PROVENANCE]["files"]["fragments"]["skipped"].startswith("optional")
    assert raw.uns[PROVENANCE]["files"]["matrix"]["md5"] == md5
    # second run: no server at all, the verified cache is used
    raw2 = prepare_dataset("cite", spec, cache_dir=tmp_path / "cache")
    assert raw2.n_obs == 600
    pre = preprocess(raw)
    _check_contract(pre, raw)


@pytest.mark.shared_data
def test_download_source_from_mirror_folder(shared_data, tmp_path):
    stem = "teaseq_matilda_train_rna_adt_1262"
    with socket.socket() as sock:  # a port nobody listens on: "no network"
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = {
        "source": "download",
        "download_retries": 0,
        "files": {
            "matrix": {
                "url": f"http://127.0.0.1:{port}/GSM4949911.h5",
                "relpath": TENX.format(stem),
            },
            "labels": {
                "url": f"http://127.0.0.1:{port}/labels.csv",
                "relpath": f"tenx/{stem}.labels.csv",
            },
        },
        "modalities": {
            "rna": {"format": "10x_h5", "file": "matrix"},
            "adt": {"format": "10x_h5", "file": "matrix"},
        },
        "labels": {"file": "labels", "column": "cell_type"},
    }
    fetch_dataset("tea", spec, tmp_path, mirror=str(shared_data), progress=False)
    raw = prepare_dataset("tea", spec, cache_dir=tmp_path)
    assert raw.n_obs == 1262
    with pytest.raises(InputError, match=r"GSM4949911\.h5.*data_mirror"):
        fetch_dataset("tea", spec, tmp_path / "other", progress=False)


@pytest.mark.shared_data
def test_labels_from_another_dataset_is_a_clear_error(shared_data, tmp_path):
    spec = _tenx_spec(shared_data, "teaseq_matilda_train_rna_adt_1262", ("rna", "adt"))
    spec["labels"] = {
        "path": str(shared_data / "tenx/neurips2021_bmmc_cite_600.labels.csv"),
        "column": "cell_type",
    }
    with pytest.raises(InputError) as err:
        prepare_dataset("tea", spec, cache_dir=tmp_path)
    msg = str(err.value)
    assert "dataset 'tea'" in msg and "0 cells are common" in msg and "Examples" in msg


def test_adt_csv_with_10x_rna_and_keep_unlabelled(tmp_path):
    """TEA-seq layout: 10x-style RNA (barcodes with -1) + ADT CSV without the suffix + partial labels."""
    rng = np.random.default_rng(0)
    bcs = ["".join(rng.choice(list("ACGT"), 16)) for _ in range(60)]
    rna = ad.AnnData(sp.csr_matrix(rng.poisson(2, (60, 30)).astype(np.float32)))
    rna.obs_names = [b + "-1" for b in bcs]
    rna.var_names = [f"G{j}" for j in range(30)]
    rna.write_h5ad(tmp_path / "rna.h5ad")
    adt = pd.DataFrame(
        rng.poisson(9, (50, 4)), index=bcs[10:], columns=["CD3", "CD4", "CD8", "CD19"]
    )
    adt.insert(0, "total", adt.sum(1))
    adt.index.name = "cell_barcode"
    adt.to_csv(tmp_path / "adt_counts.csv.gz")
    pd.DataFrame({"type": ["B"] * 20 + ["T"] * 20}, index=rna.obs_names[:40]).to_csv(
        tmp_path / "lab.csv"
    )
    spec = {
        "source": "local",
        "modalities": {
            "rna": {"format": "h5ad", "path": str(tmp_path / "rna.h5ad")},
            "adt": {
                "format": "adt_csv",
                "path": str(tmp_path / "adt_counts.csv.gz"),
                "barcode_suffix": "-1",
            },
        },
        "labels": {"path": str(tmp_path / "lab.csv"), "column": "type"},
        "min_barcode_overlap": 0.5,
    }
    raw = prepare_dataset("tea_like", spec, cache_dir=tmp_path)
    assert raw.n_obs == 30 and raw["adt"].n_vars == 4  # cells 10..39: in ADT and labelled
    np.testing.assert_array_equal(
        _dense(raw["adt"].X), adt.loc[[b[:-2] for b in raw.obs_names]].iloc[:, 1:]
    )
    spec["labels"]["keep_unlabelled"] = True
    raw = prepare_dataset("tea_like", spec, cache_dir=tmp_path)
    assert raw.n_obs == 50 and (raw.obs[LABEL] == "unknown").sum() == 20


def test_generated_sources(tmp_path):
    syn = prepare_dataset(
        "syn", {"source": "synthetic", "params": {"n_cells": 200, "seed": 1}}, cache_dir=tmp_path
    )
    assert syn.n_obs == 200 and "true_shared" in syn.obsm
    pre = preprocess(syn)
    assert pre.obsm["true_shared"].shape[0] == 200
    demo = prepare_dataset("demo", {"source": "pbmc68k_genesplit"}, cache_dir=tmp_path)
    pre = preprocess(demo)
    assert set(pre.mod) == {"genes_a", "genes_b"} and COUNTS not in pre["genes_a"].layers
    assert pre.obs[SPLIT].value_counts()["train"] == int(0.8 * 700)


def test_unknown_source_and_missing_pieces(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"valid sources are \['download', 'local', 'pbmc68k_genesplit', 'synthetic'\]",
    ):
        prepare_dataset("x", {"source": "ftp"}, cache_dir=tmp_path)
    assert sorted(SOURCES) == ["download", "local", "pbmc68k_genesplit", "synthetic"]
    with pytest.raises(InputError, match="no 'modalities'"):
        prepare_dataset("x", {"source": "local"}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="valid formats"):
        prepare_dataset(
            "x",
            {"source": "local", "modalities": {"rna": {"format": "loom", "path": "a"}}},
            cache_dir=tmp_path,
        )
    with pytest.raises(InputError, match="not found"):
        prepare_dataset(
            "x",
            {
                "source": "local",
                "modalities": {"rna": {"format": "10x_h5", "path": str(tmp_path / "a.h5")}},
            },
            cache_dir=tmp_path,
        )


def test_input_listings_for_snakemake():
    spec = {
        "source": "download",
        "files": {
            "h5": {"url": "https://x.org/a/GSM1_filtered_feature_bc_matrix.h5"},
            "frag": {"url": "https://x.org/a/frag.tsv.gz", "optional": True},
            "meta": {"url": "https://x.org/a/meta.csv.gz", "filename": "labels.csv.gz"},
        },
    }
    assert download_filenames(spec) == ["GSM1_filtered_feature_bc_matrix.h5", "labels.csv.gz"]
    assert "frag.tsv.gz" in download_filenames({**spec, "download_optional": True})
    local = {
        "source": "local",
        "modalities": {
            "rna": {"format": "10x_h5", "path": "d/x.h5"},
            "atac": {"format": "10x_h5", "path": "d/x.h5"},
            "adt": {
                "format": "mtx",
                "matrix": "m.mtx.gz",
                "features": "f.tsv.gz",
                "barcodes": "b.tsv.gz",
            },
        },
        "labels": {"path": "lab.csv", "column": "cell_type"},
    }
    assert local_input_paths(local) == ["d/x.h5", "m.mtx.gz", "f.tsv.gz", "b.tsv.gz", "lab.csv"]
