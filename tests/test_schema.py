"""The config schema is the one source of defaults (dmmvae.schema.schema_defaults)."""

import jsonschema
import pytest

from dmmvae.schema import load_schema, schema_defaults


def test_section_defaults_cover_every_documented_key_and_validate():
    schema = load_schema()
    defs = schema["$defs"]
    training = schema_defaults("training")
    assert set(training) == set(defs["training"]["properties"])
    jsonschema.validate(training, defs["training"])
    pre = schema_defaults("preprocessing")
    assert set(pre) == set(defs["preprocessing"]["properties"])
    for kind, sub in defs["preprocessing"]["properties"].items():
        assert set(pre[kind]) == set(sub["properties"]), kind
    jsonschema.validate(pre, defs["preprocessing"])
    evaluation = schema_defaults("evaluation")
    assert set(evaluation) == set(schema["properties"]["evaluation"]["properties"])
    weights = schema_defaults("aggregation")["weights"]
    assert set(weights) == set(schema["properties"]["aggregation"]["properties"]["weights"][
        "properties"])


def test_defaults_are_fresh_copies_and_unknown_sections_fail():
    a = schema_defaults("preprocessing")
    a["rna"]["n_top_genes"] = 1
    assert schema_defaults("preprocessing")["rna"]["n_top_genes"] == 2000
    with pytest.raises(ValueError, match="no section 'trainig'"):
        schema_defaults("trainig")
