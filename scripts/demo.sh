#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
.venv/bin/python -m mtia_cluster.engine.warm  # compile the numba kernels once
# --overwrite: a rerun replaces the earlier results/demo (only a directory the tool wrote)
exec .venv/bin/mtia-cluster demo --overwrite "$@"
