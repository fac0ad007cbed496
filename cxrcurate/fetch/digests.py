"""Digests cxrcurate checks files against: whole archives, and the files of a GitHub repository at a commit.

GitHub's codeload zips are generated on request and are not promised to be byte-stable, so a repository source
cannot be pinned by the archive's sha256. It is pinned by its commit and, where cxrcurate ships one, by a *digest
list*: the sha256 of each image file of that commit, a gzip'd CSV ``path,sha256`` (paths from the repository root)
after ``#`` header lines naming the source, repository, commit and where the digests came from. The lists live in
``cxrcurate/sources/digests/<source>-<commit[:12]>.csv.gz`` and are read only when a fetch or a check needs them.
A list may cover only part of a commit (the files its origin had): files it does not name are reported as not
verified, never as failures.

``write_folder_digests`` makes such a list from a folder fetched at a known commit
(``cxrcurate fetch --source NAME --write-digests DIR``).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CxrcurateError
from ..imageio import is_image_name
from .download import file_sha256

DIGEST_PACKAGE = "cxrcurate.sources"
DIGEST_FOLDER = "digests"
_SKIP_DIRS = {".git", ".cache", ".cxrcurate-download", ".cxrcurate-rejected"}


@dataclass
class DigestList:
    """The sha256 of files of ``repo`` at ``commit`` (paths from the repository root), and where they came from."""

    source: str
    repo: str
    commit: str
    origin: str
    files: dict[str, str] = field(default_factory=dict)


def digest_list_name(source: str, commit: str) -> str:
    """The file name of the digest list of ``source`` at ``commit``."""
    return f"{source}-{commit[:12]}.csv.gz"


def read_digest_list(data: bytes, where: str) -> DigestList:
    """Parse a digest list (gzip'd or plain text).

    Raises:
        CxrcurateError: a header line or a row is missing or malformed (names ``where``).
    """
    text = gzip.decompress(data).decode("utf-8") if data[:2] == b"\x1f\x8b" else data.decode("utf-8")
    header: dict[str, str] = {}
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                header[key.strip()] = value.strip()
        elif line.strip():
            body.append(line)
    missing = [k for k in ("source", "repo", "commit") if not header.get(k)]
    if missing or not body or body[0].strip() != "path,sha256":
        raise CxrcurateError(f"{where}: not a cxrcurate digest list (needs '# source:', '# repo:', '# commit:' "
                             f"lines and a 'path,sha256' header; missing {missing or 'the header'})")
    files: dict[str, str] = {}
    for n, row in enumerate(csv.reader(body[1:]), 2):
        if len(row) != 2 or len(row[1]) != 64:
            raise CxrcurateError(f"{where}: row {n} is not 'path,sha256': {row!r}")
        files[row[0]] = row[1].lower()
    return DigestList(header["source"], header["repo"], header["commit"], header.get("origin", ""), files)


def load_digest_list(source: str, commit: str, folder: str | os.PathLike | None = None) -> DigestList | None:
    """The digest list shipped for ``source`` at ``commit`` (or found in ``folder``); None when there is none.

    Raises:
        CxrcurateError: the list exists but is malformed or names another source or commit.
    """
    name = digest_list_name(source, commit)
    if folder is not None:
        path = Path(folder) / name
        if not path.is_file():
            return None
        data, where = path.read_bytes(), str(path)
    else:
        from importlib.resources import files

        res = files(DIGEST_PACKAGE).joinpath(DIGEST_FOLDER, name)
        if not res.is_file():
            return None
        data, where = res.read_bytes(), f"{DIGEST_PACKAGE}/{DIGEST_FOLDER}/{name}"
    digests = read_digest_list(data, where)
    if digests.source != source or digests.commit != commit:
        raise CxrcurateError(f"{where}: names {digests.source} at {digests.commit}, not {source} at {commit}; "
                             "the file was renamed or edited by hand")
    return digests


def write_digest_list(dest: str | os.PathLike, digests: DigestList) -> Path:
    """Write ``digests`` as a gzip'd list at ``dest`` (rows sorted by path, so the file is reproducible)."""
    buf = io.StringIO()
    for key in ("source", "repo", "commit", "origin"):
        buf.write(f"# {key}: {getattr(digests, key)}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "sha256"])
    for rel in sorted(digests.files):
        writer.writerow([rel, digests.files[rel]])
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), mtime=0))
    return dest


def image_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Every image file under ``folder`` by path relative to it (hidden files and cxrcurate's own folders left out)."""
    root = Path(folder)
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and is_image_name(name) and path.is_file():  # a FIFO is not a file
                out[path.relative_to(root).as_posix()] = path
    return out


def write_folder_digests(source: str, repo: str, commit: str, folder: str | os.PathLike,
                         dest: str | os.PathLike, origin: str) -> DigestList:
    """Hash every image file of ``folder`` (a copy of ``repo`` at ``commit``) and write the list to ``dest``."""
    files = {rel: file_sha256(path) for rel, path in image_files(folder).items()}
    if not files:
        raise CxrcurateError(f"{folder}: no image files to list; give the folder a fetch of {source} filled")
    digests = DigestList(source, repo, commit, origin, files)
    write_digest_list(dest, digests)
    return digests


@dataclass
class FileCheck:
    """What ``verify_files`` found: counts, and ``(path, expected, actual)`` / paths for what did not match."""

    verified: int = 0
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing


def verify_files(folder: str | os.PathLike, expected: Mapping[str, str]) -> FileCheck:
    """Check the image files of ``folder`` against ``expected`` (``{path: sha256}``)."""
    present = image_files(folder)
    result = FileCheck()
    for rel in sorted(expected):
        path = present.get(rel)
        if path is None:
            result.missing.append(rel)
            continue
        actual = file_sha256(path)
        if actual == expected[rel]:
            result.verified += 1
        else:
            result.mismatched.append((rel, expected[rel], actual))
    result.unlisted = sorted(set(present) - set(expected))
    return result
