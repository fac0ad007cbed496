"""Check a release's own files and a user's downloaded sources against it, materialise it over them, load it.

``verify_release`` first checks the release folder itself: every file ``release.json`` lists must have the sha256
it records (a table edited after the build is named), and no unlisted file may sit beside them. Then it compares
every file the release names with the file under the user's data root by sha256 (missing, changed), refuses
files that lead out of the root through a link (``manifest.safe_path``, the rule ``build-manifest`` applies), and
lists image files the release does not know (extra). ``materialise`` turns the release plus the user's files into
a full manifest (paths, pixel fingerprints) with the release's split, dup groups and flags, which ``cxrcurate bench
--split-policy manifest`` trains on. ``load_release`` returns either.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..build import fingerprint_files
from ..errors import CxrcurateError, UnsafeManifestPath
from ..fetch.download import file_sha256
from ..imageio import is_image_name
from ..manifest import read_dropped, read_manifest, safe_path, to_table, validate_table, write_manifest
from ..tables import read_table
from .schema import FACTS, TABLE_FILES

TABLES = ("open", "nih-cxr14")
MAX_LISTED = 20


def _table(release: str | os.PathLike, table: str = "open") -> pd.DataFrame:
    folder = Path(release)
    if table not in TABLES:
        raise CxrcurateError(f"unknown release table {table!r}; choose from {list(TABLES)}")
    path = folder / TABLE_FILES[table]
    if not path.is_file():
        raise CxrcurateError(release_folder_error(folder, path))
    df = read_table(path, "release" if table == "open" else "nih-cxr14")
    df.attrs["cxrcurate"] = {**df.attrs.get("cxrcurate", {}), "release_folder": str(folder), "file": path.name}
    return df


def release_folder_error(folder: Path, path: Path) -> str:
    """Why ``folder`` cannot be read as a release, and where a release is found."""
    what = "does not exist" if not folder.exists() else ("is a file" if not folder.is_dir() else f"has no {path.name}")
    return (f"release folder {folder} {what}: a release folder holds open.parquet, nih-cxr14.parquet and "
            "release.json (the published one is manifests/v1 in a clone of the cxrcurate repository); pass its path")


def check_files(release: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(tampered, unlisted)``: files of the release folder whose sha256 is not the one ``release.json`` lists
    (or that are missing), and files it does not list.

    Raises:
        CxrcurateError: ``release.json`` is missing, unreadable or lists no digests (not a release folder, or one
            written before releases listed them: build it again).
    """
    folder = Path(release)
    facts_path = folder / FACTS
    try:
        listed = json.loads(facts_path.read_text())["files"]
    except FileNotFoundError as exc:
        raise CxrcurateError(f"{facts_path} not found: is {folder} a release folder (e.g. manifests/v1)?") from exc
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CxrcurateError(f"{facts_path}: no readable list of file digests ('files'); the release cannot be "
                             "checked. Take the release folder again, or build it with `cxrcurate release build`"
                             ) from exc
    tampered = [name for name, sha in sorted(listed.items())
                if not (folder / name).is_file() or file_sha256(folder / name) != sha]
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != FACTS and not p.name.startswith(".")}
    return tampered, sorted(present - set(listed))


@dataclass
class VerifyReport:
    """What ``verify_release`` found; ``ok`` when the release's own files match its digests and none of your files
    is missing, changed or reached through a link out of the root (extra files are reported only)."""

    root: Path
    checked: int
    tampered: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    outside_root: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    sources_absent: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.tampered or self.unlisted or self.outside_root or self.missing or self.changed)

    def to_text(self) -> str:
        """A plain-text report: counts, then up to 20 paths per kind."""
        head = (f"verified {self.checked:,} release files under {self.root}: "
                f"{self.checked - len(self.missing) - len(self.changed):,} match, {len(self.missing):,} missing, "
                f"{len(self.changed):,} changed (sha256 differs), {len(self.extra):,} extra image files")
        lines = []
        if self.tampered or self.unlisted:
            lines.append("RELEASE TAMPERED: these release files are not the ones its release.json lists; take the "
                         "release folder again")
            lines += [f"  tampered (sha256 differs from release.json, or missing): {n}" for n in self.tampered]
            lines += [f"  not listed in release.json: {n}" for n in self.unlisted]
            if self.checked == 0:
                return "\n".join(lines)
        lines += [head, "OK" if self.ok else "MISMATCH: your files are not the release's"]
        if self.sources_absent:
            lines.append(f"  source folders absent: {', '.join(self.sources_absent)} "
                         "(fetch them at the release's commits with `cxrcurate fetch --release RELEASE --out ROOT`)")
        lines += [f"  refused: {p} leads out of {self.root} through a link" for p in self.outside_root[:MAX_LISTED]]
        for kind in ("missing", "changed", "extra"):
            items = getattr(self, kind)
            lines += [f"  {kind}: {p}" for p in items[:MAX_LISTED]]
            if len(items) > MAX_LISTED:
                lines.append(f"  ... and {len(items) - MAX_LISTED:,} more {kind}")
        return "\n".join(lines)


