"""The ``Source`` interface every loader implements, the records it yields, and the shared helpers.

A loader reads a local folder laid out exactly as the source publishes it and yields one ``Record`` per image
that can enter the manifest and one ``Dropped`` per file or metadata row that cannot (with the reason), so
every input is accounted for. ``parse`` never touches the network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import SourceError
from ..imageio import is_image_name, open_regular, read_regular
from .metadata import MetadataRows, Repair, read_metadata

# Reasons a file or row is not in the manifest (the dropped table's closed vocabulary).
ROW_WITHOUT_FILE = "row_without_file"
FILE_WITHOUT_ROW = "file_without_row"
DUPLICATE_ROW = "duplicate_row"
NOT_XRAY = "not_xray"
NOT_IMAGE = "not_image"
MASK_WITHOUT_IMAGE = "mask_without_image"
VIEW_EXCLUDED = "view_excluded"
UNREADABLE = "unreadable"
UNPARSEABLE_ROW = "unparseable_row"  # a metadata row the CSV parser cannot read intact (detail: line and cause)
NOT_A_FILE = "not_a_file"  # a folder (or fifo, socket) where the layout has image files
DANGLING_LINK = "dangling_link"  # a symbolic link whose target does not exist
OUTSIDE_ROOT = "outside_root"  # a link (or path) leading outside the source folder / data root
HIDDEN_FILE = "hidden_file"  # a file with an image's suffix whose name starts with '.' (e.g. a macOS '._' fork)
BAD_VALUE = "bad_value"  # a metadata value the label depends on cannot be read (detail: column, value, fix)
REASONS = (ROW_WITHOUT_FILE, FILE_WITHOUT_ROW, DUPLICATE_ROW, NOT_XRAY, NOT_IMAGE, MASK_WITHOUT_IMAGE,
           VIEW_EXCLUDED, UNREADABLE, UNPARSEABLE_ROW, NOT_A_FILE, DANGLING_LINK, OUTSIDE_ROOT, HIDDEN_FILE, BAD_VALUE)


def hidden_file(rel: str) -> Dropped:
    """The dropped row for a hidden file named like an image: not read, but listed, so nothing goes silently.

    Hidden files without an image suffix (``.DS_Store``, ``.x.part`` of an unfinished download) are not listed.
    """
    return Dropped(HIDDEN_FILE, rel=rel, detail="hidden file (its name starts with '.'): not read. macOS writes "
                   "'._' resource forks like this; if it is a real image, rename it without the dot")


@dataclass
class Record:
    """One image a source describes. ``rel`` and ``mask_rels`` are paths inside the source folder."""

    rel: str
    label: str
    source_record: str | None = None
    patient_id: str | None = None
    url: str | None = None
    license: str | None = None
    finding_raw: str | None = None
    view: str = "unknown"
    modality: str = "xray"
    age_years: float | None = None
    sex: str | None = None
    pediatric: bool | None = None
    pediatric_reason: str | None = None
    mask_rels: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dropped:
    """A file or metadata row that does not become a manifest row, and why."""

    reason: str
    rel: str | None = None
    source_record: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Repository:
    """Fetched from GitHub at a recorded commit (data, reviewed when it changes)."""

    repo: str
    commit: str
    note: str = ""
    sha256: str | None = None  # of the codeload zip at ``commit``, once recorded; checked when set


@dataclass(frozen=True)
class ManualDownload:
    """Downloaded by a person (login or click-through): where, what, and what a complete copy holds.

    ``archives`` names the files the person downloads (looked for in the source folder by ``--check``) with the
    publisher's digest of each as ``"<algorithm>:<hex>"`` (``md5`` or ``sha256``), or None where none is published;
    ``digest_note`` says where the digests come from, or why there are none. An archive without a published digest
    is pinned by the sha256 of the first copy checked (kept in ``.cxrcurate-source.json``).
    """

    url: str
    what: str
    images: int
    by_label: dict[str, int] = field(default_factory=dict)
    metadata: tuple[str, ...] = ()
    archives: dict[str, str | None] = field(default_factory=dict)
    digest_note: str = ""


@dataclass(frozen=True)
class Scraped:
    """Scraped case by case from a web site by ``cxrcurate.fetch.sites.<module>.<cls>`` (``"module:Class"``).

    Attributes:
        scraper: ``"module:Class"`` in ``cxrcurate.fetch.sites``.
        delay: the least seconds between two requests to the real site (``--delay`` may raise it, never lower it
            except for a local copy on 127.0.0.1); other scrapers of these sites wait 2-10 s.
        terms_url: the site's terms of use.
        terms: what the terms say about automated download, when they restrict it; with ``requires_ack`` the
            fetch refuses to start until the user names the source in ``--accept-terms``.
        requires_ack: the terms restrict automated download: an explicit acknowledgement is needed.
        alternative: where the same cases can be had without scraping (shown with the terms).
    """

    scraper: str
    delay: float = 2.0
    terms_url: str | None = None
    terms: str | None = None
    requires_ack: bool = False
    alternative: str | None = None


@dataclass(frozen=True)
class DirectDownload:
    """One archive behind a plain URL (no login): downloaded, its sha256 checked, extracted into the source folder.

    ``sha256`` is the publisher's digest of the archive. None means no published digest was found: the download
    is not verified, the digest it had is recorded in ``.cxrcurate-source.json`` and printed, and ``sha256_note``
    says why. ``images`` and ``by_label`` are the published counts ``--check`` compares with.
    """

    url: str
    what: str
    sha256: str | None
    images: int
    by_label: dict[str, int] = field(default_factory=dict)
    sha256_note: str = ""
    strip: int = 0
    terms: str = ""


FetchSpec = Repository | ManualDownload | Scraped | DirectDownload


class Source(ABC):
    """A public CXR collection on local disk.

    Subclasses set the class attributes and implement ``parse``. ``layout`` is shown in errors so a user
    can see what folder the loader expected. A source's class is its one record: besides how to read it, it says
    how it is fetched (``fetch``: a ``Repository``, ``ManualDownload`` or ``Scraped``), its license, and its rank
    when dedup chooses the copy of a picture to keep (``dedup_rank``: lower is preferred; None ranks last).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    homepage: ClassVar[str]
    license: ClassVar[str]
    layout: ClassVar[str]
    metadata_files: ClassVar[tuple[str, ...]] = ()
    fetch: ClassVar[FetchSpec | None] = None
    dedup_rank: ClassVar[int | None] = None

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.notes: dict[str, Any] = {}  # facts a parse found worth reporting (counts, anomalies)
        if not self.root.is_dir():
            raise SourceError(f"{self.name}: {self.root} is not a folder. Expected the layout:\n{self.layout}\n"
                              f"Get it with `cxrcurate fetch --source {self.name}` or from {self.homepage}")

    @abstractmethod
    def parse(self) -> Iterator[Record | Dropped]:
        """Yield a ``Record`` or ``Dropped`` for every image file and metadata row of the source folder."""

    # -- helpers shared by the loaders -------------------------------------------------------------------
    def require(self, *rels: str) -> list[Path]:
        """The paths of files/folders the layout needs; a clear ``SourceError`` if one is missing."""
        paths = [self.root / r for r in rels]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise SourceError(f"{self.name}: missing {', '.join(missing)}. Expected the layout:\n{self.layout}")
        return paths

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def entries(self, folder: str | Path) -> tuple[dict[str, str], list[Dropped]]:
        """Every non-hidden entry directly in ``folder``: the files (links resolved, by name -> path inside the
        source) and a ``Dropped`` for each other entry: a folder or other non-file (``not_a_file``), a link to
        nothing (``dangling_link``) or a link leading out of the source folder (``outside_root``)."""
        base = self.root / folder
        top = self.root.resolve()
        files: dict[str, str] = {}
        dropped: list[Dropped] = []
        for p in sorted(base.iterdir()):
            if p.name.startswith("."):
                if is_image_name(p.name) and p.is_file():
                    dropped.append(hidden_file(self.rel(p)))
                continue
            rel = self.rel(p)
            if p.is_symlink():
                if not p.exists():
                    dropped.append(Dropped(DANGLING_LINK, rel=rel, detail=f"link to {os.readlink(p)}, which does "
                                           "not exist; restore the target or delete the link"))
                    continue
                target = p.resolve()
                if target != top and top not in target.parents:
                    dropped.append(Dropped(OUTSIDE_ROOT, rel=rel, detail=f"link to {target}, outside the source "
                                           f"folder {top}; copy the file in instead of linking it"))
                    continue
            if p.is_file():
                files[p.name] = rel
            else:
                kind = "a folder" if p.is_dir() else "not a regular file"
                dropped.append(Dropped(NOT_A_FILE, rel=rel, detail=f"{kind} where the layout has image files; "
                                       "not read"))
        return files, dropped

    def files_in(self, folder: str | Path) -> dict[str, str]:
        """Every non-hidden file directly in ``folder`` (inside the source), by file name -> path inside the source."""
        return self.entries(folder)[0]

    def scan(self, folder: str | Path) -> tuple[dict[str, str], list[Dropped]]:
        """The image files directly in ``folder`` by name, and a ``Dropped`` for every other entry (a file that is
        not an image, a folder, a dangling link or one leading outside the source)."""
        files, other = self.entries(folder)
        return ({n: r for n, r in files.items() if is_image_name(n)}, other + list(self.drop_non_images(files)))

    def drop_non_images(self, files: dict[str, str]) -> Iterator[Dropped]:
        """``Dropped`` for files in an image folder that are not images (README, .DS_Store, ...)."""
        for name, rel in files.items():
            if not is_image_name(name):
                yield Dropped(NOT_IMAGE, rel=rel, detail=f"suffix {Path(name).suffix or '(none)'}")

    def read_rows(self, rel: str, required: Iterable[str] = (), repair: Repair | None = None) -> MetadataRows:
        """Read a metadata CSV without losing a row (see ``metadata.read_metadata``), checking ``required`` columns
        before any row is read.

        Raises:
            SourceError: the file is empty or lacks a required column (the message names what was expected and
                what was found, and the layout).
            ParseError: the file cannot be read or decoded.
        """
        return read_metadata(self.root / rel, rel, required, repair, what=f"{self.name}: ", layout=self.layout)

    def version(self) -> dict[str, Any]:
        """Where this copy came from: the git commit, a fetch record, or a digest of the metadata files."""
        info: dict[str, Any] = {"root": str(self.root.resolve())}
        record = self.root / ".cxrcurate-source.json"
        if os.path.lexists(record):
            try:
                data = json.loads(read_regular(record, max_bytes=2**20, error=SourceError))
            except ValueError as exc:
                raise SourceError(f"{record}: not valid JSON ({exc}); delete it and fetch the source again") from exc
            if not isinstance(data, dict):
                raise SourceError(f"{record}: not a JSON object; delete it and fetch the source again")
            info.update(data)
        commit = _git_head(self.root)
        if commit:
            info["commit"] = commit
        digest = hashlib.sha256()
        for rel in self.metadata_files:
            p = self.root / rel
            if p.exists():
                with open_regular(p, error=SourceError) as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(block)
        if self.metadata_files:
            info["metadata_sha256"] = digest.hexdigest()
        return info


