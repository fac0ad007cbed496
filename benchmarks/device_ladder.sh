#!/usr/bin/env bash
# The real-data ladder on a rented GPU, in one call. Expects ./bundle (scripts/make_bundle.py) beside the code.
# Usage (on the GPU machine, repository root): OUT=/some/dir bash benchmarks/device_ladder.sh [EPOCHS] [RUNS]
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
epochs=${1:-12}; runs=${2:-3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, sklearn; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
python3 benchmarks/ladder_real.py --manifest bundle/manifest.parquet --data-root bundle --out /tmp/ladder \
  --epochs "$epochs" --runs "$runs" --size 224 --batch-size 32 --workers 12 2>&1 | tee "$OUT/ladder.log"
cp /tmp/ladder/ladder.md /tmp/ladder/ladder.json "$OUT/" 2>/dev/null
if [ -f benchmarks/train_throughput.py ]; then
  python3 benchmarks/train_throughput.py --manifest bundle/manifest.parquet --data-root bundle 2>&1 | tee "$OUT/throughput.log"
fi
