"""Snakemake adapter: raw MuData -> preprocessed MuData (PROTOCOL normalisations and split)."""

import mudata as md

from dmmvae.data.preprocess import preprocess
from dmmvae.io import atomic_path
from dmmvae.logging_utils import job_log

with job_log(snakemake.log[0]):
    split = snakemake.params.split
    params = {**snakemake.params.preprocessing, "train_fraction": split["train_fraction"]}
    out = preprocess(
        md.read_h5mu(snakemake.input[0]), params, seed=split["seed"],
        where=f"dataset '{snakemake.wildcards.dataset}'",
    )
    with atomic_path(snakemake.output[0]) as tmp:
        out.write(tmp)
