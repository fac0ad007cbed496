"""Radiopaedia (https://radiopaedia.org): case search results, case pages and their studies' image stacks.

Radiopaedia's terms of use state that its content is not available for bulk download by an automated script or
robot, and the site answers automated clients with bot challenges. ``cxrcurate fetch --source radiopaedia`` is
therefore opt-in (``--accept-terms radiopaedia``), waits at least 4 s between requests, and points to the Cohen
collection, which redistributes Radiopaedia's COVID-19 cases with their licenses.

Every selector below is backed by a public scraper of the site (docs/sources.md lists them with dates); where the
site's markup changed, each known layout is one strategy, newest first, and the first that finds something wins:

* search results (``/search?q=...&scope=cases``): ``a.search-result.search-result-case`` links anywhere on the page,
  each with ``h4.search-result-title-text`` and ``span.published`` "Published 15 Oct 2015" (the date lets ``--since``
  skip a case without fetching it); the next page is ``a.next_page`` (``rel="next"``).
* case page: title ``h1.header-title``; study ids from ``a.view-fullscreen-link`` hrefs
  ``/cases/<case>/studies/<study>`` (2024), ``div.main-study-desc[id]`` ending in ``-<study>`` (December 2023), or
  ``[data-study-id]`` (2020); patient data ``#case-patient-data .data-item`` ("Age: 65 years", "Gender: Male");
  presentation ``#case-patient-presentation`` (``div.case-section.view-section`` in 2020); findings
  ``.study-findings``; the publication date in the header row "Case published" (``div.col-sm-3`` label,
  ``div.col-sm-8`` value "15 Oct 2015").
* a study's images, tried in order (``STACK_STRATEGIES``): ``/studies/<id>/stacks`` answers a JSON list of stacks,
  each with a ``modality`` and ``images`` (``public_filename`` the original PNG, ``fullscreen_filename`` a JPEG
  derivative, ``plane_projection``, ``aux_modality``, ``position``); when that endpoint fails (an HTTP error, or not
  that JSON), the study page the case page links (``a.view-fullscreen-link``, ``/cases/<case>/studies/<id>``)
  carries the same list inline, in a script as ``var stackedImages = [...];`` (Mdwiki-TD/mdwiki-python-files
  ``mass/radio/studies.py``, 2024-01-07, reads it from the study page; ``get_studies.py``, 2024-03-13, reads the
  stacks JSON first and the page only when that fails). The original is downloaded; only X-ray stacks are, the
  others are recorded (``not_downloaded``).

Cases are CC BY-NC-SA 3.0 (Radiopaedia's licence page) unless the page links another license (``rel="license"``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from ...errors import BotChallenge, HttpStatusError, ParseError
from ...labels import normalize_sex, normalize_view, parse_age
from ..base import Case, CaseRef, Image, Scraper, case_id_from, iso_date, parse_date
from ..http import HttpClient
from .parsing import first_yield, layout_error, require, soup, text_of, view_from_text

SITE = "Radiopaedia"
DEFAULT_LICENSE = "CC BY-NC-SA 3.0"
_CASE_PATH = re.compile(r"^/cases/([^/?#]+)/?$")
_STUDY_HREF = re.compile(r"/cases/[^/?#]+/studies/(\d+)")
_TRAILING_ID = re.compile(r"-(\d+)$")
_PUBLISHED = re.compile(r"published\s*:?\s*(\d{1,2} \w{3,9} \d{4})", re.I)
_NO_RESULTS = re.compile(r"\b(no (?:results|cases)|0 results|nothing found)\b", re.I)
_XRAY = {"x-ray", "xray", "radiograph", "plain film", "fluoroscopy"}
_STACKED_IMAGES = re.compile(r"\bstackedImages\s*=\s*(?=\[)")


def _result_links(doc: Any) -> list[Any]:
    return doc.select("a.search-result.search-result-case[href]")


def _titled_case_links(doc: Any) -> list[Any]:
    return [a for a in doc.select("a[href]") if a.select_one(".search-result-title-text") is not None
            and _CASE_PATH.match(urlsplit(str(a["href"])).path)]


def parse_search(html: str, url: str) -> tuple[list[CaseRef], str | None]:
    """Cases listed on one search-results page (with their publication dates) and the next page's URL.

    Raises:
        ParseError: no case links in any known layout and no "no results" notice.
    """
    doc = soup(html)
    try:
        links, _ = first_yield(doc, [("a.search-result.search-result-case", _result_links),
                                     ("a[href^=/cases/] holding .search-result-title-text", _titled_case_links)],
                               url, "case links in the search results", SITE)
    except ParseError:
        if _NO_RESULTS.search(text_of(doc) or ""):
            return [], None
        raise
    refs = []
    for a in links:
        m = _CASE_PATH.match(urlsplit(str(a["href"])).path)
        if not m:
            continue
        when = text_of(a.select_one("span.published"))
        date = _PUBLISHED.search(when or "")
        refs.append(CaseRef(case_id_from(m.group(1)), urljoin(url, f"/cases/{m.group(1)}"),
                            parse_date(date.group(1)) if date else None))
    nxt = doc.select_one("a.next_page[href], a[rel~=next][href]")
    return refs, urljoin(url, str(nxt["href"])) if nxt is not None else None


def _ids(values: list[str | None]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out


STUDY_ID_STRATEGIES = [
    ("a.view-fullscreen-link[href=/cases/<case>/studies/<id>] (2024)",
     lambda d: _ids([(m.group(1) if (m := _STUDY_HREF.search(str(a["href"]))) else None)
                     for a in d.select("a.view-fullscreen-link[href]")])),
    ("div.main-study-desc[id=...-<id>] (Dec 2023)",
     lambda d: _ids([(m.group(1) if (m := _TRAILING_ID.search(str(n["id"]))) else None)
                     for n in d.select("div.main-study-desc[id]")])),
    ("[data-study-id] (2020)",
     lambda d: _ids([s if (s := str(n["data-study-id"]).strip()).isdigit() else None
                     for n in d.select("[data-study-id]")])),
]


def _study_pages(doc: Any, url: str) -> dict[str, str]:
    """``{study id: study page URL}`` from the fullscreen links (2024 layout); empty for older layouts."""
    pages: dict[str, str] = {}
    for a in doc.select("a.view-fullscreen-link[href]"):
        if m := _STUDY_HREF.search(str(a["href"])):
            pages.setdefault(m.group(1), urljoin(url, str(a["href"])))
    return pages


def _data_items(doc: Any) -> dict[str, str]:
    """``{"age": "65 years", "gender": "Male"}`` from the patient-data items ("Age: 65 years")."""
    items = {}
    nodes = doc.select("#case-patient-data .data-item") or doc.select(".data-item")
    for node in nodes:
        key, sep, value = (text_of(node) or "").partition(":")
        if sep and value.strip():
            items.setdefault(key.strip().lower(), value.strip())
    return items


def _header_rows(doc: Any) -> dict[str, str]:
    """The case header's label/value rows (``div.col-sm-3`` "Case published:", ``div.col-sm-8`` "15 Oct 2015")."""
    rows = {}
    for label in doc.select("div.col-sm-3"):
        value = label.find_next_sibling("div", class_="col-sm-8")
        if value is not None:
            rows[(text_of(label) or "").rstrip(": ").lower()] = text_of(value) or ""
    return rows


