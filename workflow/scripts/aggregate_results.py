"""Snakemake adapter: one tidy metrics table -> comparison tables, plots, report."""

from pathlib import Path

from dmmvae.aggregate import aggregate
from dmmvae.logging_utils import job_log

with job_log(snakemake.log[0]):
    aggregate(
        list(snakemake.input.metrics),
        Path(snakemake.output.metrics).parent,
        benchmark_tsvs=[*snakemake.input.train_benchmarks, *snakemake.input.eval_benchmarks],
        histories=list(snakemake.input.histories),
        predictions=list(snakemake.input.predictions),
        scenarios=list(snakemake.input.scenarios),
        config=snakemake.params.config,
        report=True,
    )
