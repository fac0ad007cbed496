"""What every scraper shares: the case records its parser returns, the run loop, the raw-folder layout, the report.

A scraper is split three ways. *Discovery* (``Scraper.discover``) walks the site's listing pages and yields the
cases that exist; *parsing* (a pure function per page type in each site's module: text in, ``Case`` out) reads
what a page says; *download* (``run_scraper``) brings the images of each case to disk. The raw folder it writes,
which the matching loader in ``cxrcurate/sources/`` reads:

```
<out>/cases/<case_id>.json          one per case: the Case, with each image's file, status and error
<out>/images/<case_id>/<nn>.<ext>   the images, named by position in the case (never by URL)
<out>/.cxrcurate-source.json        source, url, fetched_utc, cxrcurate version
<out>/fetch-log.jsonl               every request's outcome
<out>/.cache/http/                  the page cache (a re-run replays it)
```
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .. import __version__
from ..errors import CxrcurateError, DownloadError, FetchError, UnsafePath
from ..imageio import read_regular
from ..sources import get_source
from .download import download, safe_component, safe_join, sniff_image
from .http import HttpClient

log = logging.getLogger(__name__)

SOURCE_RECORD = ".cxrcurate-source.json"
LISTING_MAX_AGE = 24 * 3600.0  # listing pages are re-read daily so new cases appear; case pages are kept


@dataclass
class Image:
    """One image a case page shows. ``modality`` is ``xray``, ``ct``, ``mri``, ``us`` or None (not stated)."""

    url: str
    caption: str | None = None
    view: str = "unknown"
    modality: str | None = None
    position: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """One case as its page states it (the parser's output)."""

    source: str
    case_id: str
    url: str
    title: str | None = None
    age_years: float | None = None
    sex: str | None = None
    patient_raw: str | None = None
    findings: str | None = None
    diagnosis: str | None = None
    license: str | None = None
    published: str | None = None
    images: list[Image] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseRef:
    """A case that discovery found: its id, page URL and, when the listing says, its publication date."""

    case_id: str
    url: str
    published: dt.date | None = None


@dataclass
class FetchReport:
    """What a fetch did; ``failed`` holds ``(url or item, reason)`` for everything that did not work."""

    source: str
    out: Path
    dry_run: bool = False
    cases: int = 0
    images: int = 0
    images_present: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def fail(self, what: str, reason: str) -> None:
        log.info("failed: %s: %s", what, reason)  # the summary lists every failure; the log keeps the order
        self.failed.append((what, reason))

    def summary(self) -> str:
        """The lines the CLI prints at the end of a run."""
        verb = "would fetch" if self.dry_run else "fetched"
        lines = [f"{self.source}: {verb} {self.cases} case(s), {self.images} image(s) downloaded, "
                 f"{self.images_present} already complete, into {self.out}"]
        lines += [f"  skipped {n}: {why}" for why, n in sorted(self.skipped.items())]
        lines += [f"  note: {n}" for n in self.notes]
        if self.failed:
            lines.append(f"  FAILED {len(self.failed)}:")
            lines += [f"    {what}: {why}" for what, why in self.failed]
        return "\n".join(lines)


@dataclass
class FetchOptions:
    """The run's options (the CLI flags)."""

    limit: int | None = None
    since: dt.date | None = None
    dry_run: bool = False
    progress: bool = True


class Scraper(ABC):
    """A site: where its cases are listed and how one case's pages become a ``Case``."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    license: ClassVar[str]

    def __init__(self, client: HttpClient, base_url: str | None = None) -> None:
        self.client = client
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    @abstractmethod
    def discover(self) -> Iterator[CaseRef]:
        """Yield every case the listing pages show, page after page.

        Raises:
            ParseError: a listing page no longer has the expected layout (names the URL).
            FetchError: a listing page could not be fetched.
        """

    @abstractmethod
    def fetch_case(self, ref: CaseRef) -> Case | str:
        """Fetch the page(s) of one case and parse them; a string instead says why ``ref`` is not a case to keep
        (Eurorad's enumeration meets ids that are not cases, or cases on other topics).

        Raises:
            ParseError, FetchError: as for ``discover``.
        """

    def paginate(self, url: str | None,
                 parse: Callable[[str, str], tuple[list[CaseRef], str | None]]) -> Iterator[CaseRef]:
        """Follow listing pages from ``url``: ``parse(html, url)`` gives the page's cases and the next page's URL.

        A page already seen ends the walk, so a "next" link that loops cannot run forever.
        """
        seen_pages: set[str] = set()
        while url and url not in seen_pages:
            seen_pages.add(url)
            page = self.client.get_page(url, max_age=LISTING_MAX_AGE)
            refs, url = parse(page.text, page.final_url)
            yield from refs

    def wanted(self, image: Image) -> str | None:
        """None when ``image`` should be downloaded, else why not (CT and other non-X-ray images stay online)."""
        if image.modality not in (None, "xray"):
            return f"modality {image.modality}"
        return None


def parse_date(value: str | None) -> dt.date | None:
    """A date from ``2020-03-20``, ``2020-03-20T10:00:00+01:00`` or ``20.03.2020``; None when unreadable."""
    if not value:
        return None
    value = value.strip()
    for fmt, n in (("%Y-%m-%d", 10), ("%d.%m.%Y", 10), ("%d %b %Y", 11), ("%d %B %Y", 20)):
        try:
            return dt.datetime.strptime(value[:n].strip(), fmt).date()
        except ValueError:
            continue
    return None


def iso_date(value: str | None) -> str | None:
    """``parse_date`` as ``YYYY-MM-DD`` text, or None."""
    date = parse_date(value)
    return date.isoformat() if date else None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_source_record(out: Path, source: str, url: str, **fields: Any) -> None:
    """Write ``.cxrcurate-source.json`` (read by ``Source.version()``): where and when this copy came from."""
    record = {"source": source, "url": url, "fetched_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cxrcurate_version": __version__, **fields}
    _write_json(out / SOURCE_RECORD, record)


def read_source_record(out: Path) -> dict[str, Any]:
    """The folder's ``.cxrcurate-source.json`` (empty when there is none or it is unreadable)."""
    try:
        record = json.loads(read_regular(out / SOURCE_RECORD, max_bytes=2**20))
    except (CxrcurateError, ValueError):  # missing, not a regular file (never opened blocking), too big, not JSON
        return {}
    return record if isinstance(record, dict) else {}


def update_source_record(out: Path, **fields: Any) -> None:
    """Add ``fields`` to ``.cxrcurate-source.json``, keeping what it already says (creates it when absent)."""
    _write_json(out / SOURCE_RECORD, {**read_source_record(out), **fields})


def _existing(folder: Path, stem: str) -> Path | None:
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.glob(f"{stem}.*")) if not p.name.startswith(".")), None)


