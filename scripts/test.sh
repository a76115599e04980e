#!/usr/bin/env bash
# Runs hookledger's whole test suite (SQLite and PostgreSQL, real Redis) and its gates.
# Creates ./.venv with the project and its dev tools on first use.
# Usage: ./scripts/test.sh            the gates, then the whole suite as below
#        ./scripts/test.sh --fast     the gates and the unit tests only (no services needed)
#        ./scripts/test.sh ARGS...    the gates, then one pytest run with exactly ARGS
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import app, workers, pytest, hypothesis, standardwebhooks, httpx2, xdist, mkdocs, material, importlinter" 2>/dev/null \
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
echo "== import-linter (the layers; contracts in pyproject.toml)"
.venv/bin/lint-imports --no-cache
echo "== mkdocs build --strict (a broken link or anchor fails)"
# Not --quiet: it hides the warnings, and --strict then has nothing to fail on.
if ! NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict >.venv/mkdocs.log 2>&1; then
  cat .venv/mkdocs.log
  exit 1
fi
if [ "${1:-}" = "--fast" ]; then
  echo "== pytest tests/unit"
  .venv/bin/pytest -q tests/unit -p no:randomly
  exit
fi
if [ $# -gt 0 ]; then
  echo "== pytest $*"
  .venv/bin/pytest "$@"
  exit
fi
# Everything but the fault suite in two processes (pytest-xdist; each has its own PostgreSQL
# database and Redis database, see tests/conftest.py), then the fault suite on its own: it
# kills and restarts servers on a schedule and wants the machine to itself.
echo "== pytest (all but tests/faults, 2 processes)"
.venv/bin/pytest -n 2 --ignore=tests/faults
echo "== pytest tests/faults"
.venv/bin/pytest tests/faults
