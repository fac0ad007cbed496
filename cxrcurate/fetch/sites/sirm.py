"""SIRM (Società Italiana di Radiologia Medica e Interventistica): the COVID-19 case-series posts.

The series is a WordPress category: listing pages hold one ``<article>`` per post (title link in
``.entry-title``, date in ``time[datetime]``) and a ``next`` link (``a.next``/``rel="next"``). Each post is one
case: the title (``h1.entry-title``, e.g. "COVID-19: caso 12"; it is the diagnosis, or else the first sentence
naming COVID-19 or SARS-CoV-2 is), the text in ``.entry-content`` stating age and sex in Italian ("Uomo, 65
anni", "Donna di 45 anni"), and the images embedded in the body, each in a ``<figure>`` or ``.wp-caption`` with
an Italian caption ("RX torace in proiezione AP", "TC del torace"). The caption gives the modality and view;
CT images are recorded but not downloaded.

SIRM states no open license for these posts; the record says so, and users must check reuse terms with SIRM.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from bs4 import Tag

from ..base import Case, CaseRef, Image, Scraper, case_id_from, iso_date, parse_date
from .parsing import (
    age_sex_from_text,
    image_url_of,
    layout_error,
    modality_from_text,
    require,
    soup,
    text_of,
    view_from_text,
)

SITE = "SIRM"
LICENSE = "not stated by SIRM (check reuse terms with SIRM)"
_COVID = re.compile(r"\b(covid-?19|sars-cov-2)\b", re.I)


def _slug(url: str) -> str:
    parts = [p for p in urlsplit(url).path.split("/") if p]
    return parts[-1] if parts else url


def parse_listing(html: str, url: str) -> tuple[list[CaseRef], str | None]:
    """The posts one listing page links to (with their dates) and the next page's URL (None on the last).

    Raises:
        ParseError: neither ``<article>`` posts with a title link nor a "nothing found" notice (layout changed).
    """
    doc = soup(html)
    articles = doc.select("article")
    if not articles and doc.select_one(".no-results, .not-found") is None:
        raise layout_error(url, "<article> posts with an .entry-title link", SITE)
    refs = []
    for art in articles:
        link = require(art.select_one(".entry-title a[href], h2 a[href], h3 a[href]"), url,
                       "a title link (.entry-title a) in every <article>", SITE)
        href = urljoin(url, str(link["href"]))
        when = art.select_one("time[datetime]")
        refs.append(CaseRef(case_id_from(_slug(href)), href,
                            parse_date(str(when["datetime"])) if when is not None else None))
    nxt = doc.select_one("a.next[href], a[rel~=next][href], link[rel~=next][href]")
    return refs, urljoin(url, str(nxt["href"])) if nxt is not None else None


def _figures(content: Tag, url: str) -> list[Image]:
    images: list[Image] = []
    seen: set[str] = set()

    def add(node: Tag, caption: str | None) -> None:
        src = image_url_of(node)
        if not src:
            return
        full = urljoin(url, src)
        if full in seen:
            return
        seen.add(full)
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


def parse_post(html: str, url: str) -> Case:
    """The case one post describes.

    Raises:
        ParseError: no ``h1.entry-title`` or no ``.entry-content`` (layout changed).
    """
    doc = soup(html)
    title = text_of(require(doc.select_one("h1.entry-title, article h1"), url, "the post title (h1.entry-title)",
                            SITE))
    content = require(doc.select_one(".entry-content"), url, "the post body (div.entry-content)", SITE)
    captions = {id(c) for c in content.select("figcaption, .wp-caption-text")}
    paragraphs = [t for t in (text_of(p) for p in content.select("p") if id(p) not in captions) if t]
    body = " ".join(paragraphs) or text_of(content)
    age, sex, raw = age_sex_from_text(body)
    when = doc.select_one("time[datetime]")
    diagnosis = title if title and _COVID.search(title) else _covid_sentence(body)
    return Case(
        source="sirm", case_id=case_id_from(_slug(url)), url=url, title=title, age_years=age, sex=sex,
        patient_raw=raw, findings=body, diagnosis=diagnosis, license=LICENSE,
        published=iso_date(str(when["datetime"])) if when is not None else None,
        images=_figures(content, url),
        extra={"series": "COVID-19"},
    )


class Sirm(Scraper):
    """The SIRM COVID-19 case series, one post per case."""

    name = "sirm"
    default_base_url = "https://sirm.org"
    license = LICENSE
    listing_path = "/category/senza-categoria/covid-19/"

    def discover(self) -> Iterator[CaseRef]:
        url: str | None = self.base_url + self.listing_path
        yield from self.paginate(url, parse_listing)

    def fetch_case(self, ref: CaseRef) -> Case:
        page = self.client.get_page(ref.url)
        case = parse_post(page.text, page.final_url)
        case.case_id = ref.case_id  # the id discovery gave, so a redirect cannot rename a case
        return case
