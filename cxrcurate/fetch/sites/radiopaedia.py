"""Radiopaedia (https://radiopaedia.org): case search results, case pages and their studies' image stacks.

* Search results (``/search?q=...&scope=cases``) list cases as links to ``/cases/<slug>``; ``rel="next"`` (or
  ``a.next_page``) leads to the next page.
* A case page has its title in ``h1``, patient data as "Age: 65 years" / "Gender: Male" items, a presentation,
  per-study findings, a case discussion, and one ``data-study-id`` attribute per study.
* ``/studies/<id>/stacks`` answers a JSON list of stacks, each with a ``modality`` and ``images`` (each with
  ``fullscreen_filename``, ``position`` and often ``plane_projection``/``aux_modality``). Only X-ray stacks are
  downloaded; the others are recorded (``not_downloaded``) so the loader accounts for them.

Cases are CC BY-NC-SA 3.0 unless the page states another license (a ``rel="license"`` link).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from ...errors import ParseError
from ...labels import normalize_sex, normalize_view, parse_age
from ..base import Case, CaseRef, Image, Scraper, case_id_from, iso_date
from ..http import HttpClient
from .parsing import layout_error, require, soup, text_of, view_from_text

SITE = "Radiopaedia"
DEFAULT_LICENSE = "CC BY-NC-SA 3.0"
_CASE_PATH = re.compile(r"^/cases/([^/?#]+)")
_XRAY = {"x-ray", "xray", "radiograph", "plain film", "fluoroscopy"}


def parse_search(html: str, url: str) -> tuple[list[CaseRef], str | None]:
    """Cases listed on one search-results page and the URL of the next page (None on the last).

    Raises:
        ParseError: the page has no search-results container (the layout changed).
    """
    doc = soup(html)
    results = require(doc.select_one(".search-results, #search-results"), url,
                      "a search-results container (div.search-results)", SITE)
    refs = []
    for a in results.select("a[href]"):
        m = _CASE_PATH.match(urlsplit(str(a["href"])).path)
        if m:
            refs.append(CaseRef(case_id_from(m.group(1)), urljoin(url, f"/cases/{m.group(1)}")))
    nxt = doc.select_one("a[rel~=next], a.next_page")
    return refs, urljoin(url, str(nxt["href"])) if nxt is not None and nxt.get("href") else None


def _data_items(doc: Any) -> dict[str, str]:
    """``{"age": "65 years", "gender": "Male"}`` from the patient-data items ("Age: 65 years")."""
    items = {}
    for node in doc.select(".data-item, .patient-data li, .case-patient-data div"):
        text = text_of(node) or ""
        key, sep, value = text.partition(":")
        if sep and value.strip():
            items.setdefault(key.strip().lower(), value.strip())
    return items


def parse_case(html: str, url: str) -> tuple[Case, list[str]]:
    """The case a case page describes, and the ids of its studies (whose stacks hold the images).

    Raises:
        ParseError: no title (``h1``) or no ``data-study-id`` on the page.
    """
    doc = soup(html)
    title = text_of(require(doc.select_one("h1.header-title, h1"), url, "the case title (h1)", SITE))
    study_ids = []
    for node in doc.select("[data-study-id]"):
        sid = str(node["data-study-id"]).strip()
        if sid.isdigit() and sid not in study_ids:
            study_ids.append(sid)
    if not study_ids:
        raise layout_error(url, "data-study-id attributes (one per study)", SITE)
    items = _data_items(doc)
    age_raw, sex_raw = items.get("age"), items.get("gender") or items.get("sex")
    age = parse_age(re.sub(r"\s*(years?|yrs?)\b.*$", "", age_raw, flags=re.I)) if age_raw else None
    findings = [t for t in (text_of(n) for n in doc.select(".study-findings")) if t]
    lic = doc.select_one("a[rel~=license]")
    published = doc.select_one("time[datetime]")
    m = _CASE_PATH.match(urlsplit(url).path)
    case = Case(
        source="radiopaedia", case_id=case_id_from(m.group(1) if m else title or url), url=url, title=title,
        age_years=age, sex=normalize_sex(sex_raw), patient_raw=", ".join(x for x in (age_raw, sex_raw) if x) or None,
        findings=" ".join(findings) or None, diagnosis=title,
        license=_license_name(text_of(lic), str(lic.get("href", ""))) if lic is not None else DEFAULT_LICENSE,
        published=iso_date(str(published["datetime"])) if published is not None else None,
        extra={k: v for k, v in {"presentation": text_of(doc.select_one(".case-presentation, #case-presentation")),
                                 "discussion": text_of(doc.select_one(".case-discussion, #case-discussion")),
                                 "study_ids": study_ids}.items() if v},
    )
    return case, study_ids


def _license_name(text: str | None, href: str) -> str:
    m = re.search(r"licenses/([a-z-]+)/(\d\.\d)", href)
    if m:
        return f"CC {m.group(1).upper()} {m.group(2)}"
    return text or DEFAULT_LICENSE


def parse_stacks(text: Any, url: str, study_id: str) -> list[Image]:
    """The images of one study from its ``/studies/<id>/stacks`` JSON (already decoded), stack by stack.

    Raises:
        ParseError: not a list of stacks that each have a ``modality`` and a list of ``images`` with a
            ``fullscreen_filename``.
    """
    if not isinstance(text, list):
        raise layout_error(url, "a JSON list of stacks", SITE)
    images = []
    for s, stack in enumerate(text):
        if not isinstance(stack, dict) or "modality" not in stack or not isinstance(stack.get("images"), list):
            raise layout_error(url, f"stack {s} with 'modality' and an 'images' list", SITE)
        raw_modality = str(stack.get("modality") or "").strip()
        modality = "xray" if raw_modality.lower() in _XRAY else (raw_modality.lower() or None)
        for img in sorted(stack["images"], key=lambda i: i.get("position") or 0 if isinstance(i, dict) else 0):
            if not isinstance(img, dict) or not img.get("fullscreen_filename"):
                raise ParseError(f"{url}: stack {s} has an image without 'fullscreen_filename'; the {SITE} stacks "
                                 f"JSON may have changed")
            plane, aux = img.get("plane_projection"), img.get("aux_modality")
            view = normalize_view(aux)
            if view == "unknown":
                view = "L" if str(plane or "").lower() == "lateral" else view_from_text(aux)
            images.append(Image(
                url=urljoin(url, str(img["fullscreen_filename"])), caption=" ".join(str(x) for x in (plane, aux) if x)
                or None, view=view, modality=modality, position=img.get("position"),
                extra={k: v for k, v in {"study_id": study_id, "stack": s, "stack_modality": raw_modality,
                                         "plane_projection": plane, "aux_modality": aux, "image_id": img.get("id"),
                                         "public_filename": img.get("public_filename")}.items() if v is not None},
            ))
    return images


class Radiopaedia(Scraper):
    """Radiopaedia cases matching a search (default: COVID-19), X-ray stacks only."""

    name = "radiopaedia"
    default_base_url = "https://radiopaedia.org"
    license = DEFAULT_LICENSE

    def __init__(self, client: HttpClient, base_url: str | None = None, query: str = "covid-19") -> None:
        super().__init__(client, base_url)
        self.query = query

    def discover(self) -> Iterator[CaseRef]:
        url: str | None = f"{self.base_url}/search?{urlencode({'lang': 'us', 'q': self.query, 'scope': 'cases'})}"
        yield from self.paginate(url, parse_search)

    def fetch_case(self, ref: CaseRef) -> Case:
        page = self.client.get_page(ref.url)
        case, study_ids = parse_case(page.text, page.final_url)
        case.case_id = ref.case_id  # the id discovery gave, so a redirect cannot rename a case
        for sid in study_ids:
            stacks_url = f"{self.base_url}/studies/{sid}/stacks?lang=us"
            case.images.extend(parse_stacks(self.client.get_page(stacks_url).json(), stacks_url, sid))
        return case
