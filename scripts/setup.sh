#!/usr/bin/env bash
# Create .venv and install cxrcurate with the given extras (default: test), at the tested versions of
# scripts/constraints.txt (pyproject.toml itself only states compatible ranges). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[${extras}]"