def verify_release(release: str | os.PathLike, root: str | os.PathLike) -> VerifyReport:
    """Check the release's own files against the digests ``release.json`` lists (a tampered or unlisted file ends
    the check there: nothing the release says can be trusted), then the files under ``root`` against the release
    by sha256; a file reached through a link out of ``root`` is refused (``outside_root``), never hashed.

    Args:
        release: a release folder (``manifests/v1``).
        root: the folder holding one folder per source (``root/cohen``, ``root/hannover``, ...).

    Raises:
        CxrcurateError: the release or the root is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise CxrcurateError(f"data root {root} is not a folder; pass the folder holding one folder per source")
    tampered, unlisted = check_files(release)
    if tampered or unlisted:  # the release itself is not what was published: nothing else it says can be trusted
        return VerifyReport(root, 0, tampered=tampered, unlisted=unlisted)
    df = _table(release)
    dropped_path = Path(release) / TABLE_FILES["dropped"]
    known = set(df["path"])
    if dropped_path.is_file():
        known |= set(read_dropped(dropped_path)["path"].dropna())
    report = VerifyReport(root, len(df))
    for image_id, path, sha in zip(df["image_id"], df["path"], df["file_sha256"], strict=True):
        try:
            f = safe_path(root, path, image_id)  # the path rule: nothing outside the root is opened
        except UnsafeManifestPath:
            report.outside_root.append(path)
            continue
        if not f.is_file():
            report.missing.append(path)
        elif file_sha256(f) != sha:
            report.changed.append(path)
    for source in sorted(set(df["source"])):
        folder = root / source
        if not folder.is_dir():
            report.sources_absent.append(source)
            continue
        for dirpath, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                rel = Path(dirpath, name).relative_to(root).as_posix()
                if is_image_name(name) and not name.startswith(".") and rel not in known:
                    report.extra.append(rel)
    return report


def materialise(release: str | os.PathLike, root: str | os.PathLike, out: str | os.PathLike | None = None,
                allow_missing: bool = False, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """The release over the user's files as a full manifest (validated), written to ``out`` when given.

    Pixel fingerprints (``pixel_sha256``, ``phash``) are computed from the user's files; the release's labels,
    patients, ``dup_group``/``keep``, ``split``, ``unit`` and flags are carried (extra columns of the Parquet).

    Args:
        release: a release folder.
        root: the user's data root (one folder per source).
        out: where to write the manifest (``.parquet``); None writes nothing.
        allow_missing: leave out rows whose file is missing instead of refusing (changed files always refuse).
        workers: decoding processes.

    Raises:
        CxrcurateError: a file is changed, or missing without ``allow_missing``.
    """
    report = verify_release(release, root)
    if report.tampered or report.unlisted or report.outside_root or report.changed or (
            report.missing and not allow_missing):
        raise CxrcurateError(report.to_text() + "\nfix these files before materialising, or pass --allow-missing "
                             "(allow_missing=True in Python) to leave the missing ones out")
    df = _table(release)
    df = df[~df["path"].isin(set(report.missing))].reset_index(drop=True)
    files = [str(safe_path(root, p, i)) for i, p in zip(df["image_id"], df["path"], strict=True)]
    fps = fingerprint_files(files, workers=workers, progress=progress)
    bad = [f for f in files if isinstance(fps[f], str)]
    if bad:
        raise CxrcurateError(f"{len(bad)} file(s) cannot be decoded, e.g. {bad[0]}: {fps[bad[0]]}")
    for col in ("width", "height", "bit_depth", "pixel_sha256", "phash"):
        df[col] = [fps[f][col] for f in files]
    df["mask_paths"] = None
    info: dict[str, Any] = {"data_root": str(Path(root).resolve()), "release": str(release),
                            "missing_left_out": len(report.missing), "build": {"command": "materialise"}}
    if out is None:
        validate_table(to_table(df), origin=f"release {release} over {root}")
        df.attrs["cxrcurate"] = info
        return df
    write_manifest(df, out, info)  # the release's own columns (flags, unit, identity) kept after the manifest's
    return read_manifest(out)


def load_release(release: str | os.PathLike = "manifests/v1", table: str = "open",
                 root: str | os.PathLike | None = None, **kwargs: Any) -> pd.DataFrame:
    """A release table as a pandas DataFrame: as published, or materialised over ``root`` (see ``materialise``).

    Args:
        release: a release folder.
        table: ``open`` (the five open collections) or ``nih-cxr14`` (metadata only).
        root: the user's data root; when given (``open`` only), the full manifest with paths and fingerprints.
        **kwargs: passed to ``materialise`` (``allow_missing``, ``workers``, ``progress``, ``out``).

    Raises:
        CxrcurateError: an unknown table, a missing release, or (with ``root``) files that do not match.
    """
    if root is None:
        return _table(release, table)
    if table != "open":
        raise CxrcurateError("only the 'open' table can be materialised over files; nih-cxr14 is metadata only")
    return materialise(release, root, **kwargs)
