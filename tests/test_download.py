"""fetch(): verified, resumable, atomic downloads against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml
from _httpserver import serve

from dmmvae.data.download import fetch, fetch_dataset_file
from dmmvae.data.readers import read_10x_h5
from dmmvae.io import InputError

FAST = {"progress": False, "retries": 2, "timeout": 5, "backoff": 0.05}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_10x_h5(path: Path, n_cells: int = 300, n_genes: int = 400, seed: int = 0) -> None:
    """A small file in the CellRanger v3 HDF5 layout (features x cells CSC), real-format test."""
    import h5py
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.csc_matrix(rng.poisson(0.3, size=(n_genes, n_cells)).astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = (
            X.data,
            X.indices.astype(np.int64),
            X.indptr.astype(np.int64),
        )
        g["shape"] = np.array([n_genes, n_cells], dtype=np.int32)
        g["barcodes"] = np.array([f"CELL{i:05d}-1" for i in range(n_cells)], dtype="S")
        ft = g.create_group("features")
        ft["id"] = np.array([f"ENSG{j:08d}" for j in range(n_genes)], dtype="S")
        ft["name"] = np.array([f"GENE{j}" for j in range(n_genes)], dtype="S")
        ft["feature_type"] = np.array(["Gene Expression"] * n_genes, dtype="S")
        ft["genome"] = np.array(["GRCh38"] * n_genes, dtype="S")
        ft["_all_tag_keys"] = np.array([b"genome"])


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "server"
    (root / "sub").mkdir(parents=True)
    _write_10x_h5(root / "sub" / "pbmc.h5")
    with serve(root) as server:
        yield server, root / "sub" / "pbmc.h5"


def _closed_port_url(name: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_download_verified_md5_and_readable(served, tmp_path):
    server, src = served
    dest = tmp_path / "cache"
    out = fetch(f"{server.url}/sub/pbmc.h5", dest, md5=_md5(src), **FAST)
    assert out == dest / "pbmc.h5" and out.read_bytes() == src.read_bytes()
    assert _leftovers(dest) == []
    assert read_10x_h5(out)["rna"].shape == (300, 400)
    # a second call uses the verified file: no new request
    n = len(server.requests)
    assert fetch(f"{server.url}/sub/pbmc.h5", dest, md5=_md5(src), **FAST) == out
    assert len(server.requests) == n


def test_resume_after_connection_cut(served, tmp_path):
    server, src = served
    tmp_path = tmp_path / "cache"
    size = src.stat().st_size
    server.cut_after["sub/pbmc.h5"] = size // 3
    out = fetch(f"{server.url}/sub/pbmc.h5", tmp_path, sha256=_sha256(src), **FAST)
    assert out.read_bytes() == src.read_bytes()
    (first, r0, s0), (second, r1, s1) = server.requests
    assert r0 is None and s0 == 200
    # continued where the partial file ended (whole 64 KiB chunks kept), not restarted
    assert s1 == 206 and r1.startswith("bytes=")
    assert 0 < int(r1.removeprefix("bytes=").rstrip("-")) <= size // 3
    assert _leftovers(tmp_path) == []


def test_resume_partial_file_from_previous_run(served, tmp_path):
    server, src = served
    tmp_path = tmp_path / "cache"
    tmp_path.mkdir()
    data = src.read_bytes()
    (tmp_path / ".pbmc.h5.part").write_bytes(data[:1000])
    out = fetch(f"{server.url}/sub/pbmc.h5", tmp_path, md5=_md5(src), **FAST)
    assert out.read_bytes() == data
    assert server.requests == [("sub/pbmc.h5", "bytes=1000-", 206)]


def test_complete_partial_file_is_not_downloaded_again(served, tmp_path):
    """A partial file that already holds every byte: the server answers 416, nothing is sent."""
    server, src = served
    tmp_path = tmp_path / "cache"
    tmp_path.mkdir()
    data = src.read_bytes()
    (tmp_path / ".pbmc.h5.part").write_bytes(data)
    out = fetch(f"{server.url}/sub/pbmc.h5", tmp_path, md5=_md5(src), **FAST)
    assert out.read_bytes() == data
    assert server.requests == [("sub/pbmc.h5", f"bytes={len(data)}-", 416)]
    assert _leftovers(tmp_path) == []


def test_server_without_range_restarts(served, tmp_path):
    server, src = served
    tmp_path = tmp_path / "cache"
    tmp_path.mkdir()
    server.no_range = True
    (tmp_path / ".pbmc.h5.part").write_bytes(b"garbage" * 10)
    out = fetch(f"{server.url}/sub/pbmc.h5", tmp_path, md5=_md5(src), **FAST)
    assert out.read_bytes() == src.read_bytes()


def test_checksum_mismatch_names_file_and_removes_partial(served, tmp_path):
    server, src = served
    tmp_path = tmp_path / "cache"
    wrong = "0" * 32
    with pytest.raises(InputError) as err:
        fetch(f"{server.url}/sub/pbmc.h5", tmp_path, md5=wrong, **FAST)
    msg = str(err.value)
    assert "pbmc.h5" in msg and wrong in msg and _md5(src) in msg and "removed" in msg
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file left


def test_lock_file_records_then_verifies(served, tmp_path):
    server, src = served
    lock = tmp_path / "checksums.lock.yaml"
    dest = tmp_path / "cache"
    fetch(f"{server.url}/sub/pbmc.h5", dest, lock_file=lock, **FAST)
    entry = yaml.safe_load(lock.read_text())["pbmc.h5"]
    assert entry["sha256"] == _sha256(src) and entry["size"] == src.stat().st_size
    # the source changes: a fresh download must be refused against the recorded sha256
    (dest / "pbmc.h5").unlink()
    _write_10x_h5(src, seed=1)
    with pytest.raises(InputError, match=r"checksum mismatch.*pbmc\.h5.*lock"):
        fetch(f"{server.url}/sub/pbmc.h5", dest, lock_file=lock, **FAST)
    assert not (dest / "pbmc.h5").exists()


def test_local_mirror_used_first_without_network(served, tmp_path):
    _, src = served
    mirror = tmp_path / "mirror"
    (mirror / "tenx").mkdir(parents=True)
    shutil.copy(src, mirror / "tenx" / "renamed.h5")
    url = _closed_port_url("pbmc.h5")
    out = fetch(
        url, tmp_path / "c", md5=_md5(src), mirror=str(mirror), relpath="tenx/renamed.h5", **FAST
    )
    assert out.name == "pbmc.h5" and out.read_bytes() == src.read_bytes()
    shutil.copy(src, mirror / "pbmc.h5")  # by basename, file:// form
    out2 = fetch(url, tmp_path / "d", md5=_md5(src), mirror=f"file://{mirror}", **FAST)
    assert out2.read_bytes() == src.read_bytes()


def test_url_prefix_mirror(served, tmp_path):
    server, src = served
    tmp_path = tmp_path / "cache"
    out = fetch(
        _closed_port_url("pbmc.h5"), tmp_path, md5=_md5(src), mirror=f"{server.url}/sub", **FAST
    )
    assert out.read_bytes() == src.read_bytes()
    assert server.requests[0][0] == "sub/pbmc.h5"


def test_no_network_no_mirror_says_how_to_fix(tmp_path):
    url = _closed_port_url("GSM5008737_RNA_3P-matrix.mtx.gz")
    with pytest.raises(InputError) as err:
        fetch(url, tmp_path, md5="0" * 32, **FAST)
    msg = str(err.value)
    assert url in msg and "data_mirror" in msg
    assert [p.name for p in tmp_path.iterdir()] == []


def test_fetch_dataset_file_uses_cache_root_lock(served, tmp_path):
    server, src = served
    spec = {
        "files": {
            "matrix": {"url": f"{server.url}/sub/pbmc.h5", "filename": "GSM1_matrix.h5"},
            "other": {"url": f"{server.url}/sub/other.csv", "md5": "0" * 32},
        }
    }
    out = fetch_dataset_file(spec, "GSM1_matrix.h5", tmp_path / "dl" / "ds1", progress=False)
    assert out == tmp_path / "dl" / "ds1" / "GSM1_matrix.h5"
    lock = yaml.safe_load((tmp_path / "dl" / "checksums.lock.yaml").read_text())
    assert lock["GSM1_matrix.h5"]["sha256"] == _sha256(src)
    with pytest.raises(ValueError, match="valid"):
        fetch_dataset_file(spec, "nope.h5", tmp_path / "dl" / "ds1")
