"""Snakemake adapter: mask which modalities each train cell shows (paired / diagonal / mosaic)."""

import logging

import mudata as md

from dmmvae.data.scenarios import make_scenario, scenario_summary
from dmmvae.io import atomic_path
from dmmvae.logging_utils import job_log

with job_log(snakemake.log[0]):
    scen = dict(snakemake.params.scenario)
    out = make_scenario(
        md.read_h5mu(snakemake.input[0]),
        scen.pop("kind"),
        seed=snakemake.params.seed,
        **scen,
    )
    logging.getLogger("dmmvae").info("train cells per pattern: %s", scenario_summary(out))
    with atomic_path(snakemake.output[0]) as tmp:
        out.write(tmp)
