"""Snakemake adapter: every run's metrics -> the results/summary folder (tables, plots, report)."""

from pathlib import Path

from dmmvae.aggregate import aggregate
from dmmvae.logging_utils import job_log
from dmmvae.report import write_summary

with job_log(snakemake.log[0]):
    runs = list(snakemake.params.runs)
    result = aggregate(runs, config=snakemake.params.config)
    write_summary(
        result,
        Path(snakemake.output.metrics).parent,
        runs=runs,
        scenarios=list(snakemake.params.scenarios),
        config=snakemake.params.config,
        n_jobs=snakemake.threads,
    )
