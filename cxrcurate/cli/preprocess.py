"""The ``preprocess``, ``show`` and ``train-lungs`` subcommands (wired into ``cxrcurate`` by ``register``).

Only argparse is imported here; each command imports numpy, OpenCV and torch when it runs, so ``cxrcurate --help``
stays light.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from .options import ranged, workers

SIZE = (8, 4096)  # output side in pixels; 4096 is 4x a large radiograph's model input (3 x 4096^2 bytes per image)


def _config(args: argparse.Namespace) -> Any:
    from ..preprocess.config import PreprocessConfig

    lungs = None if str(args.lungs).lower() == "none" else args.lungs
    channels = tuple(c.strip() for c in args.channels.split(","))
    return PreprocessConfig(size=args.size, resize=args.resize, channels=channels, clahe_clip=args.clahe_clip,
                            beasf_gamma=args.beasf_gamma, lungs=lungs, crop_margin=args.crop_margin,
                            histogram_reference=args.match_histogram)


def _default_cache(manifest: Path) -> Path:
    return manifest.resolve().parent / "preprocessed"


def cmd_preprocess(args: argparse.Namespace) -> int:
    """Fill the cache for every row of a manifest (resumable; a changed config gets a fresh folder)."""
    from ..manifest import check_output_folder, load_frame
    from ..preprocess.cache import build_cache

    config = _config(args)
    df = load_frame(args.manifest)
    cache = check_output_folder(args.cache or _default_cache(args.manifest), "--cache")
    result = build_cache(df, cache, config, data_root=args.data_root, workers=args.workers,
                         progress=not args.quiet)
    print(f"cache {result.folder} (config {result.config_hash}): {result.computed} computed, "
          f"{result.reused} already there, {result.failed} failed, {result.no_lungs} without lungs found "
          f"(kept uncropped); {result.seconds:.1f} s")
    for image_id, error in result.errors[:10]:
        print(f"  failed: {image_id}: {error}")
    return 0 if not result.failed else 1


def cmd_show(args: argparse.Namespace) -> int:
    """Write the panel of one image: original, CLAHE, BEASF, lung mask, and the model's input."""
    from ..manifest import check_output_file, load_frame, resolve_data_root, safe_path
    from ..preprocess.panel import write_panel

    check_output_file(args.output, "-o")
    df = load_frame(args.manifest)
    hits = df[df["image_id"] == args.image_id]
    if hits.empty:
        close = [i for i in df["image_id"] if args.image_id.split(":")[-1] in i][:5]
        hint = f"; did you mean {close}?" if close else "; list ids with pandas or duckdb"
        from ..errors import CxrcurateError

        raise CxrcurateError(f"no image_id {args.image_id!r} in {args.manifest}{hint}")
    root = resolve_data_root(df, args.data_root)
    out = write_panel(safe_path(root, hits.iloc[0]["path"], args.image_id), _config(args), args.output,
                      title=args.image_id)
    print(f"wrote {out}")
    return 0


