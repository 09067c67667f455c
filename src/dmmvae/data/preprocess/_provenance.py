"""Provenance helpers: package versions, and dicts cleaned for storage in ``uns``."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any

import numpy as np


def _clean_for_h5(obj: Any) -> Any:
    """Drop None values and convert tuples so a dict can be stored in ``uns``."""
    if isinstance(obj, Mapping):
        return {str(k): _clean_for_h5(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_clean_for_h5(v) for v in obj if v is not None]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "absent"
