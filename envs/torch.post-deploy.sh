#!/usr/bin/env bash
# Post-deploy script of the env file with the same name (Snakemake runs it once inside the new
# env): installs this checkout's dmmvae package (pip install --no-deps --editable, see the script).
set -euo pipefail
exec bash "${DMMVAE_ROOT:-$PWD}/envs/install-dmmvae.sh"
