"""Cell barcodes: does a set of labels look like barcodes, and the inner join of the barcodes
of several sources."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ...io import InputError

_BARCODE_RE = re.compile(r"^[ACGTN]{6,}([-_.].*)?$|^.*[-_][ACGTN]{6,}([-_.].*)?$")


def _looks_like_barcodes(labels: pd.Index) -> float:
    labels = pd.Index(labels).astype(str)
    if len(labels) == 0:
        return 0.0
    sample = labels[: min(len(labels), 200)]
    return float(np.mean([bool(_BARCODE_RE.match(s)) for s in sample]))


def _strip_suffix(index: pd.Index) -> pd.Index:
    return pd.Index(index.astype(str).str.replace(r"-\d+$", "", regex=True))


def match_barcodes(
    sources: Mapping[str, pd.Index], *, min_fraction: float = 0.5
) -> tuple[dict[str, np.ndarray], pd.Index, dict[str, Any]]:
    """Inner join of the barcodes of several sources (modalities, labels).

    Returns, for each source, the positions of the common cells (in the order of the first
    source), the common barcodes (as the first source spells them) and a report. Exact match
    first; when that matches too few cells, barcodes are compared without a trailing "-N"
    (CellRanger GEM-well suffix), and the report says so. Fewer than ``min_fraction`` of the
    smallest source matched -> InputError with counts and examples from each side.
    """
    names = list(sources)
    idx = {k: pd.Index(v).astype(str) for k, v in sources.items()}
    smallest = min(len(v) for v in idx.values())
    need = max(1, int(np.ceil(min_fraction * smallest)))

    def _common(keys: dict[str, pd.Index]) -> pd.Index:
        common = keys[names[0]]
        for k in names[1:]:
            common = common[common.isin(keys[k])]
        return common

    rule = "exact"
    keys = idx
    common = _common(keys)
    if len(common) < need:
        stripped = {k: _strip_suffix(v) for k, v in idx.items()}
        if all(v.is_unique for v in stripped.values()):
            c2 = _common(stripped)
            if len(c2) > len(common):
                keys, common, rule = stripped, c2, "after removing a trailing '-N' suffix"
    if len(common) < need:
        pair = []
        for k in names[1:]:
            n_pair = int(idx[names[0]].isin(idx[k]).sum())
            pair.append(f"'{names[0]}' vs '{k}': {n_pair} matched")
        examples = "; ".join(f"{k}: {idx[k][:3].tolist()}" for k in names)
        raise InputError(
            f"barcodes do not match: {len(common)} cells are common to {names} "
            f"(sizes {[len(idx[k]) for k in names]}; {', '.join(pair)}; need >= {need}). "
            f"Examples: {examples}. Fix: check that the files come from the same sample/run; "
            "set 'barcode_suffix' on a modality (e.g. '-1') or 'barcode_column' on the labels so "
            "that the barcodes are spelled the same way"
        )
    positions = {k: keys[k].get_indexer(common) for k in names}
    report = {
        "rule": rule,
        "n_matched": int(len(common)),
        "n_barcodes": {k: int(len(idx[k])) for k in names},
        "n_dropped": {k: int(len(idx[k]) - len(common)) for k in names},
    }
    return positions, idx[names[0]][positions[names[0]]], report
