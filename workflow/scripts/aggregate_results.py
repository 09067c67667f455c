"""Snakemake adapter: one tidy metrics table -> comparison tables, plots, report."""

from dmmvae.aggregate import aggregate
from dmmvae.logging_utils import job_log

with job_log(snakemake.log[0]):
    aggregate(
        list(snakemake.input.metrics),
        out_dir="results/summary",
        runs=snakemake.params.runs,
        train_benchmarks=list(snakemake.input.train_benchmarks),
        eval_benchmarks=list(snakemake.input.eval_benchmarks),
        histories=list(snakemake.input.histories),
        predictions=list(snakemake.input.predictions),
        scenarios=list(snakemake.input.scenarios),
        config=snakemake.params.config,
    )
