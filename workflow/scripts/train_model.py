"""Snakemake adapter: train one model on one scenario; write predictions, checkpoint, history."""

from dmmvae.logging_utils import job_log
from dmmvae.train import run_training

with job_log(snakemake.log[0]):
    spec = snakemake.params.model_spec
    run_training(
        snakemake.input.mdata,
        model_name=spec["model"],
        params=spec["params"],
        training={**snakemake.params.training, "num_threads": snakemake.threads},
        seed=int(snakemake.wildcards.seed),
        device=snakemake.params.device,
        out_predictions=snakemake.output.predictions,
        out_checkpoint=snakemake.output.model,
        out_history=snakemake.output.history,
        out_run_info=snakemake.output.run_info,
        recipes=spec.get("recipes"),
    )
