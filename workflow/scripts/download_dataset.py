"""Snakemake adapter: fetch one source file of a 'download' dataset (mirror first, checksum verified)."""

from pathlib import Path

from dmmvae.data.download import fetch_dataset_file
from dmmvae.logging_utils import job_log

with job_log(snakemake.log[0]):
    out = Path(snakemake.output[0])
    fetch_dataset_file(
        snakemake.params.spec, out.name, out.parent, mirror=snakemake.params.mirror
    )
