"""The ``cxrcurate`` command. Subcommands import what they need when they run, so ``--help`` stays light."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .bench.audit_cli import register as register_audit
from .errors import CxrcurateError
from .fetch.command import register as register_fetch
from .preprocess.cli import register as register_preprocess

log = logging.getLogger("cxrcurate")


def _sample_sources() -> list[tuple[str, Path]]:
    from .sample import sample_sources

    return sample_sources()


def cmd_sources(args: argparse.Namespace) -> int:
    from .sources import list_sources

    for name, cls in list_sources().items():
        print(f"{name:13s} {cls.title}\n{'':13s} {cls.homepage}  [{cls.license}]")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    import pandas as pd

    from .build import build_manifest, parse_source_spec
    from .stats import dropped_summary, label_source_table, render

    specs = [parse_source_spec(s) for s in args.source]
    if args.sample:
        specs += _sample_sources()
    if not specs:
        raise CxrcurateError("give at least one --source NAME=PATH, or --sample for the data shipped with cxrcurate")
    views = [v.strip() for v in args.views.split(",")] if args.views else None
    kwargs = {"views": views} if views else {}
    result = build_manifest(specs, args.out, data_root=args.data_root, workers=args.workers,
                            progress=not args.quiet, **kwargs)
    print(f"wrote {result.manifest} ({result.n_images} images) and {result.dropped} ({result.n_dropped} dropped)")
    print(f"data root: {result.info['data_root']}")
    for name, s in result.info["sources"].items():
        notes = "".join(f"\n    {k}: {v}" for k, v in s.get("notes", {}).items())
        print(f"  {name}: {s['records']} images, {s['dropped']} dropped{notes}")
    from .manifest import read_manifest

    print("\n" + render(label_source_table(read_manifest(result.manifest))))
    if result.n_dropped:
        print("\ndropped (every file or row not in the manifest):")
        print(render(dropped_summary(pd.read_parquet(result.dropped))))
    if args.dedup:
        from .dedup import dedup_manifest

        print()
        _, dres = dedup_manifest(result.manifest, options=_dedup_options(args), progress=not args.quiet)
        _print_dedup(dres)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .manifest import read_manifest
    from .stats import duplicates_table, label_source_table, render

    df = read_manifest(args.manifest)
    print(render(label_source_table(df), args.format))
    if df["dup_group"].notna().any():
        print("\nduplicate groups shared by sources (dedup has run):" if args.format != "json" else "")
        print(render(duplicates_table(df), args.format))
    return 0


def _dedup_options(args: argparse.Namespace):
    from .dedup import DedupOptions

    kwargs = {"radius": args.radius, "knn": args.knn, "label_conflict": args.label_conflict,
              "workers": getattr(args, "workers", None)}
    if args.prefer:
        kwargs["preference"] = tuple(s.strip() for s in args.prefer.split(","))
    return DedupOptions(**kwargs)


def _print_dedup(result) -> None:
    from .stats import render

    s = result.summary
    print(f"{s['images']} images in {s['groups']} groups; {s['groups_with_copies']} pictures have copies; "
          f"{s['copies_not_kept']} rows not kept; {s['accepted_pairs']} of {s['candidate_pairs']} candidate pairs "
          f"verified as copies ({s['accepted_by_kind']})")
    import pandas as pd

    if s["cross_source"]:
        print("\ngroups holding pictures of both sources:\n" + render(pd.DataFrame(s["cross_source"])))
    labels = result.conflicts[result.conflicts["field"] == "label"] if len(result.conflicts) else result.conflicts
    if len(labels):
        what = "excluded (keep=False)" if s["options"]["label_conflict"] == "exclude" else "kept, NOT resolved"
        print(f"\nWARNING: {len(labels)} picture(s) carry different labels in different sources; {what}:")
        print(render(labels[["dup_group", "values", "sources"]]))


def cmd_dedup(args: argparse.Namespace) -> int:
    from .dedup import dedup_manifest

    target, result = dedup_manifest(args.manifest, args.out, args.data_root, _dedup_options(args),
                                    progress=not args.quiet)
    print(f"wrote {target} (+ pairs and conflicts tables beside it)")
    _print_dedup(result)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    import pandas as pd

    from .manifest import read_manifest, write_manifest
    from .splits import SIDES, leakage_report, make_split

    out = make_split(read_manifest(args.manifest), test=args.test, val=args.val, seed=args.seed,
                     holdout_source=args.by_source)
    info = {k: v for k, v in out.attrs["cxrcurate"].items() if k not in ("schema_version", "cxrcurate_version")}
    dest = write_manifest(out, args.out or args.manifest, info=info)
    s = info["split"]
    print(f"wrote {dest}: " + ", ".join(f"{k} {v:,}" for k, v in s["rows"].items())
          + f" rows; {s['units']:,} units (patients or linked pictures); seed {s['seed']}")
    for side, method in s["method"].items():
        print(f"  {side}: {method}")
    table = pd.crosstab(out["label"], out["split"], margins=True, margins_name="all")
    print(table.reindex(columns=[c for c in (*SIDES, "all") if c in table.columns]).to_string())
    report = leakage_report(out)
    print(report.to_text())
    return 0 if report.ok else 1


def cmd_leakage(args: argparse.Namespace) -> int:
    import json

    from .manifest import read_manifest
    from .splits import leakage_report

    report = leakage_report(read_manifest(args.manifest), split_column=args.split_column, pairs=args.pairs,
                            radius=args.radius)
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.format == "json" else report.to_text())
    return 0 if report.ok else 1


def cmd_models(args: argparse.Namespace) -> int:
    from .bench.run import models_table

    print(models_table().to_string(index=False))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.run import BenchOptions, compare_table, run_bench, summary_markdown
    from .bench.train import TrainConfig

    if args.compare:
        print(summary_markdown(args.compare) if args.format == "markdown" else compare_table(args.compare).to_string(
            index=False))
        return 0
    if not args.model:
        raise CxrcurateError("give --model NAME (see `cxrcurate models`) or --compare RUN...")
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr if args.lr == "auto" else float(args.lr), patience=args.patience,
                        workers=args.workers, seed=args.seed, max_minutes=args.max_minutes)
    opts = BenchOptions(model=args.model, init=args.init, weights=args.weights, trust_checkpoint=args.trust_checkpoint,
                        split_policy=args.split_policy, test=args.test, val=args.val, seed=args.seed, runs=args.runs,
                        size=args.size, max_images=args.max_images, data_root=args.data_root, train=train,
                        resume=args.resume, cache=args.cache)
    if args.negatives:
        opts.negatives = tuple(x.strip() for x in args.negatives.split(","))
    manifest = args.manifest
    if args.quick:
        opts.apply_quick()
    if manifest is None:
        if not args.quick:
            raise CxrcurateError("give --manifest PATH (or --quick to run on the sample shipped with cxrcurate)")
        from .build import build_manifest
        from .sample import sample_sources

        print("no --manifest: building the shipped sample (30 images; a smoke test, not a benchmark)")
        manifest = build_manifest(sample_sources(), args.out / "sample-manifest", workers=1, progress=False).manifest
        if not args.negatives:
            opts.negatives = ("normal", "pneumonia", "other")
    run = run_bench(manifest, args.out, opts, progress=not args.quiet)
    from .bench.run import is_main

    if is_main():  # under torchrun, rank 0 wrote the run folder and reports it
        print(f"wrote {run}")
        print(summary_markdown([run]))
    return 0


def cmd_pretrain_chexnet(args: argparse.Namespace) -> int:
    from .bench.chexnet import pretrain_chexnet
    from .bench.train import TrainConfig

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=float(args.lr), patience=args.patience,
                      workers=args.workers, seed=args.seed, max_minutes=args.max_minutes)
    path = pretrain_chexnet(args.manifest, args.out, size=args.size, cfg=cfg, data_root=args.data_root,
                            max_images=args.max_images, progress=not args.quiet)
    print(f"wrote {path} and {path.with_suffix('.json').name} (test AUROC per finding); use it with "
          f"`cxrcurate bench --model cxnet --weights {path}`")
    return 0


def _add_dedup_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deduplication")
    g.add_argument("--radius", type=int, default=8, help="pHash Hamming radius for candidates (default 8)")
    g.add_argument("--knn", type=int, default=5, help="nearest thumbnails per image as candidates (default 5)")
    g.add_argument("--prefer", help="comma-separated source order for the copy to keep (default: originals first)")
    g.add_argument("--label-conflict", choices=["exclude", "report"], default="exclude",
                   help="copies whose sources disagree on the label: exclude them all (default) or only report")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrcurate", description="Honest manifests of public chest X-ray collections.")
    p.add_argument("--version", action="version", version=f"cxrcurate {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sources", help="list the source loaders")
    s.set_defaults(func=cmd_sources)

    b = sub.add_parser("build-manifest", help="build manifest.parquet + manifest.dropped.parquet from source folders")
    b.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                   help="a source folder laid out as published (repeatable); see `cxrcurate sources`")
    b.add_argument("--sample", action="store_true", help="add the small real sample shipped inside cxrcurate")
    b.add_argument("--out", required=True, type=Path, help="output folder")
    b.add_argument("--views", help="comma-separated views to keep (default: PA,AP,AP_supine,unknown)")
    b.add_argument("--data-root", type=Path, help="make manifest paths relative to this folder")
    b.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.add_argument("--dedup", action="store_true", help="also find duplicates (as `cxrcurate dedup`)")
    _add_dedup_args(b)
    b.set_defaults(func=cmd_build)

    d = sub.add_parser("dedup", help="fill dup_group/keep; write the pairs (with evidence) and conflicts tables")
    d.add_argument("manifest", type=Path)
    d.add_argument("--out", type=Path, help="write the deduplicated manifest here (default: in place)")
    d.add_argument("--data-root", type=Path, help="folder the manifest paths are relative to (default: recorded)")
    d.add_argument("--workers", type=int, help="processes (default: all cores)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_dedup_args(d)
    d.set_defaults(func=cmd_dedup)

    st = sub.add_parser("stats", help="label x source table of a manifest")
    st.add_argument("manifest", type=Path)
    st.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    st.set_defaults(func=cmd_stats)

    sp = sub.add_parser("split", help="patient-level train/val/test split that no patient or picture crosses")
    sp.add_argument("manifest", type=Path)
    sp.add_argument("--test", type=float, default=0.2, help="test fraction (default 0.2; ignored with --by-source)")
    sp.add_argument("--val", type=float, default=0.1, help="validation fraction (default 0.1)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    sp.add_argument("--by-source", metavar="SOURCE",
                    help="leave-one-source-out: every row of SOURCE (and every patient or picture it shares) is test")
    sp.add_argument("--out", type=Path, help="write here (default: rewrite MANIFEST in place, atomically)")
    sp.set_defaults(func=cmd_split)

    lk = sub.add_parser("leakage", help="check a split for patients, copies and near copies on two sides")
    lk.add_argument("manifest", type=Path)
    lk.add_argument("--split-column", default="split", help="column holding train/val/test (default: split)")
    lk.add_argument("--pairs", type=Path, metavar="PAIRS.parquet",
                    help="dedup's pairs table; without it near copies are phash pairs within --radius")
    lk.add_argument("--radius", type=int, default=4, help="phash Hamming radius without --pairs (default 4)")
    lk.add_argument("--format", choices=["text", "json"], default="text")
    lk.set_defaults(func=cmd_leakage)

    mo = sub.add_parser("models", help="the COVID-CXNet model ladder and the paper's figures")
    mo.set_defaults(func=cmd_models)

    be = sub.add_parser("bench", help="train and score a ladder model on a manifest (or compare runs)")
    be.add_argument("--model", help="ladder model (see `cxrcurate models`)")
    be.add_argument("--manifest", type=Path, help="manifest to use (default with --quick: the shipped sample)")
    be.add_argument("--out", type=Path, default=Path("runs/latest"), help="run folder (default runs/latest)")
    be.add_argument("--compare", type=Path, nargs="+", metavar="RUN", help="print these runs side by side")
    be.add_argument("--format", choices=["text", "markdown"], default="markdown")
    be.add_argument("--quick", action="store_true", help="small, fast CPU run to see the whole path work")
    be.add_argument("--init", choices=["random", "imagenet", "chexnet"], help="initialisation (default: the model's)")
    be.add_argument("--weights", help="checkpoint for --init imagenet/chexnet")
    be.add_argument("--trust-checkpoint", action="store_true", help="allow checkpoints that need full unpickling")
    be.add_argument("--split-policy", choices=["group", "manifest", "per-image"], default="group",
                    help="group: patient/duplicate-aware (default); per-image: the paper's LEAKY protocol")
    be.add_argument("--negatives", help="labels of the non-COVID class for binary models (default: normal)")
    be.add_argument("--test", type=float, default=0.2)
    be.add_argument("--val", type=float, default=0.1)
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--runs", type=int, default=1, help="repeat with seeds seed..seed+runs-1; report mean/std/range")
    be.add_argument("--size", type=int, help="input side (default: the model's)")
    be.add_argument("--max-images", type=int, help="cap the task's images (stratified sample)")
    be.add_argument("--epochs", type=int, default=30)
    be.add_argument("--batch-size", type=int, default=16)
    be.add_argument("--lr", default="1e-4", help="learning rate, or auto (LR range test)")
    be.add_argument("--patience", type=int, default=5, help="early stopping patience (epochs)")
    be.add_argument("--max-minutes", type=float, help="stop training after this long")
    be.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    be.add_argument("--data-root", help="folder the manifest paths are relative to (default: recorded)")
    be.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    be.add_argument("--cache", help="tensor cache folder filled by `cxrcurate preprocess` (read instead of decoding)")
    be.add_argument("-q", "--quiet", action="store_true")
    be.set_defaults(func=cmd_bench)

    pc = sub.add_parser("pretrain-chexnet", help="train CheXNet (DenseNet-121, 14 findings) on a ChestX-ray14 manifest")
    pc.add_argument("--manifest", type=Path, required=True, help="a manifest holding nih-cxr14 rows")
    pc.add_argument("--out", type=Path, default=Path("runs/chexnet"))
    pc.add_argument("--size", type=int, default=224)
    pc.add_argument("--epochs", type=int, default=10)
    pc.add_argument("--batch-size", type=int, default=16)
    pc.add_argument("--lr", default="1e-3")
    pc.add_argument("--patience", type=int, default=2)
    pc.add_argument("--max-minutes", type=float)
    pc.add_argument("--max-images", type=int, help="train on a random subset (for a smoke test)")
    pc.add_argument("--workers", type=int, default=2)
    pc.add_argument("--seed", type=int, default=0)
    pc.add_argument("--data-root")
    pc.add_argument("-q", "--quiet", action="store_true")
    pc.set_defaults(func=cmd_pretrain_chexnet)
    register_fetch(sub)
    register_audit(sub)
    register_preprocess(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (CxrcurateError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
