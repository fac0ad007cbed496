"""How dedup grows with the collection: wall time, peak memory, candidates per image, and growth exponent.

Usage:
    python benchmarks/bench_dedup_scale.py DATA_ROOT [--sizes 2000 20000 100000] [--workers 2] [--work DIR]
        [--engine local|dask] [--scheduler ADDRESS]

DATA_ROOT is the shared real data (``../shared/data``): every synthetic picture is made from its images (each
generator process holds ``POOL`` of them, chosen with a fixed seed and shrunk to 256 px, in memory). For each
size N, 90% of the pictures are distinct *non-copies*: 3 x 3 mosaics of random crops (30-60% of each side, at a
random place) of nine random real radiographs, so they are different pictures that still look like chest X-ray
texture. The other 10% are *copies* of some of those, each with one known transform of the kinds
re-publication brings: a tighter crop or zoom, black padding, a burned-in label, a contrast (gamma) change, a
small rotation, or a down-size with JPEG re-encoding. Dedup then runs on the whole set (one process per
``--workers``) and the script prints wall time, peak memory (this process plus its workers), candidate pairs per
image, recall of the planted copies, wrong merges (groups joining different originals), and the growth exponent
``log(t2 / t1) / log(N2 / N1)`` between consecutive sizes (of wall time; CPU seconds of this process and its
finished workers are printed too, as wall time misleads on shared cores). Peak memory is the largest resident
set of one process (ru_maxrss), cumulative over the sizes of one invocation: run one size per invocation for
per-size peaks. Pictures are generated once per size and cached in
``--work`` (not timed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from bench_dedup import burn_label  # the same burnt-in label as the real-image benchmark (same folder)
from PIL import Image

TRANSFORMS = ("crop", "pad", "text", "gamma", "rotate", "jpeg")
SIDE = 256
GRID = 3


def _real_images(root: Path) -> list[Path]:
    out = []
    for sub in ("cohen/images", "covid-cxnet/images", "hannover/png", "figure1", "actualmed"):
        out += sorted(p for p in (root / sub).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return out


POOL = 600  # real radiographs each generator process keeps in memory
_pool: list[Image.Image] = []


def _load_pool(root: str) -> None:
    """Generator-process initialiser: ``POOL`` real images (fixed seed), grey, long side 256 px."""
    paths = _real_images(Path(root))
    for i in np.sort(np.random.default_rng(0).choice(len(paths), min(POOL, len(paths)), replace=False)):
        im = Image.open(paths[i]).convert("L")
        im.thumbnail((256, 256), Image.BILINEAR)
        _pool.append(im)


def _mosaic(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    tile = SIDE // GRID
    out = Image.new("L", (tile * GRID, tile * GRID))
    for k, src in enumerate(rng.choice(len(_pool), GRID * GRID, replace=False)):
        im = _pool[src]
        w, h = im.size
        s = rng.uniform(0.3, 0.6)
        cw, ch = max(8, int(w * s)), max(8, int(h * s))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out.paste(im.crop((x, y, x + cw, y + ch)).resize((tile, tile), Image.BILINEAR), ((k % GRID) * tile,
                                                                                         (k // GRID) * tile))
    return out


def _transform(im: Image.Image, name: str, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    if name == "crop":  # tighter crop / zoom: cut 0-20% off each side, then scale up (aspect kept)
        x0, y0 = int(w * rng.uniform(0.0, 0.2)), int(h * rng.uniform(0.0, 0.2))
        x1, y1 = w - int(w * rng.uniform(0.0, 0.2)), h - int(h * rng.uniform(0.0, 0.2))
        f = w / (x1 - x0)
        return im.crop((x0, y0, x1, y1)).resize((w, int((y1 - y0) * f)), Image.BILINEAR)
    if name == "pad":
        p = int(w * rng.uniform(0.05, 0.15))
        out = Image.new("L", (w + 2 * p, h + p), 0)
        out.paste(im, (p, p))
        return out
    if name == "text":
        return burn_label(im, rng, box=(3, 10), band=6, text="PORTABLE AP  R")
    if name == "gamma":
        g = rng.choice([rng.uniform(0.6, 0.8), rng.uniform(1.25, 1.6)])
        return Image.fromarray((255 * (np.asarray(im) / 255.0) ** g).astype(np.uint8))
    if name == "rotate":
        return im.rotate(float(rng.uniform(-5, 5)), resample=Image.BILINEAR)
    if name == "jpeg":
        f = rng.uniform(0.5, 0.9)
        buf = io.BytesIO()
        im.resize((int(w * f), int(h * f)), Image.BILINEAR).save(buf, "JPEG", quality=int(rng.integers(40, 85)))
        return Image.open(io.BytesIO(buf.getvalue()))
    raise ValueError(name)


def _make(args: tuple[int, int, int, str]) -> dict:
    from cxrcurate.imageio import phash64

    i, original, tkind, folder = args
    rng = np.random.default_rng(1_000_003 * (original + 1) + i)
    im = _mosaic(original)
    name = "original"
    if tkind >= 0:
        name = TRANSFORMS[tkind]
        im = _transform(im, name, rng)
    path = Path(folder) / f"{i:07d}.png"
    if not path.exists():
        im.save(path, compress_level=1)
    px = np.asarray(im.convert("L"))
    return {"image_id": f"syn:{i:07d}", "path": str(path), "original": original, "transform": name,
            "phash": np.uint64(phash64(px)), "pixel_sha256": hashlib.sha256(px.tobytes()).hexdigest(),
            "width": px.shape[1], "height": px.shape[0]}


def synthetic_set(n: int, root: Path, work: Path, workers: int) -> pd.DataFrame:
    """``n`` pictures: 90% distinct mosaics (``original`` = own id), 10% transformed copies of some of them."""
    cache = work / f"n{n}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    folder = work / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    n_orig = n - n // 10
    jobs = [(i, i, -1, str(folder)) for i in range(n_orig)]
    copied = rng.choice(n_orig, n - n_orig, replace=True)
    jobs += [(n_orig + k, int(o), k % len(TRANSFORMS), str(folder)) for k, o in enumerate(copied)]
    with ProcessPoolExecutor(workers, initializer=_load_pool, initargs=(str(root),)) as pool:
        rows = list(pool.map(_make, jobs, chunksize=256))
    df = pd.DataFrame(rows)
    df["file_sha256"] = df["pixel_sha256"]
    df["source"] = "covid-cxnet"
    df["label"] = "covid19"
    for col in ("patient_id", "age_years", "sex", "url", "license", "pediatric"):
        df[col] = None
    df["view"] = "unknown"
    df.to_parquet(cache, index=False)
    return df


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished workers (wall time misleads on shared cores)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/cxrcurate-bench-scale"))
    ap.add_argument("--engine", default="local")
    ap.add_argument("--scheduler", default=None)
    args = ap.parse_args()
    from cxrcurate.dedup.engine import DedupOptions, dedup

    results = []
    for n in args.sizes:
        df = synthetic_set(n, args.data_root, args.work, args.workers)
        opts = DedupOptions(workers=args.workers, engine=args.engine, scheduler=args.scheduler,
                            work_dir=str(args.work), label_conflict="report")
        rows = df.drop(columns=["original", "transform"])
        rows["path"] = [str(Path(p).relative_to(args.work)) for p in rows["path"]]  # manifests name relative paths
        t0, c0 = time.perf_counter(), _cpu_s()
        res = dedup(rows, args.work, opts, progress=False)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        out = res.manifest.assign(original=df["original"].to_numpy(), transform=df["transform"].to_numpy())
        copies = out[out["transform"] != "original"]
        group_of = out.set_index("image_id")["dup_group"]
        orig_group = group_of.to_numpy()[copies["original"].to_numpy()]
        hit = copies["dup_group"].to_numpy() == orig_group
        per_t = pd.Series(hit).groupby(copies["transform"].to_numpy()).mean()
        wrong = int((out.groupby("dup_group")["original"].nunique() > 1).sum())
        cand = res.summary["candidate_pairs"] / n
        results.append((n, wall, _peak_mb()))
        line = (f"N={n:>7,}  wall {wall:8.1f} s  cpu {cpu:8.1f} s  peak {results[-1][2]:7.0f} MB (cumulative max)  "
                f"candidates/image {cand:5.2f}  copy recall {hit.mean():.4f}  wrong merges {wrong}")
        if len(results) > 1:
            (n1, t1, _), (n2, t2, _) = results[-2], results[-1]
            line += f"  growth exponent {np.log(t2 / t1) / np.log(n2 / n1):.2f}"
        print(line, flush=True)
        print("    recall per transform: " + ", ".join(f"{k} {v:.3f}" for k, v in per_t.items()), flush=True)


if __name__ == "__main__":
    main()
