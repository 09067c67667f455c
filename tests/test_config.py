"""Config validation: schema (shapes, defaults) + cross-references (names, model params, sweeps)."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from dmmvae.config import ConfigError, expand_models, resolve_runs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "src/dmmvae/schemas/config.schema.yaml")


def load(name):
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(cfg, SCHEMA)
    return cfg


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "test.yaml", "diagonal.yaml"])
def test_shipped_configs_are_valid_and_resolve(name):
    cfg = load(name)
    runs = resolve_runs(cfg)
    assert runs
    assert {r.dataset for r in runs} <= set(cfg["datasets"])


def test_schema_fills_defaults():
    cfg = load("test.yaml")
    assert cfg["data_mirror"] is None
    assert cfg["scenarios"]["paired"]["paired_fraction"] == 0.2
    assert cfg["run"] == {"exclude": []}


def test_unknown_top_level_key_is_rejected():
    cfg = load("test.yaml")
    cfg["trainig"] = {}
    with pytest.raises(Exception, match="trainig"):
        validate(cfg, SCHEMA)


def test_unknown_model_lists_valid_names():
    cfg = load("test.yaml")
    cfg["models"]["x"] = {"model": "mvea"}
    with pytest.raises(ConfigError, match=r"models\.x\.model.*valid models are \[.*'pca_cca'"):
        resolve_runs(cfg)


def test_unknown_model_parameter_is_named():
    cfg = load("test.yaml")
    cfg["models"]["random"]["params"] = {"n_dim": 3}
    with pytest.raises(ConfigError, match=r"n_dim.*valid parameters are \['n_dims'\]"):
        resolve_runs(cfg)


@pytest.mark.parametrize(("model", "params", "message"), [
    ("dmmvae", {"anchor_scope": "globl"},
     r"models\.m\.params.*unknown anchor_scope 'globl'; valid: \['batch', 'global'\]"),
    ("dmmvae", {"atac_input": "lsi_peaks"}, r"unknown atac_input 'lsi_peaks'; valid: \["),
    ("dmmvae", {"anchor_space": "gw"}, r"anchor_space 'gw' .* set anchor_scope: global"),
    ("glue", {"atac_features": "top"}, r"models\.m\.params': glue: atac_features must be one of"),
])
def test_a_misspelt_parameter_value_stops_when_the_config_is_read(model, params, message):
    cfg = load("test.yaml")
    cfg["models"]["m"] = {"model": model, "params": params}
    with pytest.raises(ConfigError, match=message):
        resolve_runs(cfg)


@pytest.mark.parametrize(("recipes", "message"), [
    ({"rna_adt": {"params": {}}}, r"models\.m\.recipes' names the pair 'rna_adt'; valid pairs are "
                                  r"\['cite', 'rna_atac'\]"),
    ({"rna_atac": {"params": {"n_latnt": 8}}},
     r"models\.m\.recipes\.rna_atac\.params'.*n_latnt.*valid parameters are"),
])
def test_a_recipe_for_an_unknown_pair_or_parameter_stops_when_the_config_is_read(recipes, message):
    cfg = load("test.yaml")
    cfg["models"]["m"] = {"model": "mvae", "recipes": recipes}
    with pytest.raises(ConfigError, match=message):
        resolve_runs(cfg)


def test_a_recipe_is_checked_on_top_of_its_entry_s_parameters():
    # anchor_refresh needs anchor_scope global: valid when the entry sets it, refused when not
    cfg = load("test.yaml")
    refresh = {"cite": {"params": {"anchor_refresh": 10}}}
    cfg["models"]["m"] = {"model": "dmmvae", "params": {"anchor_scope": "global", "anchor_space": "gw"},
                          "recipes": refresh}
    resolve_runs(cfg)
    cfg["models"]["m"] = {"model": "dmmvae", "params": {"anchor_space": "cca"}, "recipes": refresh}
    with pytest.raises(ConfigError, match=r"models\.m\.recipes\.cite\.params'.*anchor_refresh"):
        resolve_runs(cfg)


def test_the_schema_checks_a_recipe_s_keys():
    cfg = load("test.yaml")
    cfg["models"]["m"] = {"model": "mvae", "recipes": {"rna_atac": {"parms": {"n_latent": 8}}}}
    with pytest.raises(Exception, match="parms"):
        validate(cfg, SCHEMA)


def test_run_selection_with_unknown_dataset_lists_defined_ones():
    cfg = load("test.yaml")
    cfg["run"] = {"datasets": ["tinny"]}
    with pytest.raises(ConfigError, match=r"run\.datasets.*tinny.*defined datasets: \['tiny'\]"):
        resolve_runs(cfg)


def test_sweep_expands_into_named_variants():
    models = expand_models(
        {"rnd": {"model": "random", "params": {}, "sweep": {"n_dims": [2, 8]},
                 "resources": {"runtime": 90}}}
    )
    common = {"training": {}, "recipes": {}, "resources": {"runtime": 90}}
    assert models == {
        "rnd__n_dims-2": {"model": "random", "params": {"n_dims": 2}, **common},
        "rnd__n_dims-8": {"model": "random", "params": {"n_dims": 8}, **common},
    }


def test_exclusions_and_pair_methods_skip_diagonal():
    cfg = copy.deepcopy(load("test.yaml"))
    cfg["scenarios"]["diagonal"] = {"kind": "diagonal"}
    cfg["seeds"] = [0, 1]
    cfg["run"] = {"exclude": [{"model": "random", "scenario": "paired"}]}
    runs = resolve_runs(cfg)
    combos = {(r.scenario, r.model) for r in runs}
    assert ("paired", "random") not in combos
    assert ("diagonal", "random") in combos
    assert ("diagonal", "pca_cca") not in combos  # CCA needs paired train cells
    assert ("paired", "pca_cca") in combos
    assert {r.seed for r in runs} == {0, 1}


def test_diagonal_controls_skip_paired_scenarios_only():
    """PROTOCOL: linked_cca and gw_ot are controls for "diagonal and mosaic" data."""
    cfg = copy.deepcopy(load("test.yaml"))
    cfg["models"] = {m: {"model": m} for m in ("linked_cca", "gw_ot", "random")}
    cfg["scenarios"] = {"paired": {"kind": "paired"}, "diagonal": {"kind": "diagonal"},
                        "mosaic": {"kind": "mosaic"},
                        "custom": {"kind": "paired",  # patterns override the kind: a mosaic
                                   "patterns": [{"modalities": ["rna"], "fraction": 0.5},
                                                {"modalities": ["rna", "atac"], "fraction": 0.5}]}}
    combos = {(r.scenario, r.model) for r in resolve_runs(cfg)}
    for control in ("linked_cca", "gw_ot"):
        assert ("paired", control) not in combos
        assert {("diagonal", control), ("mosaic", control), ("custom", control)} <= combos
    assert {("paired", "random"), ("diagonal", "random")} <= combos


def test_patterns_naming_a_missing_modality_fail_unless_excluded():
    from dmmvae.config import check_scenarios

    cfg = load("test.yaml")
    cfg["scenarios"]["tri"] = {
        "kind": "mosaic",
        "patterns": [{"modalities": ["rna", "adt"], "fraction": 1.0}],
    }
    validate(cfg, SCHEMA)
    with pytest.raises(ConfigError, match=r"\['adt'\].*'tiny' lacks"):
        check_scenarios(cfg, resolve_runs(cfg))
    cfg["run"]["exclude"] = [{"scenario": "tri", "dataset": "tiny"}]
    check_scenarios(cfg, resolve_runs(cfg))


def test_schema_rejects_a_misspelt_training_key():
    cfg = load("test.yaml")
    cfg["training"]["max_epoch"] = 3
    with pytest.raises(Exception, match="max_epoch"):
        validate(cfg, SCHEMA)


@pytest.mark.parametrize("name", ["config.yaml", "standins.yaml", "link_fraction.yaml"])
def test_named_variants_match_the_diagonal_benchmark(name):
    # the diagonal tables come from benchmarks/bench_diagonal.py, which reads
    # config/diagonal.yaml: a variant named in another shipped config must be the model that
    # benchmark measured (same resolved parameters, same patience, same recipes per pair)
    from dmmvae.methods import build_model

    bench = expand_models(load("diagonal.yaml")["models"])
    models = expand_models(load(name)["models"])
    shared = sorted(set(bench) & set(models))
    named = {"dmmvae_global", "dmmvae_gw", "dmmvae_noanchor"}
    assert named | ({"dmmvae"} if name != "link_fraction.yaml" else set()) <= set(shared)
    for variant in shared:
        ours, theirs = models[variant], bench[variant]
        assert ours["model"] == theirs["model"], variant
        assert (build_model(ours["model"], ours["params"]).params
                == build_model(theirs["model"], theirs["params"]).params), variant
        patience = [m["training"].get("early_stopping_patience") for m in (ours, theirs)]
        assert patience[0] == patience[1], variant
        assert ours["recipes"] == theirs["recipes"], variant


def test_load_config_names_the_file_and_the_key(tmp_path):
    from dmmvae.config import ConfigError, load_config

    cfg = load("test.yaml")
    cfg["training"]["max_epoch"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="bad.yaml.*max_epoch"):
        load_config(bad)
    assert load_config(ROOT / "config" / "diagonal.yaml")["training"]["batch_size"] == 128
