"""How fast the bench can feed a model, per core, for every rung's input; and what a 16-core host would feed.

    python benchmarks/bench_feed.py DATA [--data-root R] [--limit 200] [--repeats 2] [--cores 16] [--gpu-224 2500]
        [--work DIR]

DATA is the shared real data folder (``../shared/data``: the five COVID collections are built into a manifest in
``--work``, reused on a re-run) or a ``manifest.parquet``. ``--limit`` pictures (distinct pixels, first rows) are
fed; everything runs in this process with OpenCV and torch on one thread, and rates are images per CPU-second of
this process (``time.process_time``: user + system), so every figure is per core and a machine shared with other
jobs slows the wall clock, not the figure. Each warm figure is the best of ``--repeats`` passes.

For each distinct rung input (channels original x3 or original/CLAHE/BEASF; lung crop or not; histogram matching or
not) at 224 and 320 px:
- cold: ``build_cache`` from the files into an empty cache (decode, lungs, enhancement, write);
- cold, boxes stored: the same into a fresh config folder whose lung boxes another size already stored
  (``preprocess.lungstore``; only lung rungs);
- warm: one epoch of cached reads as the bench's ``ManifestDataset`` serves them (np.load, float, normalise);
- warm + per-sample augmentation: the same with ``PaperAugment`` at the bench's default strength (the CPU path);
- warm, batched: cached reads without per-sample work, collated into batches of 32 (what the loader workers do
  when ``BatchAugment`` runs on the GPU), and, separately, ``BatchAugment`` on those batches on this CPU.

The projection multiplies the per-core rate of the loader's work by ``--cores`` and compares it with a stated GPU
consumption: ``--gpu-224`` img/s at 224 px (default 2,500: DenseNet-121 training in bf16 on one H100, the middle of
the 2,000-3,000 img/s range given in issue 24, not measured here), scaled by pixel count at 320 px. The last lines
read ``feed: <rung> <img/s per core of the GPU path at 224> ...``, one per rung.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcurate.bench.run import preprocess_config  # noqa: E402
from cxrcurate.datasets import ManifestDataset  # noqa: E402
from cxrcurate.manifest import load_frame, resolve_data_root  # noqa: E402
from cxrcurate.models import IMAGENET_MEAN, IMAGENET_STD, LADDER  # noqa: E402
from cxrcurate.preprocess.augment import AugmentConfig, BatchAugment, PaperAugment  # noqa: E402
from cxrcurate.preprocess.cache import build_cache  # noqa: E402

COLLECTIONS = ("cohen", "covid-cxnet", "hannover", "figure1", "actualmed")
SIZES = (224, 320)
STRENGTH = 0.5  # the bench's default --augment-strength


def manifest_of(data: Path, work: Path) -> Path:
    """``data`` itself when it is a manifest, else a manifest of the five shared collections built in ``work``."""
    if data.is_file():
        return data
    from cxrcurate.build import build_manifest

    out = work / "manifest"
    if not (out / "manifest.parquet").exists():
        build_manifest([(c, data / c) for c in COLLECTIONS], out, workers=1, progress=False)
    return out / "manifest.parquet"


def best_rate(fn: Callable[[], int], repeats: int) -> float:
    """Items per CPU-second of the fastest of ``repeats`` calls (``fn`` returns how many items it did)."""
    best = 0.0
    for _ in range(repeats):
        start = time.process_time()
        n = fn()
        best = max(best, n / max(time.process_time() - start, 1e-9))
    return best


def cold_rate(df, root: Path, cache: Path, config) -> float:
    start = time.process_time()
    res = build_cache(df, cache, config, data_root=root, workers=1, progress=False)
    return res.computed / max(time.process_time() - start, 1e-9)


def warm_rates(df, root: Path, cache: Path, config, repeats: int) -> dict[str, float]:
    classes = tuple(sorted(set(df["label"])))
    norm = (IMAGENET_MEAN, IMAGENET_STD)
    plain = ManifestDataset(df, root, classes=classes, preprocess=config, cache=cache, require_cache=True,
                            normalize=norm)
    aug = PaperAugment(AugmentConfig.scaled(STRENGTH), seed=0)
    augmented = ManifestDataset(df, root, classes=classes, preprocess=config, cache=cache, require_cache=True,
                                augment=aug, normalize=norm)
    raw = ManifestDataset(df, root, classes=classes, preprocess=config, cache=cache, require_cache=True)
    batcher = BatchAugment(AugmentConfig.scaled(STRENGTH), seed=0, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    batches: list = []

    def epoch(ds: ManifestDataset) -> Callable[[], int]:
        def run() -> int:
            for i in range(len(ds)):
                ds[i]
            return len(ds)
        return run

    def collated() -> int:
        batches.clear()
        for start in range(0, len(raw), 32):
            batches.append(ManifestDataset.collate([raw[i] for i in range(start, min(start + 32, len(raw)))]))
        return len(raw)

    def augment_batches() -> int:
        for x, _, ids in batches:
            batcher(x, ids)
        return len(raw)

    return {"warm": best_rate(epoch(plain), repeats), "warm_aug": best_rate(epoch(augmented), repeats),
            "warm_collate": best_rate(collated, repeats), "batch_aug_cpu": best_rate(augment_batches, repeats)}


def input_key(spec) -> tuple:
    return (spec.channels, spec.lungs, spec.match_histogram)


def describe(key: tuple) -> str:
    channels, lungs, hist = key
    return f"{'enhanced' if channels == 'enhanced' else 'gray x3'}{' + lungs' if lungs else ''}" \
           f"{' + histogram match' if hist else ''}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="shared data folder (../shared/data) or a manifest.parquet")
    ap.add_argument("--data-root", help="folder the manifest's paths are relative to (default: recorded)")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--gpu-224", type=float, default=2500.0, help="GPU consumption at 224 px, img/s (stated)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cxrcurate-bench-feed")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    manifest = manifest_of(args.data, args.work)
    df = load_frame(manifest)
    root = resolve_data_root(df, args.data_root)
    df = df.drop_duplicates("pixel_sha256").head(args.limit).reset_index(drop=True)
    gpu = {s: args.gpu_224 * (224 / s) ** 2 for s in SIZES}
    print(f"{len(df)} pictures from {manifest}; one thread; img/s per core (best of {args.repeats})")
    print(f"projection: {args.cores} cores x the loader's per-core rate, against a GPU consuming "
          f"{gpu[224]:,.0f} img/s at 224 px and {gpu[320]:,.0f} at 320 px (stated, see the docstring)\n")
    keys = sorted({input_key(s) for s in LADDER.values()})
    figures: dict[tuple, dict[int, dict[str, float]]] = {}
    header = f"{'input':34} {'px':>4} {'cold':>7} {'boxes':>7} {'warm':>8} {'+aug':>7} {'batched':>8} " \
             f"{'bat.aug':>8} {'feed16 cpu-aug':>15} {'feed16 gpu-aug':>15}"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            spec = next(s for s in LADDER.values() if input_key(s) == key)
            cache = Path(tmp) / "_".join(map(str, key))
            figures[key] = {}
            for size in SIZES:
                config = preprocess_config(spec, size)
                lungs_dir = [p for p in cache.glob("lungs-*")] if cache.exists() else []
                for p in lungs_dir:
                    shutil.rmtree(p)  # cold means cold: no boxes from the other size
                f = {"cold": cold_rate(df, root, cache, config)}
                if spec.lungs:
                    shutil.rmtree(cache / config.config_hash())
                    f["boxes"] = cold_rate(df, root, cache, config)
                f.update(warm_rates(df, root, cache, config, args.repeats))
                f["feed_cpu"] = args.cores * f["warm_aug"]
                f["feed_gpu"] = args.cores * f["warm_collate"]
                figures[key][size] = f
                boxes = f"{f['boxes']:7.0f}" if "boxes" in f else f"{'-':>7}"
                print(f"{describe(key):34} {size:4d} {f['cold']:7.0f} {boxes} {f['warm']:8.0f} {f['warm_aug']:7.0f} "
                      f"{f['warm_collate']:8.0f} {f['batch_aug_cpu']:8.0f} {f['feed_cpu']:15,.0f} "
                      f"{f['feed_gpu']:15,.0f}")
    print("\ncold: files -> cache; boxes: cold with the lung boxes stored by another size; warm: cached reads as the "
          "bench's dataset serves them; +aug: with per-sample augmentation; batched: cached reads collated into "
          "batches of 32 (the loader's work when the GPU augments); bat.aug: BatchAugment on this CPU; feed16: "
          f"{args.cores} cores x (+aug) or x (batched)\n")
    for name, spec in LADDER.items():
        f224, f320 = figures[input_key(spec)][224], figures[input_key(spec)][320]
        ok = "ok" if f224["feed_gpu"] >= 3000 else "BELOW 3000"
        print(f"feed: {name} {f224['warm_collate']:.0f} img/s/core warm-batched@224 | "
              f"{args.cores}-core feed {f224['feed_gpu']:,.0f} (gpu-aug) {f224['feed_cpu']:,.0f} (cpu-aug) vs gpu "
              f"{gpu[224]:,.0f} @224 | @320 {f320['feed_gpu']:,.0f} / {f320['feed_cpu']:,.0f} vs {gpu[320]:,.0f} | "
              f"cold {f224['cold']:.0f}@224 | goal 3000@224 {ok}")


if __name__ == "__main__":
    main()
