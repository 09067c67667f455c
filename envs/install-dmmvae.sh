#!/usr/bin/env bash
# Installs the dmmvae package of this checkout into the active (conda) env, editable and without
# dependencies: the env file already pins them. Called by every envs/<env>.post-deploy.sh, which
# Snakemake runs once inside a freshly created env. The repository root comes from DMMVAE_ROOT
# (set by workflow/rules/common.smk), else the working directory.
set -euo pipefail
root="${DMMVAE_ROOT:-$PWD}"
if ! grep -qs '^name = "dmmvae"' "$root/pyproject.toml"; then
    echo "post-deploy: $root is not the dmmvae repository; set DMMVAE_ROOT to its root" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation --editable "$root"
