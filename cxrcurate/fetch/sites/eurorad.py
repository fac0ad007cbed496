"""Eurorad (https://www.eurorad.org), the European Society of Radiology's case database.

* Search results (``/advanced-search?search=...``) link to case pages ``/case/<number>``; the pager's next link
  (``li.pager__item--next a`` or ``rel="next"``) leads on.
* A case page has its title in ``h1``, "Published on dd.mm.yyyy", "Patient: 65 years, male", sections under
  headings (Clinical History, Imaging Findings, Discussion, Differential Diagnosis List, Final Diagnosis) and a
  figure list: each figure holds the image (a link to the full-size file, or an ``img``) and its caption
  ("Description: Chest X-ray, PA view ...").

Eurorad cases are published under CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlencode, urljoin, urlsplit

from bs4 import Tag

from ...labels import normalize_sex, parse_age
from ..base import Case, CaseRef, Image, Scraper, case_id_from, iso_date
from ..http import HttpClient
from .parsing import image_url_of, layout_error, modality_from_text, require, soup, text_of, view_from_text

SITE = "Eurorad"
LICENSE = "CC BY-NC-SA 4.0"
_CASE_PATH = re.compile(r"^/case/(\d+)/?$")
_PATIENT = re.compile(r"Patient\s*:\s*(?:(\d{1,3})\s*(?:years?|yrs?)\b)?[,\s]*(male|female|man|woman)?", re.I)
_PUBLISHED = re.compile(r"Published on\s*(\d{1,2}\.\d{1,2}\.\d{4})", re.I)
_SECTIONS = {"clinical history": "history", "imaging findings": "findings", "discussion": "discussion",
             "differential diagnosis list": "differential", "final diagnosis": "diagnosis"}


def parse_search(html: str, url: str) -> tuple[list[CaseRef], str | None]:
    """Cases listed on one search page and the next page's URL (None on the last).

    Raises:
        ParseError: no results container and no "no results" notice (the layout changed).
    """
    doc = soup(html)
    results = doc.select_one(".search-results, .view-content")
    if results is None:
        if doc.select_one(".view-empty, .no-results") is not None:
            return [], None
        raise layout_error(url, "a results list (div.search-results or div.view-content)", SITE)
    refs = []
    for a in results.select("a[href]"):
        m = _CASE_PATH.match(urlsplit(urljoin(url, str(a["href"]))).path)
        if m:
            refs.append(CaseRef(m.group(1), urljoin(url, f"/case/{m.group(1)}")))
    nxt = doc.select_one("li.pager__item--next a[href], a[rel~=next][href]")
    return refs, urljoin(url, str(nxt["href"])) if nxt is not None else None


def _sections(doc: Tag) -> dict[str, str]:
    out: dict[str, str] = {}
    for heading in doc.select("h2, h3"):
        key = _SECTIONS.get((text_of(heading) or "").strip(" :").lower())
        if key is None or key in out:
            continue
        texts = []
        for sib in heading.find_next_siblings():
            if sib.name in ("h1", "h2", "h3"):
                break
            if isinstance(sib, Tag) and sib.select_one(".figure, figure") is None:
                texts.append(text_of(sib) or "")
        out[key] = " ".join(t for t in texts if t)
    return out


def _figures(doc: Tag, url: str) -> list[Image]:
    images = []
    for fig in doc.select(".figure, figure"):
        if fig.select_one(".figure, figure") is not None:
            continue  # a figure group: its members are read one by one
        src = image_url_of(fig)
        if not src:
            continue
        caption = text_of(fig.select_one(".figure-description, .description, figcaption, .figure-caption"))
        images.append(Image(url=urljoin(url, src), caption=caption, view=view_from_text(caption),
                            modality=modality_from_text(caption), position=len(images) + 1,
                            extra={"label": t} if (t := text_of(fig.select_one("h4, .figure-title"))) else {}))
    return images


def parse_case(html: str, url: str) -> Case:
    """The case a case page describes.

    Raises:
        ParseError: no title (``h1``) or none of the section headings (Clinical History, Imaging Findings,
            Final Diagnosis): the layout changed.
    """
    doc = soup(html)
    title = text_of(require(doc.select_one("h1"), url, "the case title (h1)", SITE))
    sections = _sections(doc)
    if not sections:
        raise layout_error(url, "section headings (Clinical History, Imaging Findings, Final Diagnosis)", SITE)
    page_text = text_of(doc) or ""
    age = sex = patient_raw = None
    if (m := _PATIENT.search(page_text)) and (m.group(1) or m.group(2)):
        age, sex = parse_age(m.group(1)) if m.group(1) else None, normalize_sex(m.group(2))
        patient_raw = m.group(0).strip()
    published = _PUBLISHED.search(page_text)
    m_case = _CASE_PATH.match(urlsplit(url).path)
    return Case(
        source="eurorad", case_id=case_id_from(m_case.group(1) if m_case else title or url), url=url, title=title,
        age_years=age, sex=sex, patient_raw=patient_raw, findings=sections.get("findings"),
        diagnosis=sections.get("diagnosis") or None, license=LICENSE,
        published=iso_date(published.group(1)) if published else None, images=_figures(doc, url),
        extra={k: v for k, v in sections.items() if k in ("history", "discussion", "differential") and v},
    )


class Eurorad(Scraper):
    """Eurorad cases matching a search (default: COVID-19)."""

    name = "eurorad"
    default_base_url = "https://www.eurorad.org"
    license = LICENSE

    def __init__(self, client: HttpClient, base_url: str | None = None, query: str = "COVID-19") -> None:
        super().__init__(client, base_url)
        self.query = query

    def discover(self) -> Iterator[CaseRef]:
        url: str | None = f"{self.base_url}/advanced-search?{urlencode({'search': self.query})}"
        yield from self.paginate(url, parse_search)

    def fetch_case(self, ref: CaseRef) -> Case:
        page = self.client.get_page(ref.url)
        case = parse_case(page.text, page.final_url)
        case.case_id = ref.case_id
        return case
