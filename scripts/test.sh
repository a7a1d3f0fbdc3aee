#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run lint, format check, types and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,cluster]'
.venv/bin/python -m mtia_cluster.engine.warm  # compile the numba kernels once
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
