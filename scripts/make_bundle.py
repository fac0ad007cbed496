"""Pack the task-relevant rows of a deduplicated manifest, with small re-encoded copies of their images, into one
folder that can travel to another machine (e.g. a rented GPU) without the original collections.

Usage: python scripts/make_bundle.py MANIFEST OUT_DIR [--side 320] [--quality 92]

Images are resized so the longer side is at most ``--side`` and saved as JPEG; the manifest keeps its hashes
(those of the original files) and gets ``path`` rewritten to ``images/<n>.jpg``. Run the benchmark with
``--data-root OUT_DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from cxrcurate.imageio import decode_image
from cxrcurate.manifest import read_info, read_manifest, write_manifest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--side", type=int, default=320)
    ap.add_argument("--quality", type=int, default=92)
    ap.add_argument("--labels", default="covid19,normal,pneumonia,other")
    args = ap.parse_args()
    df = read_manifest(args.manifest)
    root = Path(df.attrs["cxrcurate"]["data_root"])
    rows = df[df["keep"].fillna(True).astype(bool) & df["label"].isin(args.labels.split(","))].reset_index(drop=True)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rel in enumerate(rows["path"]):
        im = Image.fromarray(decode_image(root / rel).pixels)
        im.thumbnail((args.side, args.side), Image.LANCZOS)
        name = f"images/{i:05d}.jpg"
        im.save(args.out / name, quality=args.quality)
        paths.append(name)
    rows["path"] = paths
    rows["mask_paths"] = None
    info = read_info(args.manifest)
    info["data_root"] = "."
    info["bundle"] = {"from": str(args.manifest), "side": args.side, "jpeg_quality": args.quality}
    write_manifest(rows, args.out / "manifest.parquet", info)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(rows)} images, {size / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
