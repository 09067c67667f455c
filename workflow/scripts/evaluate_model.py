"""Snakemake adapter: score one trained model on its scenario's test cells (tidy metrics CSV)."""

from dmmvae.evaluate import evaluate_run
from dmmvae.logging_utils import job_log

with job_log(snakemake.log[0]):
    w = snakemake.wildcards
    evaluate_run(
        snakemake.input.mdata,
        snakemake.input.predictions,
        snakemake.output[0],
        dataset=w.dataset,
        scenario=w.scenario,
        model=w.model,
        seed=int(w.seed),
        params=snakemake.params.evaluation,
        history_path=snakemake.input.history,
    )
