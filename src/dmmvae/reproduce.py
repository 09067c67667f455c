"""Published claims as data, and the comparison of our measurements with them.

A claim file (``config/reproduce/<paper>.yaml``) holds the paper, its source, the dataset,
the protocol, the metrics and a list of ``claims``; each claim has an ``id`` and a
``published`` value, either a number (with an optional ``sd``: the spread the paper reports)
or a qualitative outcome (a string such as ``"keeps"`` / ``"drops"``).

- :func:`load_claims` reads and validates a claim file (a missing key fails with an error
  naming the file and the key).
- :func:`verdict` compares one published value with ours.
- :func:`reproduction_table` lays the claims and our measurements side by side.

Pure: no model, no data; only ``yaml`` and ``pandas``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

#: top-level keys every claim file must have
REQUIRED_KEYS = ("paper", "source", "dataset", "protocol", "metrics", "claims")
#: keys every entry of ``claims`` must have
REQUIRED_CLAIM_KEYS = ("id", "published")
#: relative tolerance used when the published value has no sd
RELATIVE_TOLERANCE = 0.10

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
TABLE_COLUMNS = ["published", "ours", "abs_difference", "verdict", "note"]


class ClaimsError(ValueError):
    """A claim file is missing a key or has the wrong shape."""


def load_claims(path: str | Path) -> dict[str, Any]:
    """Read a claim file and check its required keys.

    Raises :class:`ClaimsError` naming the file and the missing key (``claims[2].published``
    for a key missing from the third claim).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ClaimsError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, Mapping):
        raise ClaimsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ClaimsError(f"{path}: missing required key '{key}'")
    claims = data["claims"]
    if not isinstance(claims, list) or not claims:
        raise ClaimsError(f"{path}: 'claims' must be a non-empty list")
    seen: set[str] = set()
    for i, claim in enumerate(claims):
        if not isinstance(claim, Mapping):
            raise ClaimsError(f"{path}: claims[{i}] must be a mapping")
        for key in REQUIRED_CLAIM_KEYS:
            if key not in claim:
                raise ClaimsError(f"{path}: missing required key 'claims[{i}].{key}'")
        if claim["id"] in seen:
            raise ClaimsError(f"{path}: duplicate claim id '{claim['id']}'")
        seen.add(claim["id"])
    return dict(data)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def verdict(published: Any, sd: float | None, ours: Any, reason: str = "") -> tuple[str, str]:
    """``(verdict, note)`` for one claim.

    - ``ours is None``: ``"not run"`` (note: ``reason`` or "no measurement").
    - numbers: ``"reproduced"`` when ``|ours - published| <= sd`` (or, without an sd,
      ``<= 10 %`` of ``|published|``); otherwise ``"not reproduced"`` with the gap.
    - qualitative (``published`` a string): ``"reproduced"`` when ``ours`` is the same string.
    """
    if ours is None or (_is_number(ours) and math.isnan(ours)):
        return NOT_RUN, reason or "no measurement"
    if isinstance(published, str) or isinstance(ours, str):
        if str(ours) == str(published):
            return REPRODUCED, f"qualitative: published '{published}', ours '{ours}'"
        return NOT_REPRODUCED, f"qualitative: published '{published}', ours '{ours}'"
    if not (_is_number(published) and _is_number(ours)):
        raise TypeError(f"verdict: cannot compare published={published!r} with ours={ours!r}")
    gap = float(ours) - float(published)
    if sd is not None and not math.isnan(float(sd)):
        tol, what = float(sd), f"published sd {float(sd):g}"
    else:
        tol = RELATIVE_TOLERANCE * abs(float(published))
        what = f"10 % of |published| = {tol:g} (no sd)"
    if abs(gap) <= tol:
        return REPRODUCED, f"|gap| {abs(gap):.3g} <= {what}"
    return NOT_REPRODUCED, f"gap {gap:+.3g} (ours - published) exceeds {what}"


def reproduction_table(claims: Mapping[str, Any], measured: Mapping[str, Any]) -> pd.DataFrame:
    """One row per claim (index: claim id): published | ours | abs_difference | verdict | note.

    ``claims`` is what :func:`load_claims` returns. ``measured`` maps a claim id to our value,
    or to ``{"value": ..., "note": ...}`` (the note is appended); a claim without a
    measurement gets ``"not run"``. ``abs_difference`` is NaN for qualitative claims.
    """
    rows = {}
    for claim in claims["claims"]:
        cid = claim["id"]
        entry = measured.get(cid)
        extra = ""
        if isinstance(entry, Mapping):
            extra = str(entry.get("note", "") or "")
            entry = entry.get("value")
        published = claim["published"]
        v, note = verdict(published, claim.get("sd"), entry,
                          reason="" if cid in measured else "not measured in this run")
        diff = (
            abs(float(entry) - float(published))
            if _is_number(entry) and _is_number(published)
            else float("nan")
        )
        if claim.get("note"):
            note = f"{note}; claim: {claim['note']}"
        if extra:
            note = f"{note}; {extra}"
        rows[cid] = {"published": published, "ours": entry, "abs_difference": diff,
                     "verdict": v, "note": note}
    return pd.DataFrame.from_dict(rows, orient="index", columns=TABLE_COLUMNS)


__all__ = [
    "NOT_REPRODUCED",
    "NOT_RUN",
    "REPRODUCED",
    "ClaimsError",
    "load_claims",
    "reproduction_table",
    "verdict",
]
