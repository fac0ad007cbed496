"""Dedup quality and throughput on real chest X-rays.

Usage:
    python benchmarks/bench_dedup.py MANIFEST [--originals 100] [--seed 0] [--workers 2] [--work DIR]

MANIFEST is a manifest built by ``cxrcurate build-manifest`` (its data root must be readable). The script:
1. times bare decoding against full fingerprinting (decode + sha256 + pixel hash + pHash) of the same files;
2. picks ``--originals`` pictures whose pHash has no neighbour within 12 bits (so they have no copy in the
   collection that the hash could see), writes transformed copies of each (resize 50-90%, JPEG quality
   30-90, crop 2-8% of a side, pad 8%, brightness +-20%, a burned-in text label) into a work folder, mixes
   them with every image of the manifest, runs dedup, and prints precision and recall of duplicate pairs
   among the planted copies, per transform;
3. runs dedup on the manifest itself and prints the cross-source groups it finds.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from cxrcurate.dedup.engine import DedupOptions, cross_source_table, dedup
from cxrcurate.dedup.hashindex import hamming
from cxrcurate.imageio import decode_image, fingerprint
from cxrcurate.manifest import read_manifest

TRANSFORMS = ("resize", "jpeg", "crop", "pad", "bright", "text")


def transform(pixels: np.ndarray, name: str, rng: np.random.Generator) -> Image.Image:
    im = Image.fromarray(pixels)
    w, h = im.size
    if name == "resize":
        f = rng.uniform(0.5, 0.9)
        return im.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR)
    if name == "jpeg":
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(30, 91)))
        return Image.open(buf)
    if name == "crop":
        c = rng.uniform(0.02, 0.08)
        side = rng.integers(4)
        box = [0, 0, w, h]
        box[side] = int(c * (w if side % 2 == 0 else h)) if side < 2 else box[side] - int(c * (w if side == 2 else h))
        return im.crop(tuple(box))
    if name == "pad":
        p = int(0.08 * w)
        out = Image.new("L", (w + 2 * p, h + p), int(rng.choice([0, 255])))
        out.paste(im, (p, p if rng.random() < 0.5 else 0))
        return out
    if name == "bright":
        return Image.fromarray(np.clip(pixels * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8))
    if name == "text":
        return burn_label(im, rng)
    raise ValueError(name)


def burn_label(im: Image.Image, rng: np.random.Generator, box: tuple[int, int] = (4, 12), band: int = 8,
               text: str = "PORTABLE AP") -> Image.Image:
    """A copy with a white box and a text label burnt in near the top (where scanners print them): the box is
    ``1/box[0]`` of the width by ``1/box[1]`` of the height, its corner in the left half and the top ``1/band``."""
    w, h = im.size
    out = im.copy()
    d = ImageDraw.Draw(out)
    x, y = int(rng.integers(0, w // 2)), int(rng.integers(0, h // band))
    d.rectangle((x, y, x + w // box[0], y + h // box[1]), fill=255)
    d.text((x + 4, y + 4), text, fill=0)
    return out


def throughput(paths: list[str]) -> None:
    t0 = time.perf_counter()
    for p in paths:
        decode_image(p)
    t_dec = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in paths:
        fingerprint(p)
    t_fp = time.perf_counter() - t0
    n = len(paths)
    print(f"throughput on {n} files (1 process): decode {n / t_dec:.0f} img/s, fingerprint {n / t_fp:.0f} img/s; "
          f"fingerprint/decode time ratio {t_fp / t_dec:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--originals", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/cxrcurate-bench-dedup"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    m = read_manifest(args.manifest)
    root = Path(m.attrs["cxrcurate"]["data_root"])
    throughput([str(root / p) for p in m["path"].sample(min(300, len(m)), random_state=args.seed)])

    ph = m["phash"].to_numpy(np.uint64)
    nearest = np.array([np.sort(hamming(ph, h))[1] for h in ph])
    unique = m[(nearest > 12)]
    originals = unique.sample(min(args.originals, len(unique)), random_state=args.seed)
    work = args.work / "planted" / "images"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for rec in originals.itertuples():
        pixels = decode_image(root / rec.path).pixels
        for name in TRANSFORMS:
            rel = f"{1000 + len(rows)}.png"  # named by number, as the covid-cxnet loader expects
            transform(pixels, name, rng).save(work / rel)
            rows.append({"file": rel, "original": rec.image_id, "transform": name})
    planted = pd.DataFrame(rows)
    from cxrcurate.build import build_manifest

    t0 = time.perf_counter()
    baseline = dedup(m, root, DedupOptions(workers=args.workers), progress=True)
    t_base = time.perf_counter() - t0
    base_group = baseline.manifest.set_index("image_id")["dup_group"]
    built = build_manifest([("covid-cxnet", args.work / "planted")], args.work / "out", progress=False)
    copies = read_manifest(built.manifest)
    # one data root for both (manifest paths are relative to it): the filesystem root
    copies["path"] = [str((work / p.split("/")[-1]).resolve().relative_to("/")) for p in copies["path"]]
    copies["image_id"] = "planted:" + copies["path"].str.split("/").str[-1]
    real = m.copy()
    real["path"] = [str((root / p).resolve().relative_to("/")) for p in real["path"]]
    t0 = time.perf_counter()
    res = dedup(pd.concat([real, copies], ignore_index=True), "/", DedupOptions(workers=args.workers), progress=True)
    t_mixed = time.perf_counter() - t0
    group = res.manifest.set_index("image_id")["dup_group"]
    origin = dict(zip("planted:" + planted["file"], planted["original"], strict=True))
    kind = dict(zip("planted:" + planted["file"], planted["transform"], strict=True))
    members = res.manifest.groupby("dup_group")["image_id"].apply(list)
    hits, true_pairs, false_pairs, wrong = {}, 0, 0, []
    for c, o in origin.items():
        hits.setdefault(kind[c], []).append(group[c] == group[o])
        for x in members[group[c]]:
            if x == c:
                continue
            same = origin.get(x) == o if x in origin else (x == o or base_group[x] == base_group[o])
            true_pairs += same
            false_pairs += not same
            if not same:
                wrong.append((c, x))
    recall = np.mean([h for v in hits.values() for h in v])
    precision = true_pairs / max(1, true_pairs + false_pairs)
    print(f"\nplanted {len(planted)} copies of {len(originals)} originals among {len(m)} real images")
    print(f"dedup time: {t_base:.0f} s on the real images alone, {t_mixed:.0f} s with the copies "
          f"({args.workers or 'all'} workers)")
    print("recall per transform: " + ", ".join(f"{t} {np.mean(v):.3f}" for t, v in hits.items()))
    print(f"pair recall {recall:.3f}; pair precision {precision:.3f} ({false_pairs} wrong pairs of "
          f"{true_pairs + false_pairs} predicted pairs involving a planted copy)")
    if wrong:
        ev = res.pairs[res.pairs["accepted"].astype(bool)]
        bridges = ev[ev["image_a"].isin(origin).ne(ev["image_b"].isin(origin))]  # a planted copy and a real image
        bridges = bridges[[base_group.get(r, "") != base_group.get(origin.get(p, p), "") for p, r in
                           zip(bridges["image_a"].where(bridges["image_a"].isin(origin), bridges["image_b"]),
                               bridges["image_a"].where(~bridges["image_a"].isin(origin), bridges["image_b"]),
                               strict=True)]]
        print(f"accepted pairs joining a planted copy to a real picture outside its original's group: {len(bridges)}")
        print(bridges.to_string(index=False))
    print("\ncross-source groups among the real collections (baseline run):")
    print(cross_source_table(baseline.manifest).to_string(index=False))
    s = baseline.summary
    print(f"{s['groups_with_copies']} pictures with copies, {s['copies_not_kept']} rows not kept, "
          f"{s['label_conflict_groups']} label conflicts")


if __name__ == "__main__":
    main()
