"""Minibatches of a scenario MuData, drawn from sparse matrices (never densifying the dataset).

:func:`build_spec` reads what a model needs to build itself from the data (modalities, kinds,
widths, likelihoods, normalization statistics from TRAIN cells) into a :class:`DataSpec`.
:class:`MultimodalData` keeps, per modality, the matrix its likelihood scores (the *target*:
``layers["counts"]``, binarised counts, or ``.X``) as CSR arrays held in ``torch`` tensors
(int32 column indices; no values array at all for binary data) and densifies only the rows
of one batch, with vectorised ``torch`` indexing (no scipy call, no Python loop per row).
When the device is CUDA the arrays live on the GPU if they fit in ``max_device_bytes``;
otherwise batches are built on the CPU in pinned memory and copied with ``non_blocking``.

A batch is a dict (the contract every model reads):

- ``x[mod]``: float ``(B, F_mod)``, the likelihood target of the batch rows; rows where the
  modality is hidden are all zeros and MUST be masked by the model (never read as data).
- ``mask[mod]``: bool ``(B,)``, True where the cell shows the modality.
- ``library[mod]``: float ``(B, 1)``, observed total of the target over the modelled features
  (count targets; ones otherwise).
- ``label``: long ``(B,)``, label index or -1 (unknown / not given to the model).
- ``index``: long ``(B,)``, row numbers of the cells in the MuData.
- ``nonzero[mod]`` (sparse count targets on CPU only; optional for hand-made batches):
  ``((row, col), values)``, the stored entries of ``x[mod]`` (visible rows), so that the
  likelihoods need not search the dense batch for them (see :func:`.likelihoods.nonzero_entries`).
Only the modalities requested (all of them in training) appear in ``x``/``mask``/``library``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import mudata as md
import numpy as np
import scipy.sparse as sp
import torch

from ...constants import (
    BATCH_KEYS,
    COUNTS,
    LABEL,
    LIBRARY,
    MODALITY_KIND,
    MODALITY_KINDS,
    SPLIT,
    TRAIN,
    visible_key,
)
from ...data.links import LINKS
from ...io import InputError
from ..modules.likelihoods import DEFAULT_LIKELIHOOD, get_likelihood
from ..modules.spec import DataSpec, ModalitySpec


def _source(mdata: md.MuData) -> str:
    return str(getattr(mdata, "filename", None) or "the scenario MuData")


def modality_kind(mdata: md.MuData, mod: str) -> str:
    kind = mdata.mod[mod].uns.get(MODALITY_KIND, mod if mod in MODALITY_KINDS else None)
    if kind not in MODALITY_KINDS:
        raise InputError(
            f"{_source(mdata)}: modality '{mod}' has uns['{MODALITY_KIND}']={kind!r}; expected one "
            f"of {list(MODALITY_KINDS)}. Fix: preprocess the dataset with dmmvae.data.preprocess."
        )
    return str(kind)


def _target_matrix(mdata: md.MuData, mod: str, target: str, lik_name: str):
    a = mdata.mod[mod]
    if target == "values":
        return a.X
    counts = a.layers[COUNTS] if COUNTS in a.layers else None
    if target == "counts":
        if counts is None:
            raise InputError(
                f"{_source(mdata)}: likelihood '{lik_name}' of modality '{mod}' needs raw counts in "
                f"layers['{COUNTS}'], which this modality lacks. Fix: choose the 'gaussian' "
                f"likelihood for it (params.likelihoods: {{{mod}: gaussian}})."
            )
        return counts
    src = counts if counts is not None else a.X
    if sp.issparse(src):
        src = sp.csr_matrix(src)  # shares the arrays of a CSR input
        if src.has_canonical_format and np.all(src.data > 0):
            # binary view sharing the index arrays: only a ones array is new
            ones = np.ones(src.nnz, dtype=np.float32)
            return sp.csr_matrix((ones, src.indices, src.indptr), shape=src.shape, copy=False)
        out = sp.csr_matrix(src, dtype=np.float32, copy=True)
        out.data = (out.data > 0).astype(np.float32)
        out.eliminate_zeros()
        return out
    return (np.asarray(src) > 0).astype(np.float32)


def build_spec(
    mdata: md.MuData,
    likelihoods: Mapping[str, str] | None = None,
    modalities: Sequence[str] | None = None,
) -> DataSpec:
    """Resolve modalities, kinds and likelihoods; statistics come from TRAIN cells only."""
    likelihoods = dict(likelihoods or {})
    mods = list(modalities or mdata.mod)
    # a key is a modality of the data, or a modality kind (every modality of that kind; none
    # when the data has no modality of it, so one model config serves RNA+ADT and RNA+ATAC)
    unknown = sorted(set(likelihoods) - set(mods) - set(MODALITY_KINDS))
    if unknown:
        raise ValueError(f"params.likelihoods names modalities {unknown}; the data has {mods} "
                         f"(a key may also be a modality kind: {list(MODALITY_KINDS)})")
    if SPLIT not in mdata.obs:
        raise InputError(f"{_source(mdata)}: obs['{SPLIT}'] is missing. Fix: run preprocessing.")
    train = mdata.obs[SPLIT].to_numpy() == TRAIN
    specs = {}
    for m in mods:
        kind = modality_kind(mdata, m)
        lik_name = likelihoods.get(m, likelihoods.get(kind, DEFAULT_LIKELIHOOD[kind]))
        lik = get_likelihood(lik_name)
        kept = 1.0
        a = mdata.mod[m]
        totals = np.ones(1)
        if lik.target == "counts":  # statistics of count targets only (no copy of X)
            X = _target_matrix(mdata, m, lik.target, lik_name)
            if train.any():
                totals = np.asarray(X.sum(1), dtype=np.float64).ravel()[train]
        if lik.target == "counts" and LIBRARY in a.obs:
            lib_all = a.obs[LIBRARY].to_numpy(dtype=float)[train]
            ok = lib_all > 0
            if ok.any():
                kept = float(np.clip(np.median(totals[ok] / lib_all[ok]), 1e-6, 1.0))
        specs[m] = ModalitySpec(
            name=m,
            kind=kind,
            likelihood=lik_name,
            target=lik.target,
            n_features=int(a.n_vars),
            kept_fraction=kept,
            median_library=float(max(np.median(totals), 1.0)) if lik.target == "counts" else 1.0,
            feature_names=[str(v) for v in a.var_names],
        )
    labels: list[str] = []
    if LABEL in mdata.obs:
        labels = sorted(str(v) for v in mdata.obs[LABEL].dropna().unique())
    links = {}
    for entry in (mdata.uns.get(LINKS) or {}).values():
        a, b = str(entry["src"]), str(entry["tgt"])
        if a in specs and b in specs and len(entry["i"]):
            links[(a, b)] = tuple(np.asarray(entry[k]).tolist() for k in ("i", "j", "w"))
    return DataSpec(specs, labels, links)


class _Rows:
    """Rows of one matrix as torch tensors (CSR triplets or dense); gathers batches."""

    def __init__(self, X, device: torch.device) -> None:
        self.sparse = sp.issparse(X)
        if self.sparse:
            X = sp.csr_matrix(X)
            X.sum_duplicates()  # also sorts the column indices
            self.n_cols = X.shape[1]
            self.indptr = torch.as_tensor(X.indptr.astype(np.int64, copy=False), device=device)
            self.indices = torch.as_tensor(X.indices.astype(np.int32, copy=False), device=device)
            data = np.asarray(X.data, dtype=np.float32)
            self.data = None if np.all(data == 1.0) else torch.as_tensor(data, device=device)
            self._row_sums = None
            if self.data is not None:  # row totals by scipy's CSR mat-vec (no nnz-long arrays)
                sums = np.asarray(X.sum(axis=1), dtype=np.float32).ravel()
                self._row_sums = torch.as_tensor(sums, device=device)
        else:
            self.dense = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
            self.n_cols = self.dense.shape[1]

    @property
    def nbytes(self) -> int:
        if self.sparse:
            n = self.indptr.numel() * 8 + self.indices.numel() * 4
            return n + (self.data.numel() * 4 if self.data is not None else 0)
        return self.dense.numel() * 4

    def row_sums(self) -> torch.Tensor:
        if not self.sparse:
            return self.dense.sum(1)
        if self._row_sums is not None:
            return self._row_sums
        return (self.indptr[1:] - self.indptr[:-1]).to(torch.float32)  # binary: entries per row

    def gather(self, rows: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Dense ``(len(rows), n_cols)``; rows where ``keep`` is False stay all-zero."""
        return self.gather_with_entries(rows, keep)[0]

    def gather_with_entries(
        self, rows: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor] | None]:
        """``gather`` plus, for sparse storage, its stored entries ``((row, col), values)``
        (the ``nonzero_entries`` form the likelihoods reuse; None for dense storage)."""
        if not self.sparse:
            out = self.dense.index_select(0, rows)
            return (out if keep is None else out * keep.unsqueeze(1).to(out.dtype)), None
        start = self.indptr[rows]
        lens = self.indptr[rows + 1] - start
        if keep is not None:
            lens = torch.where(keep, lens, torch.zeros_like(lens))
        total = int(lens.sum())
        n = len(rows)
        out = torch.zeros(n * self.n_cols, device=rows.device)
        row_ids = torch.repeat_interleave(torch.arange(n, device=rows.device), lens, output_size=total)
        # position of each entry in the CSR arrays: its row's start + its rank within the row
        shift = (start - (torch.cumsum(lens, 0) - lens)).repeat_interleave(lens, output_size=total)
        pos = torch.arange(total, device=rows.device) + shift
        cols = self.indices[pos].long()
        flat = row_ids * self.n_cols + cols
        if self.data is None:
            out.index_fill_(0, flat, 1.0)
            vals = torch.ones(total, device=rows.device)
        else:
            vals = self.data[pos]
            out.index_copy_(0, flat, vals)
        return out.view(n, self.n_cols), ((row_ids, cols), vals)


