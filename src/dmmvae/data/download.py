"""Verified, resumable, atomic downloads (pooch + requests + tqdm).

:func:`fetch` gets one file into ``dest_dir``:

1. A file already there whose checksum matches is used as is (no network).
2. ``mirror`` (``data_mirror`` in the config) is tried first: a local folder (or ``file://``
   URL) holding the file under ``relpath`` or its basename, or a URL prefix
   (``<prefix>/<relpath or basename>``).
3. Then the original URL.

Downloads go through ``pooch.retrieve`` with a downloader that wraps pooch's own
:class:`pooch.HTTPDownloader` (requests, tqdm progress bar): bytes stream into
``<dest_dir>/.<name>.part``, which survives an interrupted run and is continued with an HTTP
``Range`` request where the server allows it (``206``), restarted otherwise; each attempt is
retried (``retries``, with backoff). Resume is the one thing pooch lacks (pooch 1.9: its
downloaders always write from byte 0, and ``Pooch(retry_if_failed=...)`` restarts from 0). pooch checks the checksum on a temporary file and moves
it into place only when it matches (atomic), removing it otherwise. Where no md5/sha256 is
published, the first download records its sha256 in ``lock_file`` (YAML:
``{file name: {sha256, url, size}}``) and later runs verify against it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pooch
import yaml

from ..io import InputError, write_yaml

log = logging.getLogger(__name__)

LOCK_FILE = "checksums.lock.yaml"  # in the download cache root, shared by every dataset
CHUNK = 1 << 16  # bytes per write: at most this much is lost when a connection drops


def _default_name(url: str) -> str:
    name = unquote(os.path.basename(urlparse(url).path))
    if not name:
        raise ValueError(f"cannot tell a file name from URL {url}; give fname")
    return name


def _known_hash(md5: str | None, sha256: str | None) -> str | None:
    if sha256:
        return f"sha256:{sha256.lower()}"
    if md5:
        return f"md5:{md5.lower()}"
    return None


def _hash_ok(path: Path, known: str | None) -> bool:
    if known is None:
        return True
    alg, value = known.split(":", 1)
    return pooch.file_hash(str(path), alg=alg) == value


@contextlib.contextmanager
def _locked(lock_file: Path):
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{lock_file}.flock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_lock(lock_file: Path | None) -> dict:
    if lock_file is None or not Path(lock_file).exists():
        return {}
    with open(lock_file) as fh:
        return yaml.safe_load(fh) or {}


def _record_lock(lock_file: Path, name: str, sha256: str, url: str, size: int) -> None:
    with _locked(lock_file):
        data = _read_lock(lock_file)
        data[name] = {"sha256": sha256, "url": url, "size": size}
        write_yaml(lock_file, dict(sorted(data.items())))


def _content_range_total(value: str | None) -> int | None:
    # "bytes */1234" or "bytes 0-99/1234"
    if value and "/" in value:
        tail = value.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    return None


def _download_once(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    """One attempt: pooch's HTTPDownloader streams into ``part``, asking for the missing bytes
    with ``Range``. A requests response hook sees the status before any byte is written:
    ``206`` -> append after the partial bytes, ``200`` (Range ignored) -> rewrite from byte 0."""
    import requests

    have = part.stat().st_size if part.exists() else 0
    seen: dict = {}
    with open(part, "r+b" if have else "w+b") as fh:

        def _place(r, *args, **kwargs):
            if r.status_code in (200, 206):
                seen["status"], seen["length"] = r.status_code, r.headers.get("Content-Length")
                fh.seek(have if r.status_code == 206 else 0)
                fh.truncate()
            return r

        downloader = pooch.HTTPDownloader(
            progressbar=progress,
            chunk_size=CHUNK,
            timeout=timeout,
            headers={"Range": f"bytes={have}-"} if have else {},
            hooks={"response": _place},
        )
        try:
            downloader(url, fh, None)
        except requests.HTTPError as err:
            r = err.response
            if r is None or r.status_code != 416 or not have:
                raise
            total = _content_range_total(r.headers.get("Content-Range"))
            if total == have:
                return  # the partial file is already complete
            fh.truncate(0)  # stale partial file: start again
            raise OSError(f"server refused range {have}- (size {total})") from err
        if have and seen.get("status") == 200:
            log.info("%s: server ignored Range; downloaded from the start", url)
        start = have if seen.get("status") == 206 else 0
        length = seen.get("length")
        size = fh.seek(0, os.SEEK_END)
        if length is not None and size != start + int(length):
            raise OSError(f"connection closed after {size} of {start + int(length)} bytes")


def http_download(
    url: str,
    part: Path,
    *,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> None:
    """Stream ``url`` into ``part`` with :class:`pooch.HTTPDownloader`, continuing an existing
    partial file with an HTTP ``Range`` request. The retry loop is ours because pooch's
    (``Pooch(retry_if_failed=...)``) restarts every attempt from byte 0."""
    import requests

    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            _download_once(url, part, progress=progress, timeout=timeout)
            return
        except (requests.RequestException, OSError) as err:
            last = err
        finally:
            if part.exists() and part.stat().st_size == 0:  # leave no empty partial file
                part.unlink()
        if attempt < retries:
            log.info("download of %s failed (%s); retry %d/%d", url, last, attempt + 1, retries)
            time.sleep(backoff * (attempt + 1))
    assert last is not None
    raise last


def _retrieve(
    url: str,
    dest: Path,
    known: str | None,
    progress: bool,
    retries: int,
    timeout: float,
    backoff: float,
) -> None:
    """pooch.retrieve with the resumable downloader; raises on checksum mismatch."""
    part = dest.parent / f".{dest.name}.part"

    def downloader(u: str, output_file: str, _pooch: object, check_only: bool = False) -> None:
        http_download(u, part, progress=progress, retries=retries, timeout=timeout, backoff=backoff)
        os.replace(part, output_file)

    pooch.retrieve(
        url,
        known_hash=known,
        fname=dest.name,
        path=dest.parent,
        downloader=downloader,
        progressbar=False,
    )


def _is_local(mirror: str) -> bool:
    return mirror.startswith("file://") or "://" not in mirror


def fetch(
    url: str,
    dest_dir: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    mirror: str | None = None,
    lock_file: str | os.PathLike | None = None,
    progress: bool = True,
    fname: str | None = None,
    relpath: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` into ``dest_dir`` (verified, resumable, atomic); return the file path.

    ``fname``: file name in ``dest_dir`` (default: the URL's basename). ``relpath``: where the
    file sits under ``mirror`` (default: ``fname``). With neither ``md5`` nor ``sha256`` the
    sha256 recorded in ``lock_file`` is used, or recorded there by this first download.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = fname or _default_name(url)
    dest = dest_dir / name
    lock = Path(lock_file) if lock_file else None
    known = _known_hash(md5, sha256)
    from_lock = False
    if known is None and lock is not None:
        entry = _read_lock(lock).get(name)
        if entry and entry.get("sha256"):
            known, from_lock = f"sha256:{entry['sha256']}", True

    if dest.exists() and (known is None or _hash_ok(dest, known)):
        if known is None and lock is not None:
            _record_lock(
                lock, name, pooch.file_hash(str(dest), alg="sha256"), url, dest.stat().st_size
            )
        return dest

    attempts: list[str] = []
    mismatch: str | None = None
    rel = relpath or name
    candidates: list[tuple[str, str]] = []
    if mirror:
        if _is_local(mirror):
            candidates.append(("local", str(Path(mirror.removeprefix("file://")) / rel)))
        else:
            candidates.append(("url", mirror.rstrip("/") + "/" + rel))
    candidates.append(("url", url))

    for kind, where in candidates:
        try:
            if kind == "local":
                src = Path(where)
                if not src.is_file():
                    attempts.append(f"mirror {src}: not found")
                    continue
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=dest_dir)
                os.close(fd)
                try:
                    shutil.copyfile(src, tmp)
                    if not _hash_ok(Path(tmp), known):
                        alg = known.split(":")[0]  # type: ignore[union-attr]
                        actual = pooch.file_hash(tmp, alg=alg)
                        raise ValueError(
                            f"{alg.upper()} hash of {src} does not match: expected "
                            f"{known.split(':', 1)[1]}, got {actual}"  # type: ignore[union-attr]
                        )
                    os.replace(tmp, dest)
                finally:
                    Path(tmp).unlink(missing_ok=True)
            else:
                _retrieve(where, dest, known, progress, retries, timeout, backoff)
            break
        except ValueError as err:  # checksum mismatch (pooch or ours): the temp file is gone
            (dest_dir / f".{name}.part").unlink(missing_ok=True)
            mismatch = f"{where}: {err}"
            attempts.append(mismatch)
        except Exception as err:  # network errors, HTTP errors, OS errors
            attempts.append(f"{where}: {type(err).__name__}: {err}")
    else:
        if mismatch is not None:
            expected = known.split(":", 1)[1] if known else "?"
            raise InputError(
                f"checksum mismatch for file {name} (expected {known.split(':')[0] if known else ''} "
                f"{expected}{', recorded in ' + str(lock) if from_lock else ''}); details: "
                f"{mismatch}. The downloaded file was removed. Fix: if the source changed on "
                "purpose, update the checksum in the dataset config "
                f"{'(or delete its entry in the lock file ' + str(lock) + ')' if from_lock else ''}; "
                "otherwise retry later or use another mirror"
            )
        raise InputError(
            f"could not get file {name} from {url}: " + "; ".join(attempts) + ". Fix: check the "
            "network, or set data_mirror (config key, or --config data_mirror=...) to a local "
            f"folder holding '{rel}' or to a URL prefix serving it; or place the file at {dest}"
        )
    if known is None and lock is not None:
        sha = pooch.file_hash(str(dest), alg="sha256")
        _record_lock(lock, name, sha, url, dest.stat().st_size)
        log.info("recorded sha256 of %s in %s", name, lock)
    return dest


def file_name(entry: dict) -> str:
    """Name of a dataset file in the cache: ``filename`` if given, else the URL's basename."""
    return entry.get("filename") or _default_name(entry["url"])


