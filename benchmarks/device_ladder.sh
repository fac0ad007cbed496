#!/usr/bin/env bash
# The real-data ladder on a rented GPU, in one call. Expects ./bundle (scripts/make_bundle.py) beside the code.
# Usage (on the GPU machine, repository root): OUT=/some/dir bash benchmarks/device_ladder.sh [EPOCHS] [RUNS]
# The bench's defaults feed the GPU: the tensor cache (here /tmp/cxr-cache; lung boxes once per picture) is filled
# before the first epoch, workers come from the machine, memory is pinned and augmentation runs on the GPU.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CXRCURATE_CACHE=${CXRCURATE_CACHE:-/tmp/cxr-cache}
epochs=${1:-12}; runs=${2:-3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$OUT/gpu.txt"
python3 -c "import torch, timm, sklearn; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
python3 benchmarks/bench_feed.py bundle/manifest.parquet --data-root bundle --limit 300 --cores "$(nproc)" 2>&1 | tee "$OUT/feed.log"
python3 benchmarks/ladder_real.py --manifest bundle/manifest.parquet --data-root bundle --out /tmp/ladder \
  --models base-cnn cxnet --epochs "$epochs" --runs "$runs" --size 224 --batch-size 32 2>&1 | tee "$OUT/ladder.log"
cp /tmp/ladder/ladder.md /tmp/ladder/ladder.json "$OUT/" 2>/dev/null
if [ -f benchmarks/train_throughput.py ]; then
  python3 benchmarks/train_throughput.py --manifest bundle/manifest.parquet --data-root bundle --workers "$(( $(nproc) - 1 ))" 2>&1 | tee "$OUT/throughput.log"
fi