def _suffix_of(url: str) -> str:
    suffix = Path(url.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    return suffix if suffix in {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"} else ".img"


def _previous_urls(out: Path, case_id: str) -> dict[str, str]:
    """``{file: url}`` from the case file an earlier run wrote (empty when there is none)."""
    try:
        data = json.loads(safe_join(out, "cases", f"{case_id}.json").read_text(encoding="utf-8"))
        return {i["file"]: i["url"] for i in data.get("images", []) if i.get("file")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def download_case_images(scraper: Scraper, case: Case, out: Path, report: FetchReport) -> list[dict[str, Any]]:
    """Download the wanted images of ``case`` to ``images/<case_id>/<nn>.<ext>``; one status entry per image.

    A complete file is kept without a request, unless the earlier run recorded another URL for that position
    (the site reordered or replaced the case's images): then it is fetched again.
    """
    entries = []
    folder = safe_join(out, "images", case.case_id)
    previous = _previous_urls(out, case.case_id)
    for n, image in enumerate(case.images, 1):
        entry = {**asdict(image), "file": None, "status": "ok", "error": None}
        entries.append(entry)
        stem = f"{n:02d}"
        why_not = scraper.wanted(image)
        if why_not:
            entry["status"] = "not_downloaded"
            entry["error"] = why_not
            report.skipped[f"image not downloaded ({why_not})"] += 1
            continue
        have = _existing(folder, stem)
        if have is not None:
            rel = have.relative_to(out.resolve()).as_posix()
            if previous.get(rel, image.url) == image.url:
                entry["file"] = rel
                report.images_present += 1
                continue
            log.info("%s: position %d now shows %s (was %s); fetching it again", case.url, n, image.url,
                     previous[rel])
            have.unlink()
        dest = folder / f"{stem}{_suffix_of(image.url)}"
        try:
            result = download(scraper.client, image.url, dest, check=sniff_image)
        except (FetchError, OSError) as exc:
            entry["status"] = "failed"
            entry["error"] = str(exc)
            report.fail(image.url, f"case {case.case_id} image {n}: {exc}")
            continue
        real = sniff_image(result.path)
        final = result.path
        if real != result.path.suffix and not (real == ".jpg" and result.path.suffix == ".jpeg"):
            final = result.path.with_suffix(real)  # named by what it holds, not by what the URL said
            os.replace(result.path, final)
        entry["file"] = final.relative_to(out.resolve()).as_posix()
        report.images += 1
    return entries


def run_scraper(scraper: Scraper, out: str | os.PathLike, options: FetchOptions) -> FetchReport:
    """Discover, parse and download a site into ``out``; every failure ends in the report, none stops the run.

    A case already fetched is parsed again from the page cache and its complete images are kept without a
    request, so a re-run only transfers what is missing.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    report = FetchReport(scraper.name, out, dry_run=options.dry_run)
    bar = tqdm(desc=f"{scraper.name} cases", unit="case", disable=not options.progress)
    seen: set[str] = set()
    try:
        refs = scraper.discover()
        while True:
            try:
                ref = next(refs)
            except StopIteration:
                break
            except CxrcurateError as exc:  # a listing page failed: report it; what was found so far is kept
                report.fail(getattr(exc, "url", None) or f"{scraper.name} listing", str(exc))
                break
            except Exception as exc:  # a parser bug on an odd page: reported, never a crash that loses the run
                log.exception("%s listing", scraper.name)
                report.fail(f"{scraper.name} listing", f"unexpected {type(exc).__name__}: {exc} (please report)")
                break
            if ref.case_id in seen:
                continue
            seen.add(ref.case_id)
            if options.limit is not None and report.cases >= options.limit:
                report.notes.append(f"stopped at --limit {options.limit}")
                break
            if options.since and ref.published and ref.published < options.since:
                report.skipped[f"case published before {options.since}"] += 1
                continue
            try:
                _one_case(scraper, ref, out, options, report)
            except CxrcurateError as exc:
                report.fail(ref.url, str(exc))
            except Exception as exc:  # as above: one odd case page must not stop the others
                log.exception("%s", ref.url)
                report.fail(ref.url, f"unexpected {type(exc).__name__}: {exc} (please report)")
            bar.update(1)
    finally:
        bar.close()
    if not options.dry_run:
        write_source_record(out, scraper.name, scraper.base_url, cases=len(list((out / "cases").glob("*.json"))))
    return report


def _one_case(scraper: Scraper, ref: CaseRef, out: Path, options: FetchOptions, report: FetchReport) -> None:
    case = scraper.fetch_case(ref)
    if isinstance(case, str):
        report.skipped[case] += 1
        return
    published = parse_date(case.published)
    if options.since and published and published < options.since:
        report.skipped[f"case published before {options.since}"] += 1
        return
    report.cases += 1
    if options.dry_run:
        report.images += sum(scraper.wanted(i) is None for i in case.images)
        return
    if not case.images:
        report.notes.append(f"case {case.case_id} shows no images")
    images = download_case_images(scraper, case, out, report)
    data = {**asdict(case), "images": images,
            "fetched_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_json(safe_join(out, "cases", f"{case.case_id}.json"), data)


def check_layout(source: str, out: Path, report: FetchReport) -> None:
    """Ask the loader whether the folder has its layout, so a moved folder upstream is reported now."""
    try:
        next(iter(get_source(source)(out).parse()), None)
    except CxrcurateError as exc:
        report.fail(str(out), f"fetched, but the {source} loader cannot read it: {exc}")


def case_id_from(text: str) -> str:
    """A case id for file names from a slug or number the site uses (``covid-19-pneumonia-12``).

    A slug with nothing safe in it (``..``) gets ``case-<digest>`` so one odd link cannot stop a listing.
    """
    try:
        return safe_component(text)
    except UnsafePath:
        return "case-" + hashlib.sha1(text.encode()).hexdigest()[:12]


__all__ = ["Case", "CaseRef", "FetchOptions", "FetchReport", "Image", "Scraper", "run_scraper", "parse_date",
           "write_source_record", "read_source_record", "update_source_record", "check_layout", "case_id_from",
           "iso_date", "DownloadError", "LISTING_MAX_AGE", "SOURCE_RECORD"]