def _published(doc: Any) -> str | None:
    rows = _header_rows(doc)
    for key in ("case published", "published"):
        if rows.get(key):
            return iso_date(rows[key])
    for node in doc.select("span.published"):
        if m := _PUBLISHED.search(text_of(node) or ""):
            return iso_date(m.group(1))
    when = doc.select_one("time[datetime]")
    return iso_date(str(when["datetime"])) if when is not None else None


def parse_case(html: str, url: str) -> tuple[Case, list[str]]:
    """The case a case page describes, and the ids of its studies (whose stacks hold the images).

    Raises:
        ParseError: no title (``h1``), or no study id in any known layout (the error lists every one tried).
    """
    doc = soup(html)
    title = text_of(require(doc.select_one("h1.header-title, h1"), url, "the case title (h1.header-title)", SITE))
    study_ids, layout = first_yield(doc, STUDY_ID_STRATEGIES, url, "the case's study ids", SITE)
    items = _data_items(doc)
    age_raw, sex_raw = items.get("age"), items.get("gender") or items.get("sex")
    age = parse_age(re.sub(r"\s*(years?|yrs?)\b.*$", "", age_raw, flags=re.I)) if age_raw else None
    findings = [t for t in (text_of(n) for n in doc.select(".study-findings")) if t]
    lic = doc.select_one("a[rel~=license]")
    presentation = doc.select_one("#case-patient-presentation") or doc.select_one("div.case-section.view-section")
    m = _CASE_PATH.match(urlsplit(url).path)
    case = Case(
        source="radiopaedia", case_id=case_id_from(m.group(1) if m else title or url), url=url, title=title,
        age_years=age, sex=normalize_sex(sex_raw), patient_raw=", ".join(x for x in (age_raw, sex_raw) if x) or None,
        findings=" ".join(findings) or None, diagnosis=title,
        license=_license_name(text_of(lic), str(lic.get("href", ""))) if lic is not None else DEFAULT_LICENSE,
        published=_published(doc),
        extra={k: v for k, v in {"presentation": text_of(presentation),
                                 "discussion": text_of(doc.select_one("#case-discussion, .case-discussion")),
                                 "study_ids": study_ids, "layout": layout,
                                 "study_pages": _study_pages(doc, url)}.items() if v},
    )
    return case, study_ids


