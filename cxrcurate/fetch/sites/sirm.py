"""SIRM (Società Italiana di Radiologia Medica e Interventistica, https://www.sirm.org): the COVID-19 case series.

The site is WordPress with tagDiv's "Newspaper" theme. Every selector is backed by evidence (docs/sources.md):

* listing (``/category/senza-categoria/covid-19/``; English ``/en/category/articles/covid-19-database/``): one
  ``div.td_module_19`` (``td_module_wrap``) per post, title link ``h3.entry-title a``, thumbnail
  ``img.entry-thumb[data-img-url]``; a plain WordPress ``<article>`` with ``.entry-title a`` is the fallback. The
  pager is ``div.page-nav``: ``span.current``, numbered ``a.page`` links, ``a.last``, and a next arrow that is a bare
  ``<a>`` around ``i.td-icon-menu-right`` (no class, no rel); ``a.next``/``rel="next"`` is the fallback.
* post: title ``h1.entry-title`` ("COVID-19: caso 12"; it is the diagnosis, or else the first sentence naming
  COVID-19 or SARS-CoV-2 is), body ``div.td-post-content`` (``div.entry-content`` on a default theme) stating age
  and sex ("Uomo, 65 anni", "Donna di 45 anni"), date ``time.entry-date[datetime]`` or else the ``/YYYY/MM/DD/``
  of the post URL; images in the body, with their captions (``figcaption``, ``.wp-caption-text``) giving modality
  and view ("RX torace in proiezione AP", "TC del torace"). CT images are recorded but not downloaded.

SIRM states no open license for these posts; the record says so, and users must check reuse terms with SIRM.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from bs4 import Tag

from ...errors import HttpStatusError, ParseError
from ..base import Case, CaseRef, Image, Scraper, case_id_from, iso_date, parse_date
from .parsing import (
    age_sex_from_text,
    first_yield,
    image_url_of,
    modality_from_text,
    require,
    soup,
    text_of,
    view_from_text,
)

SITE = "SIRM"
LICENSE = "not stated by SIRM (check reuse terms with SIRM)"
_COVID = re.compile(r"\b(covid-?19|sars-cov-2)\b", re.I)
_URL_DATE = re.compile(r"/(20\d\d)/(\d\d)/(\d\d)/")
_WP_SIZE = re.compile(r"-\d{2,5}x\d{2,5}(?=\.[A-Za-z]{3,4}$)")  # WordPress's resized copies: name-300x240.jpg
_NOTHING = re.compile(r"\b(nessun risultato|nessun articolo|nothing found|no posts)\b", re.I)


def _slug(url: str) -> str:
    parts = [p for p in urlsplit(url).path.split("/") if p]
    return parts[-1] if parts else url


def _url_date(url: str) -> dt.date | None:
    m = _URL_DATE.search(urlsplit(url).path)
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
    except ValueError:
        return None


LISTING_STRATEGIES = [
    ("div.td_module_19 (tagDiv Newspaper)", lambda d: d.select("div.td_module_19")),
    ("div.td_module_wrap (any tagDiv module)", lambda d: d.select("div.td_module_wrap")),
    ("article (WordPress default)", lambda d: d.select("article")),
]


def _next_page(doc: Any, url: str) -> str | None:
    nav = doc.select_one("div.page-nav")
    if nav is not None:
        arrow = next((a for a in nav.select("a[href]") if a.select_one("i.td-icon-menu-right") is not None), None)
        if arrow is None and (current := nav.select_one("span.current")) is not None:
            arrow = current.find_next_sibling("a", href=True)
            arrow = arrow if arrow is not None and "last" not in (arrow.get("class") or []) else None
        if arrow is not None:
            return urljoin(url, str(arrow["href"]))
    nxt = doc.select_one("a.next[href], a[rel~=next][href], link[rel~=next][href]")
    return urljoin(url, str(nxt["href"])) if nxt is not None else None


def parse_listing(html: str, url: str) -> tuple[list[CaseRef], str | None]:
    """The posts one listing page links to (with their dates) and the next page's URL (None on the last).

    Raises:
        ParseError: no post entries in any known layout and no "nothing found" notice (the layout changed).
    """
    doc = soup(html)
    try:
        entries, _ = first_yield(doc, LISTING_STRATEGIES, url, "post entries", SITE)
    except ParseError:
        if _NOTHING.search(text_of(doc) or ""):
            return [], None
        raise
    refs = []
    for entry in entries:
        link = require(entry.select_one("h3.entry-title a[href], .entry-title a[href], h2 a[href], h3 a[href]"),
                       url, "a title link (h3.entry-title a) in every post entry", SITE)
        href = urljoin(url, str(link["href"]))
        when = entry.select_one("time[datetime]")
        published = parse_date(str(when["datetime"])) if when is not None else _url_date(href)
        refs.append(CaseRef(case_id_from(_slug(href)), href, published))
    return refs, _next_page(doc, url)


def _figures(content: Tag, url: str) -> list[Image]:
    images: list[Image] = []
    seen: set[str] = set()

    def add(node: Tag, caption: str | None) -> None:
        src = image_url_of(node)
        if not src:
            return
        full = urljoin(url, src)
        key = _WP_SIZE.sub("", full.split("?", 1)[0])  # a thumbnail and its original are one picture
        if key in seen:
            return
        seen.add(key)
        images.append(Image(url=full, caption=caption, view=view_from_text(caption),
                            modality=modality_from_text(caption), position=len(images) + 1))

    for fig in content.select("figure, .wp-caption"):
        if fig.select_one("figure, .wp-caption") is not None:
            continue  # a gallery: each inner figure comes with its own caption
        add(fig, text_of(fig.select_one("figcaption, .wp-caption-text")))
    for img in content.select("img"):
        if img.find_parent(["figure"]) is None and img.find_parent(class_="wp-caption") is None:
            add(img.find_parent("a") or img, None)
    return images


def _covid_sentence(text: str | None) -> str | None:
    """The first sentence of the post that names COVID-19 or SARS-CoV-2 (the diagnosis when the title does not)."""
    for sentence in re.split(r"(?<=[.;])\s+", text or ""):
        if _COVID.search(sentence):
            return sentence.strip()
    return None


BODY_STRATEGIES = [
    ("div.td-post-content (tagDiv Newspaper)", lambda d: d.select_one("div.td-post-content")),
    ("div.entry-content (WordPress default)", lambda d: d.select_one("div.entry-content")),
]


def _published(doc: Any, url: str) -> str | None:
    when = doc.select_one("time.entry-date[datetime], time[datetime]")
    if when is not None:
        return iso_date(str(when["datetime"]))
    meta = doc.select_one('meta[property="article:published_time"][content]')
    if meta is not None:
        return iso_date(str(meta["content"]))
    date = _url_date(url)
    return date.isoformat() if date else None


def parse_post(html: str, url: str) -> Case:
    """The case one post describes.

    Raises:
        ParseError: no title (``h1.entry-title``) or no post body in any known layout.
    """
    doc = soup(html)
    title = text_of(require(doc.select_one("h1.entry-title, article h1, h1"), url,
                            "the post title (h1.entry-title)", SITE))
    content, layout = first_yield(doc, BODY_STRATEGIES, url, "the post body", SITE)
    captions = {id(c) for c in content.select("figcaption, .wp-caption-text")}
    paragraphs = [t for t in (text_of(p) for p in content.select("p") if id(p) not in captions) if t]
    body = " ".join(paragraphs) or text_of(content)
    age, sex, raw = age_sex_from_text(body)
    diagnosis = title if title and _COVID.search(title) else _covid_sentence(body)
    return Case(
        source="sirm", case_id=case_id_from(_slug(url)), url=url, title=title, age_years=age, sex=sex,
        patient_raw=raw, findings=body, diagnosis=diagnosis, license=LICENSE, published=_published(doc, url),
        images=_figures(content, url), extra={"series": "COVID-19", "layout": layout},
    )


class Sirm(Scraper):
    """The SIRM COVID-19 case series, one post per case."""

    name = "sirm"
    default_base_url = "https://www.sirm.org"
    license = LICENSE
    listing_paths = ("/category/senza-categoria/covid-19/", "/en/category/articles/covid-19-database/")

    def discover(self) -> Iterator[CaseRef]:
        """The Italian series; the English listing when the Italian one is gone (HTTP 404/410)."""
        for n, path in enumerate(self.listing_paths):
            found = 0
            try:
                for ref in self.paginate(self.base_url + path, parse_listing):
                    found += 1
                    yield ref
                return
            except HttpStatusError as exc:
                if found or exc.status not in (404, 410) or n == len(self.listing_paths) - 1:
                    raise

    def fetch_case(self, ref: CaseRef) -> Case:
        page = self.client.get_page(ref.url)
        case = parse_post(page.text, page.final_url)
        case.case_id = ref.case_id  # the id discovery gave, so a redirect cannot rename a case
        return case
