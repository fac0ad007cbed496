"""Eurorad (https://www.eurorad.org), the European Society of Radiology's case database.

Eurorad's search page is rendered by JavaScript and guarded by a captcha, so plain HTTP sees no results there.
Cases are instead found by their numbers: ``/case/<n>`` for each ``n`` in a range (by default the range holding the
2020 COVID-19 cases that the Cohen collection cites, 16630-16751, with a margin), narrowed to the numbers the
site's ``/sitemap.xml`` lists when it has one. A number that is no case (HTTP 404) or a case on another topic
(its title, history and diagnosis do not name the topic, COVID-19 by default) is skipped and counted. The 404s are
remembered in the page cache for ``MISSING_MAX_AGE`` (``--refresh`` asks again), so a resumed or repeated walk
does not request those numbers again.

A case page, as public scrapers of it read it (docs/sources.md lists them with dates):

* title ``h1`` (``h1.color-color``); "Published on dd.mm.yyyy";
* sections are ``div.row`` blocks with the label in ``div.col-12.col-md-3`` (CLINICAL HISTORY, IMAGING FINDINGS,
  DISCUSSION, DIFFERENTIAL DIAGNOSIS LIST, FINAL DIAGNOSIS) and the text in ``div.col-12.col-md-9``;
* the patient line: ``p.color-grey`` "34 years, male" (after a "Patient" label, no colon);
* figures ``div.figure-gallery__item`` with a lazy ``img`` (``data-src``; ``src`` is a ``data:`` placeholder) whose
  URL names the ``_teaser_large`` image style: dropping it gives the full-size image; caption
  ``div.figure-gallery__item__label span``.

Eurorad cases are published under CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from ...errors import FetchError, HttpStatusError, ParseError
from ...labels import normalize_sex, parse_age
from ..base import Case, CaseRef, Image, Scraper, case_id_from, iso_date
from ..http import HttpClient
from .parsing import first_yield, layout_error, modality_from_text, require, soup, text_of, view_from_text

SITE = "Eurorad"
LICENSE = "CC BY-NC-SA 4.0"
DEFAULT_CASE_IDS = range(16600, 16800)  # the Cohen collection's Eurorad COVID-19 cases are 16630-16751
_CASE_PATH = re.compile(r"^/case/(\d+)/?$")
_PATIENT = re.compile(r"(?:(\d{1,3})\s*(?:years?|yrs?)\b)?[,\s]*(male|female|man|woman)?", re.I)
_PUBLISHED = re.compile(r"Published on\s*(\d{1,2}\.\d{1,2}\.\d{4})", re.I)
_SECTIONS = {"clinical history": "history", "imaging findings": "findings", "discussion": "discussion",
             "differential diagnosis list": "differential", "final diagnosis": "diagnosis"}
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
MISSING_MAX_AGE = 30 * 24 * 3600.0  # a number that was no case is asked again after a month (new cases get numbers)
_NOT_A_CASE = "case number not on the site (HTTP 404)"


def parse_sitemap(xml: str, url: str) -> tuple[list[str], list[int]]:
    """The nested sitemaps a sitemap index names, and the case numbers a sitemap lists (``/case/<n>`` URLs).

    Raises:
        ParseError: not a sitemap (``urlset`` or ``sitemapindex``).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise layout_error(url, f"a sitemap XML document ({exc})", SITE) from exc
    locs = [(e.text or "").strip() for e in root.iter(f"{_SITEMAP_NS}loc")]
    if root.tag == f"{_SITEMAP_NS}sitemapindex":
        return [urljoin(url, loc) for loc in locs if loc], []
    if root.tag != f"{_SITEMAP_NS}urlset":
        raise layout_error(url, "a sitemap (<urlset> or <sitemapindex>)", SITE)
    ids = [int(m.group(1)) for loc in locs if (m := _CASE_PATH.match(urlsplit(loc).path))]
    return [], ids