def _license_name(text: str | None, href: str) -> str:
    m = re.search(r"licenses/([a-z-]+)/(\d\.\d)", href)
    if m:
        return f"CC {m.group(1).upper()} {m.group(2)}"
    return text or DEFAULT_LICENSE


def parse_stacks(text: Any, url: str, study_id: str) -> list[Image]:
    """The images of one study from its ``/studies/<id>/stacks`` JSON (already decoded), stack by stack.

    Each image's URL is the original (``public_filename``), else the JPEG derivative (``fullscreen_filename``).

    Raises:
        ParseError: not a list of stacks that each have a ``modality`` and a list of ``images`` with a file name.
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
            src = img.get("public_filename") or img.get("fullscreen_filename") if isinstance(img, dict) else None
            if not src:
                raise ParseError(f"{url}: stack {s} has an image without 'public_filename' or "
                                 f"'fullscreen_filename'; the {SITE} stacks JSON may have changed")
            plane, aux = img.get("plane_projection"), img.get("aux_modality")
            view = normalize_view(aux)
            if view == "unknown":
                view = "L" if str(plane or "").lower() == "lateral" else view_from_text(aux)
            images.append(Image(
                url=urljoin(url, str(src)), caption=" ".join(str(x) for x in (plane, aux) if x) or None, view=view,
                modality=modality, position=img.get("position"),
                extra={k: v for k, v in {"study_id": study_id, "stack": s, "stack_modality": raw_modality,
                                         "plane_projection": plane, "aux_modality": aux, "image_id": img.get("id"),
                                         "fullscreen_filename": img.get("fullscreen_filename")}.items()
                       if v is not None},
            ))
    return images


def parse_stacked_images(html: str, url: str, study_id: str) -> list[Image]:
    """The images of one study from the ``stackedImages`` list a study page carries inline in a script.

    Raises:
        ParseError: no ``stackedImages = [...]`` in any script, or not JSON, or not the stacks layout.
    """
    for script in soup(html).select("script"):
        text = script.string or script.get_text() or ""
        if m := _STACKED_IMAGES.search(text):
            try:
                data, _ = json.JSONDecoder().raw_decode(text, m.end())
            except ValueError as exc:
                raise ParseError(f"{url}: 'stackedImages' is not followed by a JSON list ({exc}); the {SITE} "
                                 "study page may have changed") from exc
            return parse_stacks(data, url, study_id)
    raise layout_error(url, "a script assigning 'stackedImages = [...]'", SITE)


STACK_STRATEGIES = ("/studies/<id>/stacks JSON (2020-2024)",
                    "var stackedImages = [...] in the study page /cases/<case>/studies/<id> (2024)")


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
        if case.published is None and ref.published is not None:
            case.published = ref.published.isoformat()
        pages = case.extra.get("study_pages", {})
        for sid in study_ids:
            case.images.extend(self.study_images(sid, pages.get(sid)))
        return case

    def study_images(self, study_id: str, study_page: str | None) -> list[Image]:
        """A study's images by the first of ``STACK_STRATEGIES`` that works (the study page only when linked).

        Raises:
            ParseError: no strategy found the images (names each URL tried and why it failed).
            BotChallenge: the site answered with a challenge (never worked around by another request).
        """
        stacks_url = f"{self.base_url}/studies/{study_id}/stacks?lang=us"
        try:
            return parse_stacks(self.client.get_page(stacks_url).json(), stacks_url, study_id)
        except BotChallenge:
            raise
        except (HttpStatusError, ParseError) as exc:
            if study_page is None:
                raise
            first = exc
        try:
            page = self.client.get_page(study_page)
            images = parse_stacked_images(page.text, page.final_url, study_id)
        except BotChallenge:
            raise
        except (HttpStatusError, ParseError) as exc:
            raise ParseError(f"{study_page}: no images for study {study_id}; tried {STACK_STRATEGIES[0]}: {first}; "
                             f"then {STACK_STRATEGIES[1]}: {exc}") from exc
        for image in images:
            image.extra["stacks_from"] = "study page (stackedImages)"
        return images
