"""Config resolution shared by the Snakefile and the tests.

The JSON schema (``src/dmmvae/schemas/config.schema.yaml``) checks shapes and fills defaults;
this module checks what a schema cannot: names that refer to other sections, model
parameters against the model registry, and sweep expansion into named variants.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.demo import HALF_A, HALF_B
from .data.prepare import local_input_paths
from .data.synthetic import DEFAULT_MODALITIES
from .methods import MODELS, PAIR_RECIPES, with_recipe

SWEEP_SEP = "__"


class ConfigError(ValueError):
    """A config problem; the message names the key and what was expected."""


@dataclass(frozen=True)
class Run:
    dataset: str
    scenario: str
    model: str
    seed: int


def _fmt(value: Any) -> str:
    return str(value).replace(".", "p").replace("-", "m").replace(" ", "")


def expand_models(models: Mapping[str, Mapping]) -> dict[str, dict]:
    """Expand ``sweep`` entries: ``dmmvae`` with ``sweep: {w: [0, 5]}`` -> ``dmmvae__w-0``, ``dmmvae__w-5``."""
    out: dict[str, dict] = {}
    for name, spec in models.items():
        base = {
            "model": spec["model"],
            "params": dict(spec.get("params") or {}),
            "training": dict(spec.get("training") or {}),
            "recipes": dict(spec.get("recipes") or {}),
            "resources": dict(spec.get("resources") or {}),
        }
        sweep = spec.get("sweep") or {}
        if not sweep:
            out[name] = base
            continue
        keys = list(sweep)
        for values in itertools.product(*(sweep[k] for k in keys)):
            suffix = SWEEP_SEP.join(f"{k}-{_fmt(v)}" for k, v in zip(keys, values, strict=True))
            variant = {**base, "params": {**base["params"], **dict(zip(keys, values, strict=True))}}
            out[f"{name}{SWEEP_SEP}{suffix}"] = variant
    return out


def train_resources(spec: Mapping, n_cells: int, attempt: int = 1) -> dict[str, int]:
    """SLURM resources of one training job: ``runtime`` (minutes) and ``mem_mb``.

    A base (the model's ``resources``, else 30 min and 2,000 MB) plus 1 min and 50 MB per
    1,000 cells of the dataset. A retry (a job killed for ``TIMEOUT`` or ``OUT_OF_MEMORY``)
    asks for ``runtime x attempt`` and ``mem_mb x 2^(attempt - 1)``.
    """
    own = spec.get("resources") or {}
    runtime = own.get("runtime", 30) + n_cells // 1000
    mem_mb = own.get("mem_mb", 2000) + n_cells // 20
    return {"runtime": runtime * attempt, "mem_mb": mem_mb * 2 ** (attempt - 1)}


def dataset_cells(spec: Mapping) -> int:
    """A dataset's cell count for sizing its jobs: its ``size``, else a simulated set's
    ``params.n_cells``, else 10,000."""
    return spec.get("size") or (spec.get("params") or {}).get("n_cells") or 10_000


def data_job_mem_mb(n_cells: int, attempt: int = 1) -> int:
    """Memory (MB) of a job that reads, preprocesses or scores one dataset: 2,000 MB plus
    20 MB per 1,000 cells, x attempt on a retry."""
    return (2000 + n_cells // 50) * attempt


def _select(config: Mapping, section: str, available: Iterable[str]) -> list[str]:
    available = list(available)
    chosen = (config.get("run") or {}).get(section)
    if chosen is None:
        return available
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ConfigError(
            f"config 'run.{section}' names {unknown}, which are not defined under '{section}'; "
            f"defined {section}: {sorted(available)}"
        )
    return list(chosen)


def check_models(models: Mapping[str, Mapping]) -> None:
    """Every model entry names a registry model and only parameters that model accepts."""
    for name, spec in models.items():
        if spec["model"] not in MODELS:
            raise ConfigError(
                f"config 'models.{name}.model' is '{spec['model']}', not a known model; "
                f"valid models are {sorted(MODELS)}"
            )
        try:
            MODELS[spec["model"]].validate_params(spec.get("params") or {})
        except ValueError as err:
            raise ConfigError(f"config 'models.{name}.params': {err}") from None
        for pair, recipe in (spec.get("recipes") or {}).items():
            if pair not in PAIR_RECIPES.values():
                raise ConfigError(
                    f"config 'models.{name}.recipes' names the pair '{pair}'; valid pairs are "
                    f"{sorted(PAIR_RECIPES.values())} (rna_atac: RNA+ATAC, cite: RNA+ADT)"
                )
            try:  # what runs on that pair: the entry's parameters with the recipe's on top
                MODELS[spec["model"]].validate_params(
                    with_recipe(spec.get("params"), recipe, "params"))
            except ValueError as err:
                raise ConfigError(f"config 'models.{name}.recipes.{pair}.params': {err}") from None


def dataset_modalities(spec: Mapping) -> list[str] | None:
    """Modalities a dataset entry declares (None when only known after reading the data)."""
    if spec.get("modalities"):
        return list(spec["modalities"])
    if spec["source"] == "synthetic":
        return list((spec.get("params") or {}).get("modalities") or DEFAULT_MODALITIES)
    if spec["source"] == "pbmc68k_genesplit":
        return [HALF_A, HALF_B]
    return None


def load_config(path: str | Path) -> dict:
    """A config file read, checked against the schema (defaults filled in, as Snakemake's
    ``validate`` does) and its models against the registry: what scripts outside the workflow
    (the benchmarks) use to read the shipped configs."""
    import yaml
    from snakemake.utils import validate

    from .schema import SCHEMA_PATH

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the config ({err}); fix: give a readable YAML file") from None
    try:
        validate(config, str(SCHEMA_PATH))
    except Exception as err:  # snakemake's WorkflowError: a title, then jsonschema's reason
        reason = " ".join(line.strip() for line in str(err).splitlines()[:4] if line.strip())
        raise ConfigError(f"{path}: {reason[:600]}; fix: correct that key (the schema "
                          "src/dmmvae/schemas/config.schema.yaml lists the valid ones)") from None
    check_models(expand_models(config["models"]))
    return config


def resolve_runs(config: Mapping) -> list[Run]:
    """The grid datasets x scenarios x models x seeds selected by ``run`` (minus exclusions).

    Methods that need paired train cells (``needs_pairs``, e.g. CCA) are left out of scenarios
    with no paired train cells (diagonal), and the diagonal controls (``needs_unpaired``:
    ``linked_cca``, ``gw_ot``; PROTOCOL "diagonal and mosaic") out of scenarios where every train
    cell shows every modality (paired), where they are not applicable.
    """
    models = expand_models(config["models"])
    check_models(models)
    datasets = _select(config, "datasets", config["datasets"])
    scenarios = _select(config, "scenarios", config["scenarios"])
    base_names = _select(config, "models", config["models"])
    chosen_models = [m for m in models if m.split(SWEEP_SEP)[0] in base_names]
    excludes = (config.get("run") or {}).get("exclude") or []
    runs = []
    for ds, sc, mo, seed in itertools.product(datasets, scenarios, chosen_models, config["seeds"]):
        if any(
            all(ex.get(k) in (None, v) for k, v in (("dataset", ds), ("scenario", sc), ("model", mo)))
            for ex in excludes
        ):
            continue
        scen = config["scenarios"][sc]
        method = MODELS[models[mo]["model"]]
        kind = None if scen.get("patterns") else scen["kind"]  # custom patterns: a mosaic
        if (kind == "diagonal" and method.needs_pairs) or (kind == "paired" and method.needs_unpaired):
            continue
        runs.append(Run(ds, sc, mo, int(seed)))
    if not runs:
        raise ConfigError("the config selects no run: check 'run', 'datasets', 'scenarios', 'models'")
    return runs


def check_scenarios(config: Mapping, runs: Iterable[Run]) -> None:
    """Custom patterns must only name modalities the dataset has (when known up front)."""
    for ds, sc in sorted({(r.dataset, r.scenario) for r in runs}):
        mods = dataset_modalities(config["datasets"][ds])
        if mods is None:
            continue
        for p in config["scenarios"][sc].get("patterns") or []:
            missing = sorted(set(p["modalities"]) - set(mods))
            if missing:
                raise ConfigError(
                    f"config 'scenarios.{sc}.patterns' names modalities {missing} that dataset "
                    f"'{ds}' lacks (it has {mods}); exclude the pair under 'run.exclude'"
                )


def merged(defaults: Mapping | None, override: Mapping | None) -> dict:
    return {**(defaults or {}), **(override or {})}


def check_local_paths(config: Mapping, runs: Iterable[Run], root: str | Path = ".") -> None:
    """Every file of the selected ``local`` datasets exists, checked before the DAG is built.

    Snakemake cannot build a missing input file, so without this check a checkout that still
    holds an earlier run's ``results/summary`` would answer "Nothing to be done" and show the
    stale results instead of saying that the file is missing.
    """
    for ds in sorted({r.dataset for r in runs}):
        spec = config["datasets"][ds]
        for path in [*local_input_paths(spec), *annotation_paths(spec)]:
            full = Path(root) / path
            if not full.exists():
                raise ConfigError(
                    f"dataset '{ds}': the file '{path}' does not exist (looked for "
                    f"{full.resolve()}). Fix: correct the path under 'datasets.{ds}' (relative "
                    "paths start from the directory snakemake runs in), or leave the dataset out "
                    "with 'run.datasets'."
                )


def annotation_paths(spec: Mapping) -> list[str]:
    """The gene annotation file a dataset names (for RNA<->ATAC links), if any."""
    return [str(spec["gene_annotation"])] if spec.get("gene_annotation") else []


def preprocessing_params(config: Mapping, dataset: str) -> dict:
    """The preprocessing parameters of one dataset: the top-level ``preprocessing``, the
    dataset's own overrides (per modality kind), and its ``gene_annotation`` /
    ``protein_gene`` as ``links`` parameters."""
    spec = config["datasets"][dataset]
    out = {k: dict(v) if isinstance(v, Mapping) else v
           for k, v in (config.get("preprocessing") or {}).items()}
    for key, val in (spec.get("preprocessing") or {}).items():
        out[key] = {**out.get(key, {}), **val} if isinstance(val, Mapping) else val
    links = dict(out.get("links") or {})
    if spec.get("gene_annotation"):
        links["gene_annotation"] = str(spec["gene_annotation"])
    if spec.get("protein_gene"):
        links["protein_gene"] = {**links.get("protein_gene", {}), **spec["protein_gene"]}
    if links:
        out["links"] = links
    return out