def wanted_files(spec: dict) -> dict[str, dict]:
    """Entries of ``spec["files"]`` to download: optional ones only with ``download_optional``."""
    return {
        key: entry
        for key, entry in (spec.get("files") or {}).items()
        if not entry.get("optional") or spec.get("download_optional", False)
    }


def fetch_dataset_file(
    spec: dict,
    filename: str,
    dest_dir: str | os.PathLike,
    *,
    mirror: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch the entry of ``spec["files"]`` whose cache name is ``filename`` into ``dest_dir``
    (``<download_dir>/<dataset>``); the lock file sits in ``<download_dir>``. ``retries``:
    ``spec["download_retries"]`` (default 3)."""
    files = spec.get("files") or {}
    matches = [e for e in files.values() if file_name(e) == filename]
    if not matches:
        raise ValueError(
            f"no entry of the dataset's files is named '{filename}'; "
            f"valid: {sorted(file_name(e) for e in files.values())}"
        )
    entry = matches[0]
    dest_dir = Path(dest_dir)
    return fetch(
        entry["url"],
        dest_dir,
        md5=entry.get("md5"),
        sha256=entry.get("sha256"),
        mirror=mirror,
        lock_file=dest_dir.parent / LOCK_FILE,
        progress=progress,
        fname=filename,
        relpath=entry.get("relpath"),
        retries=int(spec.get("download_retries", 3)),
    )


def fetch_dataset(
    name: str,
    spec: dict,
    download_dir: str | os.PathLike,
    *,
    mirror: str | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Fetch every wanted file of 'download' dataset ``name`` into ``<download_dir>/<name>``
    (what the workflow's ``download_dataset`` rule does file by file); returns key -> path.
    For use outside Snakemake (tests, notebooks) before :func:`dmmvae.data.prepare.prepare_dataset`,
    which only reads the cache."""
    dest = Path(download_dir) / name
    return {
        key: fetch_dataset_file(spec, file_name(entry), dest, mirror=mirror, progress=progress)
        for key, entry in wanted_files(spec).items()
    }


__all__ = [
    "LOCK_FILE",
    "fetch",
    "fetch_dataset",
    "fetch_dataset_file",
    "file_name",
    "http_download",
    "wanted_files",
]
