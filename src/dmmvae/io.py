"""Small I/O helpers: atomic writes, YAML, and the predictions file shared by train/evaluate."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from .constants import EMBEDDING_GROUP, GENERATED_GROUP, IMPUTATION_GROUP


class InputError(ValueError):
    """Bad user input: the message names the file, the problem and the fix."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Nothing half-written is ever left at ``path``: on error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths into YAML/JSON-friendly builtins."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_yaml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    write_text(path, yaml.safe_dump(_plain(data), sort_keys=False))


# --------------------------------------------------------------------------------------
# Predictions: what every method (model, control, reference tool) hands to evaluation
# --------------------------------------------------------------------------------------
class Predictions:
    """In-memory form of ``predictions.h5``.

    - ``embeddings[mod]``: (n_test, d) encoded from ``mod`` alone; ``embeddings["joint"]`` optional.
    - ``imputations[(src, tgt)]``: (n_test, n_features_tgt) in the scoring normalization of tgt.
    - ``generated[mod]``: (n, n_features_mod) sampled from the prior, scoring normalization.
    - ``cross_generated[(src, tgt)]``: (n_test, n_features_tgt) SAMPLED from tgt's likelihood
      given src alone (the realism test's cross-modal generations; imputations are means).
    - ``obs_names``: the test cells, in order.
    - ``failure``: None, or a dict {reason, epoch, log} when the method failed.
    """

    def __init__(
        self,
        obs_names: list[str] | np.ndarray,
        embeddings: dict[str, np.ndarray] | None = None,
        imputations: dict[tuple[str, str], np.ndarray] | None = None,
        generated: dict[str, np.ndarray] | None = None,
        failure: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
        cross_generated: dict[tuple[str, str], np.ndarray] | None = None,
    ) -> None:
        self.obs_names = np.asarray(obs_names).astype(str)
        self.embeddings = dict(embeddings or {})
        self.imputations = dict(imputations or {})
        self.generated = dict(generated or {})
        self.cross_generated = dict(cross_generated or {})
        self.failure = failure
        self.info = dict(info or {})

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def write(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("obs_names", data=self.obs_names.astype("S"))
            f.attrs["info"] = json.dumps(_plain(self.info))
            f.attrs["failure"] = json.dumps(_plain(self.failure))
            for mod, arr in self.embeddings.items():
                f.create_dataset(f"{EMBEDDING_GROUP}/{mod}", data=np.asarray(arr, np.float32))
            for (src, tgt), arr in self.imputations.items():
                arr = np.asarray(arr)
                # Wide targets (ATAC peaks) are stored in float16 to keep files small.
                dtype = np.float16 if arr.shape[1] > 20000 else np.float32
                f.create_dataset(
                    f"{IMPUTATION_GROUP}/{src}_to_{tgt}",
                    data=arr.astype(dtype, copy=False),
                    chunks=(min(len(arr), 256), arr.shape[1]) if arr.size else None,
                )
            for mod, arr in self.generated.items():
                f.create_dataset(f"{GENERATED_GROUP}/prior/{mod}", data=np.asarray(arr, np.float32))
            for (src, tgt), arr in self.cross_generated.items():
                arr = np.asarray(arr)
                dtype = np.float16 if arr.shape[1] > 20000 else np.float32
                f.create_dataset(f"{GENERATED_GROUP}/cross/{src}_to_{tgt}",
                                 data=arr.astype(dtype, copy=False))

    @classmethod
    def read(cls, path: str | os.PathLike) -> Predictions:
        with h5py.File(path, "r") as f:
            obs_names = f["obs_names"][:].astype(str)
            info = json.loads(f.attrs.get("info", "{}"))
            failure = json.loads(f.attrs.get("failure", "null"))
            emb = {k: v[:] for k, v in f.get(EMBEDDING_GROUP, {}).items()}
            imp = {}
            for k, v in f.get(IMPUTATION_GROUP, {}).items():
                src, tgt = k.split("_to_")
                imp[(src, tgt)] = v[:].astype(np.float32)
            gen = {k: v[:] for k, v in f.get(f"{GENERATED_GROUP}/prior", {}).items()}
            cross = {}
            for k, v in f.get(f"{GENERATED_GROUP}/cross", {}).items():
                src, tgt = k.split("_to_")
                cross[(src, tgt)] = v[:].astype(np.float32)
        return cls(obs_names, emb, imp, gen, failure, info, cross)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def replaced_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh empty folder beside ``path``; on success it replaces ``path`` (swapped in
    atomically where the OS allows, else by two renames) and the old folder is deleted; on
    error it is deleted and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the summary is not
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.is_dir() and not path.is_symlink():
        if not _exchange(tmp, path):
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            tmp = old
        shutil.rmtree(tmp)  # the old folder, now at tmp
    else:
        if path.exists() or path.is_symlink():
            path.unlink()
        os.rename(tmp, path)
