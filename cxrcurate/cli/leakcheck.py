"""The parts of ``cxrcurate leakage`` that check a split made elsewhere (``--split-file``), list every crossing,
and measure what a leak is worth (``--measure``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .codes import EXIT_CHECK_FAILED

if TYPE_CHECKING:
    import pandas as pd


def add_args(lk: argparse.ArgumentParser) -> None:
    """The options of ``leakage`` for split files, crossings and the measure."""
    g = lk.add_argument_group("splits made elsewhere")
    g.add_argument("--split-file", action="append", default=[], metavar="SIDE=FILE",
                   help="a published split (repeatable: --split-file train=a.txt --split-file test=b.txt); a file "
                        "or folder with a split column, or a DatasetDict, needs no SIDE")
    g.add_argument("--split-format", choices=["auto", "covidx", "csv", "hf"], default="auto",
                   help="COVIDx label file, CSV/TSV/Parquet table, or saved DatasetDict / per-split Parquet folder "
                        "(default: from the path)")
    g.add_argument("--originals", type=Path, metavar="ORIGINALS.csv",
                   help="path -> original_sha256 table, so entries carrying an original file's sha256 match "
                        "(default: ORIGINALS.csv in the manifest's data root, if any)")
    g.add_argument("--examples", type=int, default=10, metavar="N", help="crossings and unmatched entries printed "
                   "(default 10; --format json lists every one)")
    g.add_argument("--montage", type=Path, metavar="PNG", help="draw the first --examples crossing pairs into PNG")
    g.add_argument("--data-root", type=Path, help="folder the manifest paths are relative to (default: its own folder)")
    m = lk.add_argument_group("what a leak is worth")
    m.add_argument("--measure", action="store_true",
                   help="nearest neighbours across the split, k-NN score under it vs a unit-aware split of the same "
                        "rows (the memorisation gain), and source confounds, with unit-bootstrap CIs")
    m.add_argument("--per-image", action="store_true",
                   help="measure a seeded per-image split of every labelled row (20%% test) instead of the split")
    m.add_argument("--embedding", choices=["auto", "descriptor", "phash"], default="auto",
                   help="image content: dedup's descriptor (decodes the files) or the pHash bits (default: "
                        "descriptor when the data root exists)")
    m.add_argument("--seed", type=int, default=0, help="seed of the unit-aware split and the bootstrap (default 0)")


def wants(args: argparse.Namespace) -> bool:
    """True when the command uses any option of this module."""
    return bool(args.split_file or args.measure or args.montage or args.per_image)


def _root(args: argparse.Namespace, df: pd.DataFrame) -> Path | None:
    from ..manifest import resolve_data_root

    try:
        return resolve_data_root(df, args.data_root)
    except Exception:  # noqa: BLE001 - no root recorded or present: callers fall back or say what is needed
        if args.data_root is not None:
            raise
        return None


def run(args: argparse.Namespace, df: pd.DataFrame, pairs: Any) -> int:
    """``leakage`` with split files, crossings, a montage and/or the measure; exit 1 when anything crosses."""
    import pandas as pd

    from ..splitcheck.crossings import crossings, montage
    from ..splits import leakage_report

    if args.examples < 0:
        raise UsageError(f"--examples {args.examples}: give 0 or more")
    pairs_df = pd.read_parquet(pairs) if pairs is not None and not isinstance(pairs, pd.DataFrame) else pairs
    out: dict[str, Any] = {}
    text: list[str] = []
    root = _root(args, df)
    if args.per_image:
        if args.split_file:
            raise UsageError("--per-image measures a split made here; leave out --split-file")
        from ..splitcheck.measure import per_image_split

        side = per_image_split(df, seed=args.seed)
        text.append(f"a per-image split (seed {args.seed}, 20% test) of the {int(side.notna().sum()):,} labelled rows")
    elif args.split_file:
        side = _side_from_files(args, df, root, out, text)
    else:
        if args.split_column not in df.columns:
            raise UsageError(f"no column {args.split_column!r}; give --split-file or run `cxrcurate split`")
        side = df[args.split_column]
    present = sorted(set(side.dropna().astype(str)))
    if len(present) < 2:  # a check of one side finds nothing by construction: say so, never "OK"
        out["checked"] = False
        text.append(f"NOT CHECKED: only side(s) {present} hold manifest rows; a leak needs two sides, so this split "
                    "cannot be checked against this manifest (add the sources its other side names)")
        print(json.dumps(out, indent=2, default=str) if args.format == "json" else "\n".join(text))
        # a file named on both sides is a leak whatever else matched; otherwise nothing could be checked (data)
        return EXIT_CHECK_FAILED if out.get("split_files", {}).get("named_on_two_sides") else 1
    report = leakage_report(df.assign(_side=side), split_column="_side", pairs=pairs_df, radius=args.radius)
    report.split_column = "split files" if args.split_file else ("per-image" if args.per_image else args.split_column)
    cross = crossings(df, side, pairs_df)
    out.update(leakage=report.to_dict(), crossings=cross.to_dict("records"))
    text += [report.to_text(), f"crossing pairs: {len(cross):,}" + (" (by strongest link: " + ", ".join(
        f"{k} {v:,}" for k, v in cross["link"].value_counts().items()) + ")" if len(cross) else "")]
    for rec in cross.head(args.examples).to_dict("records"):
        text.append(f"  {rec['link']:12s} {rec['side_a']} {rec['image_a']} ({rec['source_a']}, patient "
                    f"{rec['patient_a'] or 'unknown'})  <->  {rec['side_b']} {rec['image_b']} ({rec['source_b']}, "
                    f"patient {rec['patient_b'] or 'unknown'})")
    if args.montage:
        if root is None:
            raise UsageError("--montage needs the images: give --data-root")
        if len(cross):
            text.append(f"montage of {min(len(cross), args.examples)} crossing pair(s): "
                        f"{montage(cross, df, root, args.montage, n=args.examples or 12)}")
        else:
            text.append("no crossing pair to draw; no montage written")
    if args.measure:
        from ..splitcheck.measure import measure_leak

        kind = args.embedding if args.embedding != "auto" else ("descriptor" if root is not None else "phash")
        result = measure_leak(df, side, root=root, pairs=pairs_df, embedding=kind, seed=args.seed,
                              progress=not getattr(args, "quiet", False))
        out["measure"] = result.to_dict()
        text.append(result.to_text())
    print(json.dumps(out, indent=2, default=str) if args.format == "json" else "\n".join(text))
    return 0 if report.ok and not out.get("split_files", {}).get("named_on_two_sides") else EXIT_CHECK_FAILED


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with None (JSON null) for missing values, never NaN."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def _side_from_files(args: argparse.Namespace, df: pd.DataFrame, root: Path | None, out: dict[str, Any],
                     text: list[str]) -> pd.Series:
    """Read and match the split files; fill ``out``/``text`` with the matching's account."""
    import pandas as pd

    from ..splitcheck.files import read_split_files
    from ..splitcheck.match import match_entries

    entries = read_split_files(args.split_file, args.split_format)
    from ..tables import beside, read_table  # pandas: loaded when the command runs, not for --help

    dropped_path = beside(args.manifest, "dropped")  # the build's manifest.dropped.parquet, a release's open.dropped
    dropped = read_table(dropped_path, "dropped") if dropped_path.is_file() else None
    originals = args.originals or (root / "ORIGINALS.csv" if root is not None else None)
    if args.originals is not None and not args.originals.is_file():
        raise UsageError(f"--originals {args.originals}: no such file")
    orig = pd.read_csv(originals, dtype=str) if originals is not None and Path(originals).is_file() else None
    match = match_entries(entries, df, dropped, orig)
    out["split_files"] = {**match.summary(), "files": args.split_file,
                          "dropped_table": str(dropped_path) if dropped is not None else None,
                          "unmatched_entries": _records(match.unmatched[["origin", "name", "source", "side",
                                                                         "reason"]]),
                          "named_on_two_sides_list": match.listed_twice}
    text.append(match.to_text(args.examples))
    if dropped is None:
        text.append(f"  note: no dropped table at {dropped_path}: entries the build left out read 'not in the "
                    "manifest'")
    if match.side.isna().all():
        raise UsageError("no entry of the split files matches a manifest row; see the reasons above:\n"
                         + match.to_text(args.examples))
    return match.side
