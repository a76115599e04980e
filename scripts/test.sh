#!/usr/bin/env bash
# Runs hookledger's whole test suite (SQLite and PostgreSQL, real Redis) and its gates.
# Creates ./.venv with the project and its dev tools on first use. Usage: ./scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import app, workers, pytest, hypothesis, standardwebhooks, httpx2" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch .venv/.installed
fi
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict: app/, workers/)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"
