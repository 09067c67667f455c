"""The config schema (``schemas/config.schema.yaml``): the ONE source of every default.

The Snakefile validates the workflow config against this file (``snakemake.utils.validate``
fills top-level defaults), and every resolver of the package (training loop, preprocessing,
evaluation, aggregation) takes its defaults from :func:`schema_defaults`, so a default is
written once, in the schema, next to its type and bounds.

This module imports nothing from the package (it is a leaf of the import graph), so any layer
may use it.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

#: Path of the schema file shipped with the package (the Snakefile validates against it).
SCHEMA_PATH = Path(str(files("dmmvae") / "schemas" / "config.schema.yaml"))


@cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_schema() -> dict[str, Any]:
    """A copy of the parsed schema."""
    return copy.deepcopy(_schema())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` expanded (sibling keys win over the referenced ones)."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = _schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target), **{k: v for k, v in node.items() if k != "$ref"}}


def _defaults(node: dict[str, Any]) -> Any:
    """Defaults of a schema node: its ``default`` completed by those of its properties."""
    node = _resolve(node)
    out = copy.deepcopy(node.get("default"))
    props = node.get("properties")
    if not props:
        return out
    out = dict(out or {})
    for key, sub in props.items():
        value = _defaults(sub)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**value, **out[key]}
        elif key not in out and (value is not None or "default" in _resolve(sub)):
            out[key] = value
    return out


def schema_defaults(section: str) -> dict[str, Any]:
    """The defaults of top-level config section ``section`` (a fresh, deep copy).

    >>> schema_defaults("training")["max_epochs"]
    100
    >>> schema_defaults("preprocessing")["atac"]["n_lsi"]
    50
    """
    props = _schema()["properties"]
    if section not in props:
        raise ValueError(f"config schema has no section '{section}'; sections are {sorted(props)}")
    value = _defaults(props[section])
    if not isinstance(value, dict):
        raise ValueError(f"config section '{section}' is not an object with defaults")
    return value


__all__ = ["SCHEMA_PATH", "load_schema", "schema_defaults"]
