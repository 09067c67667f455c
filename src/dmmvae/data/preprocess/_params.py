"""Preprocessing parameters: the config schema's defaults overlaid with the caller's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...schema import schema_defaults


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults (the config schema's ``preprocessing`` and ``split.train_fraction``) overlaid
    with ``params``; unknown keys -> ValueError listing the valid ones."""
    out = {
        "train_fraction": schema_defaults("split")["train_fraction"],
        **schema_defaults("preprocessing"),
    }
    for key, val in dict(params or {}).items():
        if key not in out:
            raise ValueError(f"unknown preprocessing parameter '{key}'; valid: {sorted(out)}")
        if isinstance(out[key], dict):
            if not isinstance(val, Mapping):
                raise ValueError(f"preprocessing parameter '{key}' must be a mapping, got {val!r}")
            for sub, v in val.items():
                if sub not in out[key]:
                    raise ValueError(
                        f"unknown preprocessing parameter '{key}.{sub}'; valid: {sorted(out[key])}"
                    )
                out[key][sub] = v
        else:
            out[key] = val
    if not 0 < float(out["train_fraction"]) < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {out['train_fraction']}")
    return out
