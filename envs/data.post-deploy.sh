#!/usr/bin/env bash
# Snakemake runs this once inside the freshly created conda env (post-deploy script of the env
# file with the same name). It installs the dmmvae package from this checkout, editable and
# without dependencies: the env file already pins them, and pyproject.toml lists all groups'.
# The repository root comes from DMMVAE_ROOT (set by workflow/rules/common.smk), else from the
# working directory when that is the repository root.
set -euo pipefail
root="${DMMVAE_ROOT:-$PWD}"
if ! grep -qs '^name = "dmmvae"' "$root/pyproject.toml"; then
    echo "post-deploy: $root is not the dmmvae repository; set DMMVAE_ROOT to its root" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation --editable "$root"