def _git_head(root: Path) -> str | None:
    git = root / ".git"
    head = git / "HEAD"
    if not head.is_file():
        return None
    ref = head.read_text().strip()
    if not ref.startswith("ref:"):
        return ref
    target = git / ref.split(" ", 1)[1]
    if target.is_file():
        return target.read_text().strip()
    packed = git / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            if line.endswith(ref.split(" ", 1)[1]):
                return line.split(" ", 1)[0]
    return None


def unparseable(meta: MetadataRows) -> Iterator[Dropped]:
    """A ``Dropped(UNPARSEABLE_ROW)`` for each record of a metadata file that could not be read intact."""
    for rid, detail in meta.bad:
        yield Dropped(UNPARSEABLE_ROW, source_record=rid, detail=detail)


def clean(value: Any) -> str | None:
    """A stripped string, or None for missing/blank values (pandas NaN included)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    s = str(value).strip()
    return s or None


def row_id(csv_rel: str, index: int) -> str:
    """The ``source_record`` of a metadata row: ``<csv>#<0-based data row>``."""
    return f"{csv_rel}#{index}"


def extras(row: Any, columns: Iterable[str]) -> dict[str, Any]:
    """The non-empty values of ``columns`` of a row, for the manifest's ``extra`` JSON."""
    return {c: v for c in columns if (v := clean(row.get(c))) is not None}
