"""Data commands: ``sources``, ``build-manifest``, ``stats``, ``dedup``, ``split``, ``leakage``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from . import leakcheck
from .codes import EXIT_CHECK_FAILED
from .options import ranged, workers


def _copy_sample(out: Path) -> list[tuple[str, Path]]:
    from ..manifest import check_output_folder
    from ..sample import copy_sample

    check_output_folder(out)
    return copy_sample(out)


def cmd_sources(args: argparse.Namespace) -> int:
    from ..sources import list_sources

    for name, cls in list_sources().items():
        print(f"{name:13s} {cls.title}\n{'':13s} {cls.homepage}  [{cls.license}]")
    return 0


def cmd_build(args: argparse.Namespace) -> int:

    from ..build import build_manifest, parse_source_spec
    from ..stats import dropped_summary, label_source_table, render

    specs = [parse_source_spec(s) for s in args.source]
    if not specs and not args.sample:
        raise UsageError("give at least one --source NAME=PATH, or --sample for the data shipped with cxrcurate")
    if args.sample:
        specs += _copy_sample(args.out)
        if not args.source and args.data_root is None:
            args.data_root = args.out  # the sample alone: the manifest sits in its data root, found with no option
    views = [v.strip() for v in args.views.split(",")] if args.views else None
    kwargs = {"views": views} if views else {}
    _check_radius(args)
    if args.dedup:
        dopts = _dedup_options(args)
        if dopts.feature_cache:  # dedup's features from the build's own decode: no second decode of the collection
            import functools

            from ..dedup.featcache import feature_folder, feature_tag, store_decoded

            kwargs["on_decode"] = functools.partial(store_decoded, feature_folder(dopts.feature_dir), feature_tag())
    result = build_manifest(specs, args.out, data_root=args.data_root, workers=args.workers,
                            progress=not args.quiet, rehash=args.rehash, **kwargs)
    print(f"wrote {result.manifest} ({result.n_images} images) and {result.dropped} ({result.n_dropped} dropped)")
    print(f"data root: {result.info['data_root']}")
    if Path(result.manifest).resolve().parent != Path(result.info["data_root"]):
        print(f"  (the manifest is not in its data root: pass --data-root {result.info['data_root']} to the commands "
              "that open its images; a data root is never read from the manifest itself)")
    for name, s in result.info["sources"].items():
        notes = "".join(f"\n    {k}: {v}" for k, v in s.get("notes", {}).items())
        print(f"  {name}: {s['records']} images, {s['dropped']} dropped{notes}")
    from ..manifest import read_dropped, read_manifest

    print("\n" + render(label_source_table(read_manifest(result.manifest))))
    if result.n_dropped:
        print("\ndropped (every file or row not in the manifest):")
        print(render(dropped_summary(read_dropped(result.dropped))))
    if args.dedup:
        from ..dedup.engine import dedup_manifest

        print()
        _, dres = dedup_manifest(result.manifest, data_root=result.info["data_root"], options=dopts,
                                 progress=not args.quiet, in_place=True)  # its own fresh output, its own root
        _print_dedup(dres)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from ..dedup import read_pairs
    from ..manifest import MANIFEST_KINDS
    from ..splits import split_groups
    from ..stats import LEGEND, duplicates_table, label_source_table, legend, render, split_summary
    from ..tables import read_table

    # a manifest, a release's open.parquet or nih-cxr14.parquet, or your own table
    df = read_table(args.manifest, (*MANIFEST_KINDS, "nih-cxr14"))
    units = None if "unit" in df.columns else split_groups(df, read_pairs(args.manifest))
    tables = [("summary", "kept images and units per label and split (one copy per picture)",
               split_summary(df, units)),
              ("by_source", "per source and label (images: every row; kept: one per picture)", label_source_table(df))]
    if "dup_group" in df.columns and df["dup_group"].notna().any():
        tables.append(("duplicates", "duplicate groups shared by sources (dedup has run)", duplicates_table(df)))
    if any(c.startswith("flag_") for c in df.columns):
        from ..release.card import flags_by_source

        tables.append(("flags", "quality flags per source and label (never used to drop a row)", flags_by_source(df)))
    if args.format == "json":
        doc = {key: json.loads(render(table, "json")) for key, _, table in tables}
        print(json.dumps({"manifest": str(args.manifest), **doc, "legend": LEGEND}, indent=2))
        return 0
    for i, (_, title, table) in enumerate(tables):
        head = f"## {title}\n" if args.format == "markdown" else f"{title}:\n"
        print(("\n" if i else "") + head + render(table, args.format))
        print(("\n" if args.format == "markdown" else "") + legend(list(table.columns)))
    return 0


def _stats_legend() -> str:
    from ..labels import STATS_LEGEND as LEGEND  # no pandas: `--help` stays light

    return "\n".join(f"  {k}: {v}" for k, v in LEGEND.items())


def _check_radius(args: argparse.Namespace) -> None:
    from ..dedup.hashindex import MAX_RADIUS

    if not 0 <= args.radius <= MAX_RADIUS:
        raise UsageError(f"--radius {args.radius}: a pHash Hamming radius is between 0 and {MAX_RADIUS} bits "
                         "(the defaults, 8 for dedup and 4 for leakage, are the measured ones)")


def _dedup_options(args: argparse.Namespace):
    from ..dedup.engine import DedupOptions

    if args.gate is not None and args.gate < 0:
        raise UsageError(f"--gate {args.gate}: a count of keypoint matches, 0 (off) or more (default 14)")
    kwargs = {"radius": args.radius, "knn": args.knn, "label_conflict": args.label_conflict,
              "workers": getattr(args, "workers", None), "engine": args.engine, "scheduler": args.scheduler,
              "work_dir": args.work_dir, "feature_cache": not args.no_feature_cache, "feature_dir": args.feature_cache}
    if args.gate is not None:  # else the engine's default (``features.GATE_MATCHES``)
        kwargs["gate"] = args.gate
    if args.prefer:
        kwargs["preference"] = tuple(s.strip() for s in args.prefer.split(","))
    return DedupOptions(**kwargs)


def _print_dedup(result) -> None:
    from ..stats import render

    s = result.summary
    print(f"{s['images']} images in {s['groups']} groups; {s['groups_with_copies']} pictures have copies; "
          f"{s['copies_not_kept']} rows not kept; {s['accepted_pairs']} of {s['candidate_pairs']} candidate pairs "
          f"verified as copies ({s['accepted_by_kind']})")
    f = result.features
    if f and not s["options"]["feature_cache"]:
        print(f"features: {f['features_computed']} pictures decoded and computed (no feature cache)")
    elif f:
        from ..dedup.featcache import feature_folder

        bad = f", {f['feature_cache_bad']} unreadable entries recomputed" if f.get("feature_cache_bad") else ""
        print(f"features: {f['features_reused']} pictures read from the feature cache, {f['features_computed']} "
              f"decoded and computed{bad} ({feature_folder(s['options']['feature_dir'])})")
    import pandas as pd

    if s["cross_source"]:
        print("\ngroups holding pictures of both sources:\n" + render(pd.DataFrame(s["cross_source"])))
    labels = result.conflicts[result.conflicts["field"] == "label"] if len(result.conflicts) else result.conflicts
    if len(labels):
        what = "excluded (keep=False)" if s["options"]["label_conflict"] == "exclude" else "kept, NOT resolved"
        print(f"\nWARNING: {len(labels)} picture(s) carry different labels in different sources; {what}:")
        print(render(labels[["dup_group", "values", "sources"]]))


def cmd_dedup(args: argparse.Namespace) -> int:
    from ..dedup.engine import dedup_manifest, output_path
    from ..manifest import check_output_file

    _check_radius(args)
    check_output_file(output_path(args.manifest, args.out, args.in_place))
    target, result = dedup_manifest(args.manifest, args.out, args.data_root, _dedup_options(args),
                                    progress=not args.quiet, in_place=args.in_place)
    print(f"wrote {target} (+ pairs and conflicts tables beside it)")
    _print_dedup(result)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..dedup import carry_companions, output_path, read_pairs
    from ..manifest import check_output_file, read_manifest, write_like
    from ..splits import SIDES, leakage_report, make_split

    dest = check_output_file(output_path(args.manifest, args.out, args.in_place))
    pairs = read_pairs(args.manifest)
    out = make_split(read_manifest(args.manifest), test=args.test, val=args.val, seed=args.seed,
                     holdout_source=args.by_source, pairs=pairs)
    info = out.attrs["cxrcurate"]
    write_like(out, dest, info)  # every column kept; only split is rewritten
    carry_companions(args.manifest, dest)
    s = info["split"]
    print(f"wrote {dest}: " + ", ".join(f"{k} {v:,}" for k, v in s["rows"].items())
          + f" rows; {s['units']:,} units (patients or linked pictures); seed {s['seed']}")
    for side, method in s["method"].items():
        print(f"  {side}: {method}")
    table = pd.crosstab(out["label"], out["split"], margins=True, margins_name="all")
    print(table.reindex(columns=[c for c in (*SIDES, "all") if c in table.columns]).to_string())
    report = leakage_report(out, pairs=pairs)
    print(report.to_text())
    return 0 if report.ok else EXIT_CHECK_FAILED


def cmd_leakage(args: argparse.Namespace) -> int:
    import json

    from ..dedup import load_pairs, pairs_path, read_pairs
    from ..manifest import MANIFEST_KINDS
    from ..splits import leakage_report
    from ..tables import read_table

    _check_radius(args)
    df = read_table(args.manifest, (*MANIFEST_KINDS, "nih-cxr14"))  # any table with a split: a release's included
    pairs = load_pairs(args.pairs) if args.pairs is not None else read_pairs(args.manifest)
    if args.pairs is None and args.format == "text":
        found = pairs_path(args.manifest)
        print(f"pairs: {found}" if pairs is not None else f"pairs: none beside the table ({found.name}); near "
              f"copies are phash pairs within {args.radius}")
    if leakcheck.wants(args):
        if args.run is not None:
            raise UsageError("--run checks a bench run's splits; use it without --split-file/--measure/--montage")
        return leakcheck.run(args, df, pairs)
    if args.run is None:
        report = leakage_report(df, split_column=args.split_column, pairs=pairs, radius=args.radius)
        print(json.dumps(report.to_dict(), indent=2, default=str) if args.format == "json" else report.to_text())
        return 0 if report.ok else EXIT_CHECK_FAILED
    from ..bench.record import seed_splits

    splits = list(seed_splits(args.run))  # the run record's split tables, checked for their run id
    if not splits:
        raise UsageError(f"{args.run}: a run folder without any seed; did the bench run finish?")
    ok, results = True, {}
    for seed, split in splits:
        side = split.set_index("image_id")["split"]
        report = leakage_report(df.assign(split=df["image_id"].map(side)), pairs=pairs, radius=args.radius)
        ok &= report.ok
        results[seed] = report
        if args.format == "text":
            print(f"== {seed}: its split mapped onto the full manifest {args.manifest}")
            print(report.to_text())
    if args.format == "json":
        print(json.dumps({k: r.to_dict() for k, r in results.items()}, indent=2, default=str))
    return 0 if ok else EXIT_CHECK_FAILED


def _add_dedup_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deduplication")
    g.add_argument("--radius", type=int, default=4, help="pHash Hamming radius for candidates (default 4)")
    g.add_argument("--knn", type=ranged(int, 1, 100), default=8,
                   help="nearest images per image by crop-tolerant descriptors, as candidates, 1..100 (default 8)")
    g.add_argument("--gate", type=int, default=None,
                   help="verification skips the full match of pairs with fewer ratio-test matches among the 300 "
                   "strongest keypoints (default 14, measured in docs/dedup.md; 0: off)")
    g.add_argument("--engine", choices=["local", "dask"], default="local",
                   help="where features, candidate search and verification run "
                   "(dask: pip install cxrcurate[distributed])")
    g.add_argument("--scheduler", help="Dask scheduler address (tcp://HOST:8786); default: a local cluster")
    g.add_argument("--work-dir", help="folder for per-image features during the run; on a cluster, one all workers "
                   "see (default: system temp)")
    fc = g.add_mutually_exclusive_group()
    fc.add_argument("--feature-cache", metavar="DIR", help="folder keeping each picture's dedup features across runs, "
                    "by pixel hash (default: $CXRCURATE_DEDUP_CACHE, else ~/.cache/cxrcurate/dedup-features); "
                    "build-manifest --dedup fills it from its own decode")
    fc.add_argument("--no-feature-cache", action="store_true",
                    help="compute every picture's dedup features from its file, storing nothing")
    g.add_argument("--prefer", help="comma-separated source order for the copy to keep (default: originals first)")
    g.add_argument("--label-conflict", choices=["exclude", "report"], default="exclude",
                   help="copies whose sources disagree on the label: exclude them all (default) or only report")


def _add_output_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--out`` / ``--in-place``: a command that rewrites a table needs one of them (nothing is overwritten by
    surprise); either way every column the command does not own is kept."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--out", type=Path, help=f"write {what} to this new file (MANIFEST stays as it is)")
    g.add_argument("--in-place", action="store_true",
                   help="rewrite MANIFEST itself (atomically), keeping every column this command does not own")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the data commands to the ``cxrcurate`` subcommands."""
    s = subparsers.add_parser("sources", help="list the source loaders")
    s.set_defaults(func=cmd_sources)

    b = subparsers.add_parser("build-manifest",
                              help="build manifest.parquet + manifest.dropped.parquet from source folders")
    b.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                   help="a source folder laid out as published (repeatable); see `cxrcurate sources`")
    b.add_argument("--sample", action="store_true", help="add the small real sample shipped inside cxrcurate (copied "
                   "into --out, which is then the data root when the sample is the only input)")
    b.add_argument("--out", required=True, type=Path, help="output folder")
    b.add_argument("--views", help="comma-separated views to keep (default: PA,AP,AP_supine,unknown)")
    b.add_argument("--data-root", type=Path, help="make manifest paths relative to this folder")
    b.add_argument("--workers", type=workers(), help="decoding processes, 1..512 (default: all cores)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.add_argument("--dedup", action="store_true", help="also find duplicates (as `cxrcurate dedup`)")
    b.add_argument("--rehash", action="store_true",
                   help="decode every file again, ignoring the fingerprint cache in --out (it is already keyed on "
                        "size, mtime, ctime, inode and a content sample)")
    _add_dedup_args(b)
    b.set_defaults(func=cmd_build)

    d = subparsers.add_parser("dedup", help="fill dup_group/keep; write the pairs (with evidence) and conflicts tables")
    d.add_argument("manifest", type=Path, help="the manifest to deduplicate (manifest.parquet, or a table you bring)")
    _add_output_args(d, "the deduplicated table (its pairs and conflicts tables are written beside it)")
    d.add_argument("--data-root", type=Path, help="folder the manifest paths are relative to (default: the "
                   "manifest's own folder; never a folder the file names)")
    d.add_argument("--workers", type=workers(), help="processes, 1..512 (default: all cores)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_dedup_args(d)
    d.set_defaults(func=cmd_dedup)

    st = subparsers.add_parser(
        "stats", help="kept images and units per label and split, then per-source detail",
        description="First the answer to 'how many unique images per label and split?': kept images (one copy per "
                    "picture) and units (what a split keeps together) per label and side; then per source and "
                    "label; then duplicates shared by sources and quality flags when present. Reads a manifest or "
                    "a release table (open.parquet).",
        epilog="columns:\n" + _stats_legend(), formatter_class=argparse.RawDescriptionHelpFormatter)
    st.add_argument("manifest", type=Path, help="a manifest (manifest.parquet) or a release table (open.parquet)")
    st.add_argument("--format", choices=["text", "markdown", "json"], default="text",
                    help="text tables with a legend (default), markdown tables, or one JSON object (tables by name "
                         "and the legend)")
    st.set_defaults(func=cmd_stats)

    sp = subparsers.add_parser("split", help="patient-level train/val/test split that no patient or picture crosses")
    sp.add_argument("manifest", type=Path, help="the FULL manifest to split (every row: links through rows a task "
                    "drops still bind)")
    sp.add_argument("--test", type=float, default=0.2, help="test fraction (default 0.2; ignored with --by-source)")
    sp.add_argument("--val", type=float, default=0.1, help="validation fraction (default 0.1)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    sp.add_argument("--by-source", metavar="SOURCE",
                    help="leave-one-source-out: every row of SOURCE (and every patient or picture it shares) is test")
    _add_output_args(sp, "the split table")
    sp.set_defaults(func=cmd_split)

    lk = subparsers.add_parser("leakage", help="check a split for patients, copies and near copies on two sides")
    lk.add_argument("manifest", type=Path, help="a manifest, a release table (open.parquet, nih-cxr14.parquet) or "
                    "your own Parquet/CSV with image_id and a split column; the FULL table a --run was made on")
    lk.add_argument("--split-column", default="split", help="column holding train/val/test (default: split)")
    lk.add_argument("--pairs", type=Path, metavar="PAIRS.parquet",
                    help="dedup's pairs table (default: the one beside MANIFEST, if any); without one near copies "
                         "are phash pairs within --radius")
    lk.add_argument("--radius", type=int, default=4, help="phash Hamming radius without --pairs (default 4)")
    lk.add_argument("--run", type=Path, metavar="RUN",
                    help="check every seed of a `cxrcurate bench` run folder: its split mapped onto the FULL manifest "
                         "(links through rows the run left out count)")
    lk.add_argument("--format", choices=["text", "json"], default="text",
                    help="text report (default) or JSON (the findings per kind, for scripts)")
    leakcheck.add_args(lk)
    lk.set_defaults(func=cmd_leakage)