def cmd_train_lungs(args: argparse.Namespace) -> int:
    """Train the lung U-Net on the masked rows of a manifest and print the held-out Dice."""
    from ..preprocess.train_lungs import TrainOptions, train_lungs

    opts = TrainOptions(size=args.size, width=args.width, depth=args.depth, epochs=args.epochs, minutes=args.minutes,
                        batch_size=args.batch_size, lr=args.lr, test=args.test, seed=args.seed, device=args.device)
    command = "cxrcurate " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    card = train_lungs(args.manifest, args.out, data_root=args.data_root, options=opts, progress=not args.quiet,
                       command=command)
    t, h = card["training"], card["held_out"]
    print(f"wrote {args.out} (+ {Path(args.out).with_suffix('.json').name}): {card['parameters']:,} parameters, "
          f"{t['rows']} training images of {t['patients']} patients, {t['epochs_done']} epochs in {t['seconds']} s "
          f"on {t['device']}")
    print(f"held-out Dice {h['dice_mean']:.4f} (median {h['dice_median']:.4f}, min {h['dice_min']:.4f}; "
          f"post-processed {h['dice_postprocessed_mean']:.4f}) on {h['images']} images of {h['patients']} patients")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (each option changes the cache key)")
    g.add_argument("--size", type=ranged(int, *SIZE, "pixels"), default=320,
                   help=f"output side in pixels, {SIZE[0]}..{SIZE[1]} (default 320, as in the paper)")
    g.add_argument("--lungs", default="default", metavar="WEIGHTS|none|default",
                   help="lung U-Net weights for the crop: a file, `default` (shipped with cxrcurate) or `none`")
    g.add_argument("--resize", choices=["pad", "stretch"], default="pad",
                   help="keep the aspect ratio and pad (default) or stretch to a square")
    g.add_argument("--channels", default="original,clahe,beasf",
                   help="comma-separated channel order from original, clahe, beasf (default: all three)")
    g.add_argument("--clahe-clip", type=ranged(float, 0.01, 1000), default=2.0,
                   help="CLAHE clip limit, 0.01..1000 (default 2.0)")
    g.add_argument("--beasf-gamma", type=ranged(float, 0, 100), default=1.5, help="BEASF gamma, 0..100 (default 1.5)")
    g.add_argument("--crop-margin", type=ranged(float, 0, 0.99), default=0.05,
                   help="margin around the lung box, fraction 0..0.99 (default 0.05)")
    g.add_argument("--match-histogram", type=Path, metavar="IMAGE",
                   help="match every image's histogram to this reference image first (multiclass setup)")


def register(subparsers: Any) -> None:
    """Add ``preprocess``, ``show`` and ``train-lungs`` to the ``cxrcurate`` subcommands."""
    p = subparsers.add_parser("preprocess", help="crop to the lungs, enhance (CLAHE, BEASF) and cache model inputs")
    p.add_argument("manifest", type=Path, help="the manifest whose images are preprocessed")
    p.add_argument("--data-root", type=Path, help="folder the manifest paths are relative to (default: its own folder)")
    p.add_argument("--cache", type=Path, help="cache folder (default: preprocessed/ beside the manifest)")
    p.add_argument("--workers", type=workers(), help="processes, 1..512 (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_config_args(p)
    p.set_defaults(func=cmd_preprocess)

    s = subparsers.add_parser("show", help="write a PNG panel of what the model will see for one image")
    s.add_argument("manifest", type=Path, help="the manifest holding the image")
    s.add_argument("image_id", help="the image's image_id, e.g. cohen:images/foo.jpg")
    s.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    s.add_argument("--data-root", type=Path, help="folder the manifest paths are relative to (default: its own folder)")
    _add_config_args(s)
    s.set_defaults(func=cmd_show)

    t = subparsers.add_parser("train-lungs", help="train the lung U-Net on manifest rows that have lung masks")
    t.add_argument("manifest", type=Path, help="a manifest with lung masks (mask_paths) on some rows")
    t.add_argument("--out", type=Path, required=True, help="weights file (.safetensors; a .json card goes beside it)")
    t.add_argument("--data-root", type=Path, help="folder the manifest paths are relative to (default: its own folder)")
    t.add_argument("--size", type=ranged(int, 16, 1024, "pixels"), default=160,
                   help="input side, a multiple of 2**depth, 16..1024 (default 160)")
    t.add_argument("--width", type=ranged(int, 1, 128), default=8,
                   help="channels of the first U-Net level, 1..128 (default 8; classic 64)")
    t.add_argument("--depth", type=ranged(int, 1, 8), default=4, help="down-sampling steps, 1..8 (default 4)")
    t.add_argument("--epochs", type=ranged(int, 1, 100_000), default=60,
                   help="passes over the training images (default 60)")
    t.add_argument("--minutes", type=ranged(float, 0.01, 1e6), help="stop training after this many minutes "
                   "(default: no limit)")
    t.add_argument("--batch-size", type=ranged(int, 1, 4096), default=16, help="1..4096 (default 16)")
    t.add_argument("--lr", type=ranged(float, 1e-8, 10), default=3e-3,
                   help="peak Adam learning rate, cosine decay (default 3e-3)")
    t.add_argument("--test", type=ranged(float, 0.01, 0.99), default=0.2,
                   help="fraction of patients held out for the Dice, 0.01..0.99 (default 0.2)")
    t.add_argument("--seed", type=int, default=0, help="seed of the patient split and the training (default 0)")
    t.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train_lungs)
