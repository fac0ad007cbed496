"""Helpers the site parsers share: HTML to soup, a required element or a clear ``ParseError``, and reading
modality, view, age and sex out of English and Italian free text.

Parsers are pure: text in, records out. When a page no longer has an element a parser relies on, the parser says
which URL and which element (``ParseError``) instead of returning an empty result that would look like "no cases".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bs4 import BeautifulSoup, Tag

from ...errors import ParseError
from ...labels import normalize_sex, parse_age

IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|gif|webp|bmp|tiff?)$", re.IGNORECASE)


def soup(html: str) -> BeautifulSoup:
    """Parse HTML with the standard-library parser (no compiled dependency)."""
    return BeautifulSoup(html, "html.parser")


def layout_error(url: str, expected: str, site: str) -> ParseError:
    """The error for a page whose layout changed: what was expected where, and what to do."""
    err = ParseError(f"{url}: expected {expected}, not found; the {site} page layout may have changed. "
                     f"Nothing from this page was recorded (it is in the HTTP cache for a fixed parser to replay).")
    err.url = url  # type: ignore[attr-defined]  # the run's report lists failures by URL
    return err


def require(node: Any, url: str, expected: str, site: str) -> Tag:
    """``node`` when it is an element.

    Raises:
        ParseError: it is None (names ``url`` and ``expected``).
    """
    if not isinstance(node, Tag):
        raise layout_error(url, expected, site)
    return node


T = TypeVar("T")


def first_yield(doc: Any, strategies: Sequence[tuple[str, Callable[[Any], T]]], url: str, what: str,
                site: str) -> tuple[T, str]:
    """The result of the first strategy that finds something, and that strategy's name.

    Sites change their markup; each strategy reads one known layout (newest first, as the evidence dates them),
    so a page in any known layout parses and only a page in none of them is an error.

    Raises:
        ParseError: no strategy found anything (names the URL, ``what`` and every selector tried).
    """
    for name, strategy in strategies:
        found = strategy(doc)
        if found:
            return found, name
    tried = "; ".join(name for name, _ in strategies)
    raise layout_error(url, f"{what} (tried: {tried})", site)


def text_of(node: Tag | None) -> str | None:
    """The visible text of an element with whitespace collapsed; None when empty."""
    if node is None:
        return None
    text = " ".join(node.get_text(" ").split())
    return text or None


# Modality words, whole words only. "RX"/"TC"/"TAC"/"RM"/"ecografia" are the Italian ones.
_MODALITIES = (
    ("xray", re.compile(r"\b(x-?rays?|cxr|radiograph\w*|chest film|rx|radiografi\w*|radiogramm\w*)\b", re.I)),
    ("ct", re.compile(r"\b(ct|hrct|cta|computed tomography|tc|tac|tcmd|hrtc|tomografia)\b", re.I)),
    ("mri", re.compile(r"\b(mri|mr|rm|risonanza magnetica|magnetic resonance)\b", re.I)),
    ("us", re.compile(r"\b(ultrasound|ultrasonography|ecografi\w*|pocus|lus)\b", re.I)),
)


def modality_from_text(text: str | None) -> str | None:
    """``xray``/``ct``/``mri``/``us`` when the text names exactly one modality; None when none or several."""
    if not text:
        return None
    found = {name for name, rx in _MODALITIES if rx.search(text)}
    return found.pop() if len(found) == 1 else None


_VIEWS = (
    ("AP_supine", re.compile(r"\b(supin[eoa]|in posizione supina|ap liegend)\b", re.I)),
    ("L", re.compile(r"\b(lateral[ei]?|latero-laterale|laterolaterale)\b|\bLL\b", re.I)),
    ("PA", re.compile(r"\b(postero-?anterior[ei]?|posteroanterior|postero-anteriore)\b|\bPA\b")),
    ("AP", re.compile(r"\b(antero-?posterior[ei]?|anteroposterior|antero-posteriore)\b|\bAP\b")),
)


def view_from_text(text: str | None) -> str:
    """The projection a caption states (``PA``, ``AP``, ``AP_supine``, ``L``); ``unknown`` when none or several.

    ``PA``/``AP``/``LL`` count only in capitals (they are abbreviations); supine wins over AP.
    """
    if not text:
        return "unknown"
    found = [name for name, rx in _VIEWS if rx.search(text)]
    if "AP_supine" in found:
        found = [v for v in found if v not in ("AP", "AP_supine")] + ["AP_supine"]
    return found[0] if len(found) == 1 else "unknown"


# "Uomo, 65 anni", "Donna di 45 anni", "Paziente maschio di 70 anni", "65-year-old man", "65 years, male"
_SEX_WORDS = r"uomo|donna|maschio|femmina|ragazzo|ragazza|signore|signora|man|woman|male|female|boy|girl"
_AGE_YEARS = r"(\d{1,3})\s*(?:-\s*)?(?:anni|aa\.?|years?(?:[- ]old)?|yrs?|y/o|yo|enne)\b"
_SEX_THEN_AGE = re.compile(rf"\b({_SEX_WORDS})\b[^.\d]{{0,40}}?{_AGE_YEARS}", re.I)
_AGE_THEN_SEX = re.compile(rf"{_AGE_YEARS}[^.\d]{{0,25}}?\b({_SEX_WORDS})\b", re.I)
_SEX_MAP = {"ragazzo": "M", "signore": "M", "boy": "M", "ragazza": "F", "signora": "F", "girl": "F"}


def age_sex_from_text(text: str | None) -> tuple[float | None, str | None, str | None]:
    """``(age_years, sex, the matched words)`` from the first sentence stating both; Nones when none does."""
    if not text:
        return None, None, None
    best = None
    for rx, sex_group, age_group in ((_SEX_THEN_AGE, 1, 2), (_AGE_THEN_SEX, 2, 1)):
        m = rx.search(text)
        if m and (best is None or m.start() < best[0].start()):
            best = (m, sex_group, age_group)
    if best is None:
        return None, None, None
    m, sex_group, age_group = best
    word = m.group(sex_group).lower()
    sex = _SEX_MAP.get(word) or normalize_sex(word)
    return parse_age(m.group(age_group)), sex, m.group(0)


def image_url_of(node: Tag) -> str | None:
    """The best URL of the picture in ``node``: a link to an image file around it, else ``src``/``data-src``."""
    link = node if node.name == "a" else node.find("a", href=True)
    if isinstance(link, Tag) and IMAGE_SUFFIX.search(str(link.get("href", "")).split("?")[0]):
        return str(link["href"])
    img = node if node.name == "img" else node.find("img")
    if not isinstance(img, Tag):
        return None
    for attr in ("data-orig-file", "data-large-file", "data-src", "data-lazy-src", "data-img-url", "src"):
        value = img.get(attr)
        if value and not str(value).startswith("data:"):
            return str(value)
    return None
