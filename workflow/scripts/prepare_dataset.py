"""Snakemake adapter: build the raw MuData of one dataset from its source (downloaded files are
read from the cache the download_dataset rule filled; nothing is fetched here)."""

from dmmvae.data.prepare import prepare_dataset
from dmmvae.io import atomic_path
from dmmvae.logging_utils import job_log

with job_log(snakemake.log[0]):
    mdata = prepare_dataset(
        snakemake.wildcards.dataset,
        snakemake.params.spec,
        cache_dir=snakemake.params.download_dir,
    )
    with atomic_path(snakemake.output[0]) as tmp:
        mdata.write(tmp)
