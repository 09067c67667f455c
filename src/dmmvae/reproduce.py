"""Published claims as data, and the comparison of our measurements with them.

A claim file (``config/reproduce/<paper>.yaml``) holds the paper, its source, the dataset,
the protocol, the metrics and a list of ``claims``; each claim has an ``id`` and a
``published`` value, either a number (with an optional ``sd``: the spread the paper reports)
or a qualitative outcome (a string such as ``"keeps"`` / ``"drops"``).

- :func:`load_claims` reads and validates a claim file (a missing key fails with an error
  naming the file and the key).
- :func:`verdict` compares one published value with ours.
- :func:`reproduction_table` lays the claims and our measurements side by side.

Reproduction configs of the workflow (``config/reproduce/<paper>.yaml`` that are workflow
configs: ``datasets``/``scenarios``/``models`` plus a ``reproduction`` section whose claims
name the ``dataset``, ``scenario``, ``model`` and ``metric`` row they are compared with):

- :func:`apply_standins` swaps each dataset for its ``standin`` when ``use_standins`` is set
  (the same protocol on a small local data set, dataset renamed ``<name>_standin``);
- :func:`workflow_reproduction` lays the claims beside ``metrics.csv`` (mean over seeds); on
  stand-ins the verdict is ``stand-in`` (measured, not compared);
- :func:`reproduction_markdown` writes ``results/summary/reproduction.md``.

Pure: no model, no data; only ``yaml`` and ``pandas``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

#: top-level keys every claim file must have
REQUIRED_KEYS = ("paper", "source", "dataset", "protocol", "metrics", "claims")
#: keys every entry of ``claims`` must have
REQUIRED_CLAIM_KEYS = ("id", "published")
#: relative tolerance used when the published value has no sd
RELATIVE_TOLERANCE = 0.10

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
STANDIN = "stand-in"
#: suffix of a dataset replaced by its stand-in (its own results/ paths)
STANDIN_SUFFIX = "_standin"
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


# --------------------------------------------------------------------------------------------
# Reproduction configs of the workflow
# --------------------------------------------------------------------------------------------
def apply_standins(config: dict) -> None:
    """With ``use_standins: true``, replace (in place) every dataset by its ``standin`` entry,
    renamed ``<name>_standin`` (also in ``run.datasets`` / ``run.exclude``), so a stand-in
    run never shares results/ paths with the real one. A dataset without a stand-in stops with
    an error naming it."""
    if not config.get("use_standins"):
        return
    missing = [n for n, spec in config["datasets"].items() if not spec.get("standin")]
    if missing:
        raise ClaimsError(f"use_standins is set but dataset(s) {missing} have no 'standin' "
                          "entry; add one (a local dataset spec) or drop use_standins")
    config["datasets"] = {f"{n}{STANDIN_SUFFIX}": dict(spec["standin"])
                          for n, spec in config["datasets"].items()}
    run = config.get("run") or {}
    if run.get("datasets"):
        run["datasets"] = [f"{d}{STANDIN_SUFFIX}" for d in run["datasets"]]
    for ex in run.get("exclude") or []:
        if ex.get("dataset"):
            ex["dataset"] = f"{ex['dataset']}{STANDIN_SUFFIX}"


def check_workflow_claims(config: Mapping[str, Any]) -> None:
    """Every claim of ``reproduction.claims`` names a defined dataset, scenario and model, and
    the claim ids are unique (the schema checks the shape)."""
    rep = config.get("reproduction")
    if not rep:
        return
    suffix = STANDIN_SUFFIX if config.get("use_standins") else ""
    seen: set[str] = set()
    for i, c in enumerate(rep["claims"]):
        if c["id"] in seen:
            raise ClaimsError(f"reproduction.claims[{i}]: duplicate claim id '{c['id']}'")
        seen.add(c["id"])
        for key, section, name in (("dataset", "datasets", c["dataset"] + suffix),
                                   ("scenario", "scenarios", c["scenario"]),
                                   ("model", "models", c["model"])):
            if name not in config[section]:
                raise ClaimsError(
                    f"reproduction.claims[{i}] ('{c['id']}'): {key} '{c[key]}' is not defined "
                    f"under '{section}' (defined: {sorted(config[section])})")


def workflow_reproduction(config: Mapping[str, Any], metrics: pd.DataFrame) -> pd.DataFrame:
    """The claims of ``config['reproduction']`` beside our values from ``metrics`` (the tidy
    table): one row per claim with ``id, dataset, scenario, model, metric, published, sd,
    ours, ours_sd, n_seeds, abs_difference, verdict, note``. Empty without a reproduction
    section."""
    cols = ["id", "dataset", "scenario", "model", "metric", "published", "sd", "ours",
            "ours_sd", "n_seeds", "abs_difference", "verdict", "note"]
    rep = config.get("reproduction")
    if not rep:
        return pd.DataFrame(columns=cols)
    standin = bool(config.get("use_standins"))
    rows = []
    for c in rep["claims"]:
        ds = c["dataset"] + (STANDIN_SUFFIX if standin else "")
        run = metrics[(metrics["dataset"] == ds) & (metrics["scenario"] == c["scenario"])
                      & (metrics["model"] == c["model"])]
        vals = pd.to_numeric(run.loc[run["metric"] == c["metric"], "value"], errors="coerce")
        vals = vals[np.isfinite(vals)]
        failed = run[run["metric"] == "failed"]
        ours = float(vals.mean()) if len(vals) else None
        sd = c.get("sd")
        if ours is None:
            why = ("; ".join(sorted(set(failed["reason"].astype(str)))) if len(failed)
                   else "no such row in metrics.csv (not in this run's grid, or the metric "
                        "does not apply)")
            v, note = NOT_RUN, why
        elif standin:
            v, note = STANDIN, (f"measured on the stand-in '{ds}' under the same protocol; "
                                "not comparable with the published value")
        else:
            v, note = verdict(c["published"], sd, ours)
        if c.get("note"):
            note = f"{note}; claim: {c['note']}"
        diff = (abs(ours - float(c["published"]))
                if ours is not None and _is_number(c["published"]) else float("nan"))
        rows.append({"id": c["id"], "dataset": ds, "scenario": c["scenario"],
                     "model": c["model"], "metric": c["metric"], "published": c["published"],
                     "sd": sd, "ours": ours,
                     "ours_sd": float(vals.std()) if len(vals) > 1 else float("nan"),
                     "n_seeds": len(vals), "abs_difference": diff, "verdict": v,
                     "note": note})
    return pd.DataFrame(rows, columns=cols)


def _cell(v: Any, digits: int = 4) -> str:
    if v is None or (_is_number(v) and math.isnan(float(v))):
        return ""
    return f"{float(v):.{digits}g}" if _is_number(v) else str(v)


def reproduction_markdown(config: Mapping[str, Any], table: pd.DataFrame) -> str:
    """``results/summary/reproduction.md``: the paper, the claims table, the verdict rule."""
    rep = config.get("reproduction")
    if not rep:
        return ("# Reproduction\n\nThis config carries no published numbers. The reproduction "
                "configs are in `config/reproduce/` (README, \"Reproducing papers\").\n")
    paper = rep.get("paper") or {}
    lines = [f"# Reproduction: {paper.get('title', '?')}", ""]
    for key in ("authors", "venue", "benchmark"):
        if paper.get(key):
            val = paper[key]
            lines.append(f"- {key}: {', '.join(val) if isinstance(val, list) else val}")
    if config.get("use_standins"):
        lines += ["", "**Stand-in run**: every dataset was replaced by its local stand-in "
                  "(`use_standins: true`); the verdict column says `stand-in` and no published "
                  "number is compared."]
    lines += ["", "Verdict: `reproduced` when |ours - published| <= the published sd, or 10 % "
              "of |published| where no sd is given; `not reproduced` otherwise; `not run` with "
              "the reason. Ours = mean over seeds (sd over seeds beside it).", "",
              "| claim | dataset | scenario | model | metric | published | ours | "
              "abs difference | verdict | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        pub = _cell(r["published"]) + (f" ± {_cell(r['sd'])}" if _cell(r["sd"]) else "")
        ours = _cell(r["ours"]) + (f" ± {_cell(r['ours_sd'], 2)}" if _cell(r["ours_sd"]) else "")
        if r["n_seeds"]:
            ours += f" (n={r['n_seeds']})"
        lines.append(f"| {r['id']} | {r['dataset']} | {r['scenario']} | {r['model']} | "
                     f"{r['metric']} | {pub} | {ours} | {_cell(r['abs_difference'], 3)} | "
                     f"{r['verdict']} | {r['note']} |")
    assumed = rep.get("assumptions") or []
    if assumed:
        lines += ["", "## Assumptions", ""] + [f"- {a}" for a in assumed]
    return "\n".join(lines) + "\n"


__all__ = [
    "NOT_REPRODUCED",
    "NOT_RUN",
    "REPRODUCED",
    "STANDIN",
    "STANDIN_SUFFIX",
    "ClaimsError",
    "apply_standins",
    "check_workflow_claims",
    "reproduction_markdown",
    "workflow_reproduction",
    "load_claims",
    "reproduction_table",
    "verdict",
]
