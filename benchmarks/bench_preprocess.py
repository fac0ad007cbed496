"""Benchmark preprocessing throughput per core, and reading the tensor cache against recomputing.

    python benchmarks/bench_preprocess.py MANIFEST [--data-root R] [--limit 200] [--size 320] [--repeats 3]

Everything runs in this one process with OpenCV and torch limited to one thread, so each figure is per core
(the cache build uses a process per core; multiply by the cores you give it). Each figure is the best of
``--repeats`` passes over the same ``--limit`` images (the first manifest rows with distinct pixels), which
filters out noise from other processes on a shared machine; the OS file cache is warm after the first pass.

Printed:
1. images/s of decode + resize (aspect kept, padded; one channel) -- the bare path;
2. images/s of decode + CLAHE + BEASF + 3-channel stack + resize (``enhance.render``, no lung crop), and its ratio
   to (1) (target >= 0.67);
3. the same with the shipped lung U-Net crop (``--lungs``), for reference;
4. one epoch of cached ``ManifestDataset`` reads (np.load + float tensor) against one epoch recomputing the same tensors
   from the files (decode + preprocess + float tensor), without and with the lung crop (target >= 10x).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcurate.datasets import ManifestDataset  # noqa: E402
from cxrcurate.imageio import decode_image  # noqa: E402
from cxrcurate.manifest import load_frame, resolve_data_root  # noqa: E402
from cxrcurate.preprocess.cache import build_cache  # noqa: E402
from cxrcurate.preprocess.config import SHIPPED_WEIGHTS, PreprocessConfig  # noqa: E402
from cxrcurate.preprocess.enhance import fit_shape, pad_square, render, resize  # noqa: E402
from cxrcurate.preprocess.pipeline import Preprocessor  # noqa: E402


def best_rate(fn: Callable[[], int], repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` calls (``fn`` returns how many items it did)."""
    best = float("inf")
    n = 0
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--limit", type=int, default=200, help="images (distinct pixels) to use (default 200)")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lungs", default=str(SHIPPED_WEIGHTS), help="lung weights for (3) and (4); `none` to skip")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    df = load_frame(args.manifest)
    root = resolve_data_root(df, args.data_root)
    df = df.drop_duplicates("pixel_sha256").head(args.limit).reset_index(drop=True)
    paths = [root / p for p in df["path"]]
    size = args.size
    plain = PreprocessConfig(size=size, lungs=None)
    with_lungs = None if args.lungs.lower() == "none" else PreprocessConfig(size=size, lungs=args.lungs)
    print(f"{len(paths)} images from {args.manifest}, output {size}x{size}, 1 thread, best of {args.repeats}; "
          f"median input {int(df['width'].median())}x{int(df['height'].median())} px")

    def bare() -> int:
        for p in paths:
            pixels = decode_image(p).pixels
            pad_square(resize(pixels, fit_shape(*pixels.shape, size)), size)
        return len(paths)

    def full() -> int:
        for p in paths:
            render(decode_image(p).pixels, plain)
        return len(paths)

    r_bare, r_full = best_rate(bare, args.repeats), best_rate(full, args.repeats)
    print(f"(1) decode + resize                          {r_bare:8.1f} img/s per core")
    print(f"(2) decode + CLAHE + BEASF + stack + resize  {r_full:8.1f} img/s per core  "
          f"ratio {r_full / r_bare:.2f} (target >= 0.67)")
    configs = [("no crop", plain)]
    if with_lungs is not None:
        pre = Preprocessor(with_lungs)

        def cropped() -> int:
            for p in paths:
                pre(decode_image(p).pixels)
            return len(paths)

        r_crop = best_rate(cropped, args.repeats)
        print(f"(3) (2) + lung U-Net crop                    {r_crop:8.1f} img/s per core  "
              f"ratio {r_crop / r_bare:.2f}")
        configs.append(("lung crop", with_lungs))

    with tempfile.TemporaryDirectory() as tmp:
        for name, config in configs:
            start = time.perf_counter()
            built = build_cache(df, tmp, config, data_root=root, workers=1, progress=False)
            build_s = time.perf_counter() - start
            ds = ManifestDataset(df, classes=tuple(sorted(set(df["label"]))), preprocess=config, cache=tmp,
                                 require_cache=True)
            pre = Preprocessor(config)

            def read_epoch(ds: ManifestDataset = ds) -> int:
                for i in range(len(ds)):
                    ds[i]
                return len(ds)

            def recompute_epoch(pre: Preprocessor = pre) -> int:
                for p in paths:
                    out, _ = pre(decode_image(p).pixels)
                    torch.from_numpy(out).float().mul_(1.0 / 255.0)
                return len(paths)

            r_read, r_again = best_rate(read_epoch, args.repeats), best_rate(recompute_epoch, args.repeats)
            print(f"(4) {name:9s}: cache build {built.computed / build_s:7.1f} img/s (1 process); epoch from cache "
                  f"{r_read:8.1f} img/s vs recomputing {r_again:7.1f} img/s: {r_read / r_again:5.1f}x (target >= 10)")
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
