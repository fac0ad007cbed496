#!/usr/bin/env bash
# Set everything up and build a manifest from the real sample shipped inside the package, then print it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh "test"
out="${1:-out/sample}"
.venv/bin/cxrcurate build-manifest --sample --out "$out" --quiet
