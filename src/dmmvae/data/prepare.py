"""Dataset sources -> one raw-count MuData per dataset (input of :func:`preprocess`).

:data:`SOURCES` maps ``spec["source"]`` to a function ``(name, spec, cache_dir) ->
MuData``:

- ``synthetic``: :func:`dmmvae.data.synthetic.simulate_shared_private` with ``spec["params"]``.
- ``pbmc68k_genesplit``: :func:`dmmvae.data.demo.pbmc68k_gene_split` (``params.seed``).
- ``download``: read the entries of ``spec["files"]`` from the download cache
  ``<cache_dir>/<name>/<filename>``, where the download step (the workflow's download_dataset
  rule, or :func:`dmmvae.data.download.fetch_dataset`) fetched them and verified their checksum
  once (``url`` + ``md5``/``sha256``; none -> sha256 recorded in
  ``<cache_dir>/checksums.lock.yaml``; ``optional: true`` files only with
  ``download_optional: true``; ``filename``: its name in the cache, default the URL's basename;
  ``relpath``: where it sits under the mirror; ``download_retries``, default 3). Nothing is
  fetched or re-hashed here. Then they are read as for ``local``; ``modalities`` and ``labels``
  refer to the files by their key.
- ``local``: bring-your-own files, referred to by path.

Modality entries (``spec["modalities"][<name>]``): ``format`` (a key of
:data:`dmmvae.data.readers.READERS`), ``path`` or ``file`` (folder, tarball, HDF5, CSV ...),
``kind`` (rna/adt/atac; default: the modality name) and the reader's options, e.g.
``matrix``/``features``/``barcodes`` for a GEO Matrix Market triple, ``orientation``,
``barcode_suffix``, ``drop_columns`` for an ADT CSV, ``modality`` (name inside an ``.h5mu``).
Several modalities may name the same 10x HDF5 file: it is read once.

Labels (``spec["labels"]``, optional): ``path``/``file`` of a CSV/TSV (index = barcode) or an
``.h5ad`` (its obs), or ``modality: <name>`` to use that modality's own ``obs``; ``column``
(label), ``batch_column`` (str or list, joined with "_"), ``barcode_column``,
``keep_unlabelled`` (default false: cells without a label are dropped, e.g. doublets absent
from a published annotation). Barcodes are inner-joined across modalities and labels
(:func:`dmmvae.data.readers.match_barcodes`, ``spec["min_barcode_overlap"]``, default 0.5),
and the join is recorded in ``uns["provenance"]["barcodes"]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import mudata as md
import pandas as pd

from ..constants import BATCH, LABEL, PROVENANCE
from ..io import InputError
from .download import file_name, wanted_files
from .readers import READER_NOTES, get_reader, match_barcodes, read_labels

log = logging.getLogger(__name__)

_ENTRY_KEYS = {"format", "path", "file", "kind"}
_PATH_OPTIONS = ("matrix", "features", "barcodes")


# --------------------------------------------------------------------------------------
# generated sources
# --------------------------------------------------------------------------------------
def _synthetic(name: str, spec: Mapping[str, Any], cache_dir: Path) -> md.MuData:
    from .synthetic import simulate_shared_private

    return simulate_shared_private(**dict(spec.get("params") or {}))


def _pbmc68k(name: str, spec: Mapping[str, Any], cache_dir: Path) -> md.MuData:
    from .demo import pbmc68k_gene_split

    return pbmc68k_gene_split(**dict(spec.get("params") or {}))


# --------------------------------------------------------------------------------------
# files: download / local
# --------------------------------------------------------------------------------------
def _cached_files(
    name: str, spec: Mapping[str, Any], cache_dir: Path
) -> tuple[dict[str, Path], dict[str, Any]]:
    """The files of a 'download' dataset, as the download step left them in
    ``<cache_dir>/<name>`` (fetched and checksum-verified there, once): nothing is fetched or
    hashed again here."""
    files = spec.get("files") or {}
    if not files:
        raise InputError(
            f"dataset '{name}': source 'download' needs a 'files' mapping (key -> url, md5)"
        )
    wanted = wanted_files(dict(spec))
    out: dict[str, Path] = {}
    record: dict[str, Any] = {}
    for key, f in files.items():
        if key not in wanted:
            record[key] = {"url": f["url"], "skipped": "optional (set download_optional: true)"}
            continue
        path = cache_dir / name / file_name(f)
        if not path.is_file():
            raise InputError(
                f"dataset '{name}': file {path} (files.{key}, {f['url']}) is not in the download "
                "cache; fix: run the workflow's download_dataset rule for it (Snakemake does so "
                "before prepare_dataset), or call dmmvae.data.download.fetch_dataset first"
            )
        out[key] = path
        record[key] = {
            "url": f["url"],
            "path": str(path),
            **{k: f[k] for k in ("md5", "sha256") if f.get(k)},
        }
    return out, record


def _resolve(value: Any, files: Mapping[str, Path], name: str, what: str) -> Path:
    if value in files:
        return files[value]
    if files and isinstance(value, str) and not os.path.exists(value):
        raise InputError(
            f"dataset '{name}': {what} refers to '{value}', which is neither a key of 'files' "
            f"({sorted(files)}) nor an existing path; fix: use one of the file keys"
        )
    return Path(os.path.expanduser(str(value)))


def _read_modalities(
    name: str, spec: Mapping[str, Any], files: Mapping[str, Path]
) -> dict[str, ad.AnnData]:
    entries = spec.get("modalities") or {}
    if not entries:
        raise InputError(
            f"dataset '{name}': no 'modalities' given; fix: list at least one modality"
        )
    groups: dict[tuple, dict[str, str]] = {}
    single: list[tuple[str, dict]] = []
    for mod, entry in entries.items():
        entry = dict(entry)
        if "format" not in entry:
            raise InputError(f"dataset '{name}', modality '{mod}': missing 'format'")
        get_reader(entry["format"])  # unknown format -> ValueError listing the valid ones
        kind = entry.get("kind", mod)
        where = entry.get("path", entry.get("file"))
        if (
            entry["format"] in ("10x_h5", "mtx")
            and where is not None
            and not (set(entry) - _ENTRY_KEYS)
        ):
            groups.setdefault((entry["format"], str(where)), {})[mod] = kind
        else:
            single.append((mod, entry))
    out: dict[str, ad.AnnData] = {}
    for (fmt, where), mods in groups.items():
        path = _resolve(where, files, name, f"modalities {sorted(mods)}")
        kwargs: dict[str, Any] = {"modalities": mods}
        out.update(get_reader(fmt)(path, **kwargs))
    # ADT tables last: their orientation is detected against the other modalities' barcodes
    single.sort(key=lambda x: x[1]["format"] == "adt_csv")
    for mod, entry in single:
        fmt = entry["format"]
        kind = entry.get("kind", mod)
        opts = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        where = entry.get("path", entry.get("file"))
        for key in _PATH_OPTIONS:
            if key in opts:
                opts[key] = _resolve(opts[key], files, name, f"modality '{mod}' {key}")
        path = _resolve(where, files, name, f"modality '{mod}'") if where is not None else None
        if fmt == "10x_h5":
            res = get_reader(fmt)(path, modalities={mod: kind})
        elif fmt == "mtx":
            res = get_reader(fmt)(path, modalities={mod: kind}, default_kind=kind, **opts)
        elif fmt == "adt_csv":
            if "reference_barcodes" not in opts and out:
                opts["reference_barcodes"] = next(iter(out.values())).obs_names
            res = get_reader(fmt)(path, name=mod, **opts)
        elif fmt == "h5ad":
            res = get_reader(fmt)(path, name=mod, kind=entry.get("kind"))
        else:  # h5mu
            inner = opts.get("modality", mod)
            res = get_reader(fmt)(path, modalities={inner: entry.get("kind")})
            res = {mod: res[inner]}
        out.update(res)
    return {m: out[m] for m in entries}


def _labels(
    name: str, spec: Mapping[str, Any], files: Mapping[str, Path], mods: Mapping[str, ad.AnnData]
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    lab = spec.get("labels")
    if not lab:
        return None, {"labels": "none"}
    if "column" not in lab:
        raise InputError(f"dataset '{name}': labels need a 'column' (the cell-type column)")
    if "modality" in lab:
        m = lab["modality"]
        if m not in mods:
            raise InputError(f"dataset '{name}': labels.modality '{m}' is not one of {list(mods)}")
        obs = mods[m].obs
        cols = [lab["column"]] + (
            [lab["batch_column"]]
            if isinstance(lab.get("batch_column"), str)
            else list(lab.get("batch_column") or [])
        )
        missing = [c for c in cols if c not in obs]
        if missing:
            raise InputError(
                f"dataset '{name}': modality '{m}' obs has no column(s) {missing}; its columns "
                f"are {list(obs.columns)}; fix: set labels.column / labels.batch_column"
            )
        df = pd.DataFrame(index=obs.index.astype(str))
        df[LABEL] = obs[lab["column"]].astype(str).where(obs[lab["column"]].notna()).to_numpy()
        if lab.get("batch_column"):
            df[BATCH] = obs[cols[1:]].astype(str).agg("_".join, axis=1).to_numpy()
        return df, {"labels": f"obs of modality '{m}'", "column": lab["column"]}
    where = lab.get("path", lab.get("file"))
    if where is None:
        raise InputError(f"dataset '{name}': labels need 'path' (or 'file', or 'modality')")
    path = _resolve(where, files, name, "labels")
    df = read_labels(
        path,
        label_column=lab["column"],
        batch_column=lab.get("batch_column"),
        barcode_column=lab.get("barcode_column"),
        member=lab.get("member"),
        keep=lab.get("keep"),
    )
    return df, {
        "labels": str(path),
        "column": lab["column"],
        "batch_column": lab.get("batch_column"),
    }


def assemble(
    name: str,
    mods: Mapping[str, ad.AnnData],
    labels: pd.DataFrame | None,
    *,
    keep_unlabelled: bool = False,
    min_overlap: float = 0.5,
) -> tuple[md.MuData, dict[str, Any]]:
    """Inner-join barcodes of the modalities (and labels) into one aligned raw MuData."""
    sources = {m: a.obs_names for m, a in mods.items()}
    use_labels = labels is not None and not keep_unlabelled
    if labels is not None:
        labelled = labels[LABEL].notna().to_numpy()
        lab_index = labels.index[labelled] if use_labels else labels.index
        if use_labels:
            sources["labels"] = lab_index
    try:
        pos, common, report = match_barcodes(sources, min_fraction=min_overlap)
    except InputError as err:
        raise InputError(f"dataset '{name}': {err}") from None
    if labels is not None and not use_labels:  # left join: unlabelled cells -> "unknown"
        p2, _, rep2 = match_barcodes({"cells": common, "labels": labels.index}, min_fraction=0.0)
        lab = pd.DataFrame(index=common)
        lab[LABEL] = "unknown"
        lab.iloc[p2["cells"], 0] = labels[LABEL].to_numpy()[p2["labels"]]
        if BATCH in labels:
            lab[BATCH] = "unknown"
            lab.iloc[p2["cells"], 1] = labels[BATCH].to_numpy()[p2["labels"]]
        report["labels_left_join"] = rep2
    elif labels is not None:
        lab = labels.loc[lab_index].iloc[pos["labels"]].set_axis(common)
    else:
        lab = None
    out_mods = {}
    for m, a in mods.items():
        b = a[pos[m]].copy()
        b.obs_names = common
        out_mods[m] = b
    with md.set_options(pull_on_update=False):
        mdata = md.MuData(out_mods)
    obs = pd.DataFrame(index=common)
    if lab is not None:
        for c in lab.columns:
            obs[c] = pd.Categorical(lab[c].astype(str).to_numpy())
    mdata.obs = obs
    return mdata, report


def _files_source(name: str, spec: Mapping[str, Any], cache_dir: Path) -> md.MuData:
    files: dict[str, Path] = {}
    file_record: dict[str, Any] = {}
    if spec["source"] == "download":
        files, file_record = _cached_files(name, spec, cache_dir)
    mods = _read_modalities(name, spec, files)
    labels, label_record = _labels(name, spec, files, mods)
    lab_spec = spec.get("labels") or {}
    mdata, report = assemble(
        name,
        mods,
        labels,
        keep_unlabelled=bool(lab_spec.get("keep_unlabelled", False)),
        min_overlap=float(spec.get("min_barcode_overlap", 0.5)),
    )
    mdata.uns[PROVENANCE] = {
        "source": spec["source"],
        "dataset": name,
        "description": spec.get("description", ""),
        "files": file_record
        or {m: a.uns.get(READER_NOTES, {}).get("file", "") for m, a in mods.items()},
        "readers": {m: list(a.uns.get(READER_NOTES, {}).get("notes", [])) for m, a in mods.items()},
        "labels": {k: v for k, v in label_record.items() if v is not None},
        "barcodes": report,
    }
    for m in mdata.mod:
        mdata.mod[m].uns.pop(READER_NOTES, None)
    return mdata


def download_filenames(spec: Mapping[str, Any]) -> list[str]:
    """Cache file names of a 'download' dataset (optional files only with download_optional)."""
    if spec.get("source") != "download":
        return []
    return [file_name(f) for f in wanted_files(dict(spec)).values()]


def local_input_paths(spec: Mapping[str, Any]) -> list[str]:
    """Every file a 'local' dataset reads (for Snakemake rule inputs)."""
    if spec.get("source") != "local":
        return []
    paths: list[str] = []
    for entry in (spec.get("modalities") or {}).values():
        for key in ("path", *_PATH_OPTIONS):
            if entry.get(key) is not None:
                paths.append(str(entry[key]))
    lab = spec.get("labels") or {}
    if lab.get("path"):
        paths.append(str(lab["path"]))
    return list(dict.fromkeys(paths))


SOURCES: dict[str, Callable[[str, Mapping[str, Any], Path], md.MuData]] = {
    "synthetic": _synthetic,
    "pbmc68k_genesplit": _pbmc68k,
    "download": _files_source,
    "local": _files_source,
}


def prepare_dataset(
    name: str, spec: Mapping[str, Any], *, cache_dir: str | os.PathLike
) -> md.MuData:
    """Build the raw-count MuData of dataset ``name`` from its config ``spec``.

    ``cache_dir``: the download cache; a 'download' dataset's files must already be there
    (:func:`dmmvae.data.download.fetch_dataset`, or the workflow's download_dataset rule)."""
    source = spec.get("source")
    if source not in SOURCES:
        raise ValueError(
            f"dataset '{name}': unknown source '{source}'; valid sources are {sorted(SOURCES)}"
        )
    mdata = SOURCES[source](name, spec, Path(cache_dir))
    if mdata.n_obs == 0:
        raise InputError(f"dataset '{name}': no cells after reading; fix: check the input files")
    prov = dict(mdata.uns.get(PROVENANCE, {}))
    prov.setdefault("dataset", name)
    prov["source_kind"] = source
    mdata.uns[PROVENANCE] = prov
    log.info(
        "dataset %s: %d cells, modalities %s",
        name,
        mdata.n_obs,
        {m: a.n_vars for m, a in mdata.mod.items()},
    )
    return mdata


__all__ = ["SOURCES", "assemble", "download_filenames", "local_input_paths", "prepare_dataset"]
