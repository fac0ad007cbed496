"""Training throughput per ladder model: compute alone, and whole epochs fed by on-the-fly decoding vs the cache.

Usage:
    python benchmarks/train_throughput.py --manifest M.parquet [--data-root R] [--models base-cnn cxnet]
        [--size 224] [--batch-size 32] [--workers 2] [--images 256]

For each model it prints: forward+backward images/s on random tensors (the ceiling), then one training epoch over
``--images`` pictures read (a) by decoding and preprocessing on the fly and (b) from the tensor cache, with
images/s and the share of step time spent waiting for data (the target with the cache is < 20%).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from cxrcurate.bench.data import prepare
from cxrcurate.bench.run import BenchOptions, datasets_for, preprocess_config
from cxrcurate.bench.train import TrainConfig, device_for, fit
from cxrcurate.manifest import read_manifest, resolve_data_root
from cxrcurate.models import get_spec
from cxrcurate.models.ladder import build_model


def compute_rate(model: torch.nn.Module, size: int, batch: int, device: torch.device, steps: int = 5) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    model.to(device).train()
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(x).float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--data-root")
    ap.add_argument("--models", nargs="+", default=["base-cnn", "cxnet"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    from cxrcurate.preprocess.cache import build_cache

    device = device_for(0)
    df = read_manifest(args.manifest)
    root = resolve_data_root(df, args.data_root)
    print(f"device: {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}; size {args.size}; "
          f"batch {args.batch_size}; {args.workers} DataLoader workers; torch {torch.__version__}")
    print(f"{'model':14s} {'compute img/s':>14s} {'on-the-fly img/s':>17s} {'wait':>6s} {'cached img/s':>13s} "
          f"{'wait':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            spec = get_spec(name)
            opts = BenchOptions(model=name, init="random", size=args.size, negatives=("normal", "pneumonia", "other"),
                                max_images=args.images, data_root=str(root),
                                train=TrainConfig(epochs=1, batch_size=args.batch_size, workers=args.workers))
            task = prepare(df, spec.classes, "group", opts.negatives, max_images=args.images)
            task.frame["split"] = "train"  # one epoch over all of them; val is a small slice for fit's bookkeeping
            task.frame.loc[task.frame.index[:8], "split"] = "val"
            rate = compute_rate(build_model(spec, "random", input_size=args.size), args.size, args.batch_size, device)
            row = [f"{name:14s} {rate:14.1f}"]
            for cached in (False, True):
                if cached:
                    build_cache(task.frame, Path(tmp) / "cache", preprocess_config(spec, args.size), data_root=root,
                                workers=args.workers, progress=False)
                o = replace(opts, cache=str(Path(tmp) / "cache") if cached else None)
                train_ds, val_ds, _ = datasets_for(task, root, spec, o)
                model = build_model(spec, "random", input_size=args.size)
                hist = fit(model, train_ds, val_ds, train_ds.targets, len(spec.classes), o.train, Path(tmp) / name,
                           device, progress=False)
                row.append(f"{hist[-1]['images_per_s']:{17 if not cached else 13}.1f} "
                           f"{100 * hist[-1]['data_wait_share']:5.0f}%")
            print(" ".join(row), flush=True)


if __name__ == "__main__":
    main()
