#!/usr/bin/env bash
# Set everything up and run the tests (what .ci/run calls).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh "test,hf,bench"
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
