"""Bench commands: ``models``, ``bench`` (train, score, compare), ``pretrain-chexnet``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import models_text  # the specs are plain data: no torch import, an instant answer

    print(models_text())
    return 0


# bench options whose default --quick may fill (argparse default None = "not set by the user")
TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 16, "workers": None}  # workers None: one per core but one


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.compare import compare_records, compare_table, summary_markdown
    from ..bench.run import BenchOptions, run_bench
    from ..bench.train import TrainConfig

    if args.compare:
        if args.format == "json":
            import json

            print(json.dumps(compare_records(args.compare), indent=2, default=str))
        else:
            print(summary_markdown(args.compare) if args.format == "markdown" else compare_table(args.compare)
                  .to_string(index=False))
        return 0
    if not args.model:
        raise UsageError("give --model NAME (see `cxrcurate models`) or --compare RUN...")
    given = {k for k in ("size", "max_images", *TRAIN_DEFAULTS) if getattr(args, k) is not None}
    lr = args.lr
    if lr != "auto":
        try:
            lr = float(lr)
        except ValueError:
            raise UsageError(f"--lr {args.lr}: give a number > 0, or auto") from None
    train = TrainConfig(**{k: getattr(args, k) if getattr(args, k) is not None else v
                           for k, v in TRAIN_DEFAULTS.items()},
                        lr=lr, patience=args.patience, seed=args.seed, max_minutes=args.max_minutes,
                        warmup_steps=args.warmup_steps)
    opts = BenchOptions(model=args.model, init=args.init, weights=args.weights, trust_checkpoint=args.trust_checkpoint,
                        split_policy=args.split_policy, test=args.test, val=args.val, seed=args.seed, runs=args.runs,
                        size=args.size, max_images=args.max_images, data_root=args.data_root, train=train,
                        resume=args.resume, cache=_cache_option(args), augment=not args.no_augment,
                        augment_strength=args.augment_strength, holdout_source=args.holdout_source,
                        overwrite=args.overwrite)
    if args.negatives:
        opts.negatives = tuple(x.strip() for x in args.negatives.split(","))
    if args.quick:
        opts.apply_quick(given)
    opts.validate()  # before any data is read or folder made
    from ..bench.record import check_free
    from ..manifest import check_output_folder

    check_free(args.out, opts.overwrite, opts.resume)
    runs_dir = args.out.parent if args.out else Path("runs")
    check_output_folder(runs_dir, "--out")
    manifest = args.manifest
    if manifest is None:
        if not args.quick:
            raise UsageError("give --manifest PATH (or --quick to run on the sample shipped with cxrcurate)")
        from ..build import build_manifest
        from ..sample import copy_sample

        print("no --manifest: building the shipped sample (30 images; a smoke test, not a benchmark)")
        folder = runs_dir / "sample-manifest"
        manifest = build_manifest(copy_sample(folder), folder, data_root=folder, workers=1, progress=False).manifest
        if not args.negatives:
            opts.negatives = ("normal", "pneumonia", "other")
    run = run_bench(manifest, args.out, opts, progress=not args.quiet)
    from ..bench.run import is_main

    if is_main():  # under torchrun, rank 0 wrote the run folder and reports it
        print(f"wrote {run}")
        print(summary_markdown([run]))
    return 0


def _cache_option(args: argparse.Namespace) -> str | None:
    """The tensor cache of a bench run: ``--cache``, else the default cache folder; None with ``--no-cache``."""
    from ..bench.feed import default_cache_dir

    if args.no_cache:
        if args.cache:
            raise UsageError("give --cache FOLDER or --no-cache, not both")
        return None
    return str(args.cache or default_cache_dir())


def cmd_pretrain_chexnet(args: argparse.Namespace) -> int:
    from ..bench.chexnet import pretrain_chexnet
    from ..bench.train import TrainConfig

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=float(args.lr), patience=args.patience,
                      workers=args.workers, seed=args.seed, max_minutes=args.max_minutes)
    path = pretrain_chexnet(args.manifest, args.out, size=args.size, cfg=cfg, data_root=args.data_root,
                            max_images=args.max_images, progress=not args.quiet)
    print(f"wrote {path} and {path.with_suffix('.json').name} (test AUROC per finding); use it with "
          f"`cxrcurate bench --model cxnet --weights {path}`")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the bench commands to the ``cxrcurate`` subcommands."""
    mo = subparsers.add_parser("models", help="the COVID-CXNet model ladder and the paper's figures")
    mo.set_defaults(func=cmd_models)

    be = subparsers.add_parser("bench", help="train and score a ladder model on a manifest (or compare runs)")
    be.add_argument("--model", help="ladder model (see `cxrcurate models`)")
    be.add_argument("--manifest", type=Path, help="manifest to use (default with --quick: the shipped sample)")
    be.add_argument("--out", type=Path, help="a new run folder (default: runs/<model>-<digest of the inputs>); one "
                    "that holds another run is refused")
    be.add_argument("--overwrite", action="store_true", help="delete the run that --out holds, then run")
    be.add_argument("--compare", type=Path, nargs="+", metavar="RUN", help="print these runs side by side")
    be.add_argument("--format", choices=["text", "markdown", "json"], default="markdown",
                    help="how --compare prints the runs: markdown summary (default), a text table, or JSON rows")
    be.add_argument("--quick", action="store_true", help="small, fast CPU run to see the whole path work (fills "
                    "size, images, epochs, batch size, workers that you did not set)")
    be.add_argument("--init", choices=["random", "imagenet", "chexnet"], help="initialisation (default: the model's)")
    be.add_argument("--weights", help="checkpoint for --init imagenet/chexnet")
    be.add_argument("--trust-checkpoint", action="store_true", help="allow checkpoints that need full unpickling")
    be.add_argument("--split-policy", choices=["group", "manifest", "per-image"], default="group",
                    help="group: patient/duplicate-aware (default); per-image: the paper's LEAKY protocol")
    be.add_argument("--negatives", help="labels of the non-COVID class for binary models (default: normal)")
    be.add_argument("--test", type=float, default=0.2,
                    help="fraction of units (patients, linked pictures) held out for test (default 0.2)")
    be.add_argument("--val", type=float, default=0.1,
                    help="fraction of units held out for validation, early stopping and the LR (default 0.1)")
    be.add_argument("--seed", type=int, default=0,
                    help="seed of the split and the training (default 0; --runs N uses seed..seed+N-1)")
    be.add_argument("--runs", type=int, default=1, help="repeat with seeds seed..seed+runs-1; report mean/std/range")
    be.add_argument("--size", type=int, help="input side, 32..1024 px (default: the model's; --quick: 64)")
    be.add_argument("--max-images", type=int, help="cap the task's images (stratified sample)")
    be.add_argument("--epochs", type=int, help="training epochs, >= 1 (default 30; --quick: 2)")
    be.add_argument("--batch-size", type=int, help="images per batch, >= 1 (default 16; --quick: 8)")
    be.add_argument("--lr", default="1e-4", help="learning rate, or auto (LR range test: a decade below the loss "
                    "minimum, within [1e-5, 1e-2])")
    be.add_argument("--warmup-steps", type=int, help="linear warm-up steps from lr/10 (default: 10%% of an epoch, "
                    "at most 50)")
    be.add_argument("--no-augment", action="store_true", help="train without augmentation")
    be.add_argument("--augment-strength", type=float, default=0.5,
                    help="scale of the paper's augmentation ranges (default 0.5 = half; 1 = the paper's, which crops "
                         "image corners in most draws: see docs/bench.md)")
    be.add_argument("--holdout-source", metavar="SOURCE",
                    help="leave-one-source-out: every unit holding a row of SOURCE is test, never trained on")
    be.add_argument("--patience", type=int, default=5, help="early stopping patience (epochs)")
    be.add_argument("--max-minutes", type=float, help="stop training after this long")
    be.add_argument("--workers", type=int, help="DataLoader workers (default: one per core but one, at most 16; "
                    "--quick: 0)")
    be.add_argument("--data-root", help="folder the manifest paths are relative to (default: its own folder)")
    be.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    be.add_argument("--cache", help="tensor cache folder, filled before training and read every epoch (default: "
                    "$CXRCURATE_CACHE, else ~/.cache/cxrcurate/tensors; shared with `cxrcurate preprocess`)")
    be.add_argument("--no-cache", action="store_true", help="decode and preprocess every image every epoch")
    be.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    be.set_defaults(func=cmd_bench)

    pc = subparsers.add_parser("pretrain-chexnet",
                               help="train CheXNet (DenseNet-121, 14 findings) on a ChestX-ray14 manifest")
    pc.add_argument("--manifest", type=Path, required=True, help="a manifest holding nih-cxr14 rows")
    pc.add_argument("--out", type=Path, default=Path("runs/chexnet"),
                    help="folder for chexnet.safetensors and chexnet.json (default runs/chexnet)")
    pc.add_argument("--size", type=int, default=224, help="input side (default 224, as CheXNet)")
    pc.add_argument("--epochs", type=int, default=10, help="most passes over the training images (default 10)")
    pc.add_argument("--batch-size", type=int, default=16, help="images per training step (default 16)")
    pc.add_argument("--lr", default="1e-3", help="Adam learning rate (default 1e-3, as CheXNet)")
    pc.add_argument("--patience", type=int, default=2, help="early stopping patience in epochs (default 2)")
    pc.add_argument("--max-minutes", type=float, help="stop training after this long (default: no limit)")
    pc.add_argument("--max-images", type=int, help="train on a random subset (for a smoke test)")
    pc.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    pc.add_argument("--seed", type=int, default=0, help="seed of the patient split and the training (default 0)")
    pc.add_argument("--data-root", help="folder the manifest paths are relative to (default: its own folder)")
    pc.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    pc.set_defaults(func=cmd_pretrain_chexnet)