def _row_sections(doc: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for row in doc.select("div.row"):
        label, text = row.select_one(":scope > div.col-12.col-md-3"), row.select_one(":scope > div.col-12.col-md-9")
        key = _SECTIONS.get((text_of(label) or "").strip(" :").lower()) if label is not None else None
        if key and key not in out and text is not None:
            if key == "differential":
                items = [t for t in (text_of(n) for n in text.select("div.col-6, li")) if t]
                out[key] = "; ".join(items) if items else (text_of(text) or "")
            else:
                out[key] = text_of(text) or ""
    return out


SECTION_STRATEGIES = [("div.row > div.col-12.col-md-3 label + div.col-12.col-md-9 text", _row_sections)]


def _full_size(src: str) -> str:
    """The full-size image of a figure: its URL without the ``_teaser_large`` image style."""
    return src.replace("_teaser_large", "")


def _figures(doc: Any, url: str) -> list[Image]:
    images = []
    for item in doc.select("div.figure-gallery__item"):
        img = item.select_one("img[data-src], img[src]")
        if img is None:
            continue
        src = next((str(img[a]) for a in ("data-src", "src") if img.get(a) and not str(img[a]).startswith("data:")),
                   None)
        if src is None:
            continue
        spans = [t for t in (text_of(s) for s in item.select("div.figure-gallery__item__label span")) if t]
        caption = " ".join(spans) or None
        images.append(Image(url=urljoin(url, _full_size(src)), caption=caption, view=view_from_text(caption),
                            modality=modality_from_text(caption), position=len(images) + 1,
                            extra={"teaser_url": urljoin(url, src)}))
    return images


def parse_case(html: str, url: str) -> Case:
    """The case a case page describes.

    Raises:
        ParseError: no title (``h1``) or no section rows in any known layout (the layout changed).
    """
    doc = soup(html)
    title = text_of(require(doc.select_one("h1.color-color, h1"), url, "the case title (h1)", SITE))
    sections, _ = first_yield(doc, SECTION_STRATEGIES, url, "the case sections (CLINICAL HISTORY ... FINAL DIAGNOSIS)",
                              SITE)
    age = sex = patient_raw = None
    patient = text_of(doc.select_one("p.color-grey"))
    if patient and (m := _PATIENT.match(patient)) and (m.group(1) or m.group(2)):
        age, sex = parse_age(m.group(1)) if m.group(1) else None, normalize_sex(m.group(2))
        patient_raw = patient
    published = _PUBLISHED.search(text_of(doc) or "")
    m_case = _CASE_PATH.match(urlsplit(url).path)
    return Case(
        source="eurorad", case_id=case_id_from(m_case.group(1) if m_case else title or url), url=url, title=title,
        age_years=age, sex=sex, patient_raw=patient_raw, findings=sections.get("findings"),
        diagnosis=sections.get("diagnosis") or None, license=LICENSE,
        published=iso_date(published.group(1)) if published else None, images=_figures(doc, url),
        extra={k: v for k, v in sections.items() if k in ("history", "discussion", "differential") and v},
    )


class Eurorad(Scraper):
    """Eurorad cases on a topic (default: COVID-19), found by case number."""

    name = "eurorad"
    default_base_url = "https://www.eurorad.org"
    license = LICENSE

    def __init__(self, client: HttpClient, base_url: str | None = None, topic: str = r"covid-?19|sars-cov-2",
                 case_ids: range = DEFAULT_CASE_IDS) -> None:
        super().__init__(client, base_url)
        self.topic = re.compile(rf"\b({topic})\b", re.I)
        self.case_ids = case_ids

    def sitemap_ids(self) -> set[int] | None:
        """The case numbers the site's sitemap lists; None when it has no readable sitemap (then every id is tried)."""
        todo, seen, ids = [f"{self.base_url}/sitemap.xml"], set(), set()
        while todo and len(seen) < 200:
            url = todo.pop(0)
            if url in seen:
                continue
            seen.add(url)
            try:
                page = self.client.get_page(url, max_age=24 * 3600.0)
                nested, found = parse_sitemap(page.text, page.final_url)
            except (HttpStatusError, ParseError, FetchError) as exc:
                if url.endswith("/sitemap.xml") and len(seen) == 1:
                    return None
                raise exc
            todo += nested
            ids.update(found)
        return ids or None

    def discover(self) -> Iterator[CaseRef]:
        listed = self.sitemap_ids()
        for n in self.case_ids:
            if listed is None or n in listed:
                yield CaseRef(str(n), f"{self.base_url}/case/{n}")

    def fetch_case(self, ref: CaseRef) -> Case | str:
        cache = None if self.client.config.refresh else self.client.cache
        if cache is not None and (status := cache.get_missing(ref.url, MISSING_MAX_AGE)) is not None:
            self.client.log_event(url=ref.url, outcome="cache", status=status)
            return _NOT_A_CASE
        try:
            page = self.client.get_page(ref.url)
        except HttpStatusError as exc:
            if exc.status in (404, 410):
                if self.client.cache is not None:
                    self.client.cache.put_missing(ref.url, exc.status)
                return _NOT_A_CASE
            raise
        case = parse_case(page.text, page.final_url)
        case.case_id = ref.case_id
        topic_text = " ".join(t for t in (case.title, case.diagnosis, case.extra.get("history")) if t)
        if not self.topic.search(topic_text):
            return f"case not on the topic ({self.topic.pattern})"
        return case
