# D-MMVAE benchmark: datasets x scenarios x models x seeds -> metrics, tables, report.
# Run:  snakemake --cores 2 --configfile config/demo.yaml     (offline demo)
#       snakemake --cores 8                                  (full benchmark: config/config.yaml)
#       snakemake --profile workflow/profiles/slurm          (cluster)
from snakemake.utils import min_version, validate

min_version("9.0")


# config/config.yaml is the default; a config given with --configfile replaces it (never merges,
# also inside cluster jobs, which receive the --configfile but no other config flags)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



validate(config, "src/dmmvae/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        "results/summary/metrics.csv",
        "results/summary/summary.md",
        "results/summary/report.html",
    default_target: True