class MultimodalData:
    """Batch source over ALL cells of a scenario MuData (train/validation/test chosen by index)."""

    def __init__(
        self,
        mdata: md.MuData,
        spec: DataSpec,
        device: str | torch.device = "cpu",
        *,
        max_device_bytes: int = 2 << 30,
    ) -> None:
        self.device = torch.device(device)
        self.spec = spec
        self.n_obs = mdata.n_obs
        self.obs_names = np.asarray(mdata.obs_names).astype(str)
        mats = {}
        for m, ms in spec.modalities.items():
            if m not in mdata.mod:
                raise InputError(
                    f"{_source(mdata)}: modality '{m}' missing; the model was built for {spec.names}"
                )
            mats[m] = _target_matrix(mdata, m, ms.target, ms.likelihood)
        cpu = torch.device("cpu")
        self.rows = {m: _Rows(X, cpu) for m, X in mats.items()}
        total = sum(r.nbytes for r in self.rows.values())
        self.store = self.device if self.device.type != "cpu" and total <= max_device_bytes else cpu
        if self.store != cpu:
            self.rows = {m: _Rows(X, self.store) for m, X in mats.items()}
        self.pin = self.device.type == "cuda" and self.store == cpu
        self.library = {
            m: (
                self.rows[m].row_sums()
                if ms.target == "counts"
                else torch.ones(self.n_obs, device=self.store)
            )
            for m, ms in spec.modalities.items()
        }
        vis = {}
        for m in spec.modalities:
            key = visible_key(m)
            if key in mdata.obs:
                vis[m] = mdata.obs[key].to_numpy(bool)
            else:  # no scenario mask: every train cell shows everything
                vis[m] = mdata.obs[SPLIT].to_numpy() == TRAIN
        self.visible = {m: torch.as_tensor(v, device=self.store) for m, v in vis.items()}
        codes = np.full(self.n_obs, -1, dtype=np.int64)
        if LABEL in mdata.obs and spec.labels:
            lab = mdata.obs[LABEL].astype(object).to_numpy()
            lookup = {v: i for i, v in enumerate(spec.labels)}
            codes = np.array(
                [lookup.get(str(v), -1) if v == v else -1 for v in lab], dtype=np.int64
            )
        self.all_labels = codes
        #: labels the model may see (semi-supervised); -1 elsewhere. Set by the training loop.
        self.given_labels = torch.full((self.n_obs,), -1, dtype=torch.long, device=self.store)

    def set_given_labels(self, cells: np.ndarray) -> None:
        """Reveal the labels of ``cells`` to the model (semi-supervised option)."""
        g = np.full(self.n_obs, -1, dtype=np.int64)
        g[cells] = self.all_labels[cells]
        self.given_labels = torch.as_tensor(g, device=self.store)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device:
            return t
        if self.pin:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def batch(self, rows: torch.Tensor, mods: Sequence[str] | None = None) -> dict[str, Any]:
        """One batch of ``rows``; ``mods=None``: scenario masks, else those modalities all shown."""
        use = list(mods) if mods is not None else list(self.spec.modalities)
        x, mask, lib, nonzero = {}, {}, {}, {}
        for m in use:
            keep = self.visible[m][rows] if mods is None else None
            dense, entries = self.rows[m].gather_with_entries(rows, keep)
            x[m] = self._to_device(dense)
            if keep is None:
                keep = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
            mask[m] = self._to_device(keep)
            lib[m] = self._to_device(self.library[m][rows].unsqueeze(1) * keep.unsqueeze(1))
            counts = self.spec.modalities[m].target == "counts"
            if entries is not None and counts and self.device.type == "cpu":
                (r, c), v = entries
                nonzero[m] = ((self._to_device(r), self._to_device(c)), self._to_device(v))
        return {
            BATCH_KEYS.X: x,
            BATCH_KEYS.MASK: mask,
            BATCH_KEYS.LIBRARY: lib,
            BATCH_KEYS.NONZERO: nonzero,
            BATCH_KEYS.LABEL: self._to_device(self.given_labels[rows]),
            BATCH_KEYS.INDEX: self._to_device(rows),
        }

    def batches(
        self,
        cells: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        mods: Sequence[str] | None = None,
        min_last: int = 1,
    ) -> Iterator[dict[str, Any]]:
        """Iterate over ``cells`` (row numbers) in batches; a last batch smaller than
        ``min_last`` is merged into the previous one (batch norm needs >= 2 rows)."""
        idx = torch.as_tensor(np.asarray(cells, dtype=np.int64))
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        idx = idx.to(self.store)
        bounds = list(range(0, len(idx), batch_size)) + [len(idx)]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < min_last:
            bounds.pop(-2)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            yield self.batch(idx[a:b], mods)


__all__ = ["DataSpec", "ModalitySpec", "MultimodalData", "build_spec", "modality_kind"]
