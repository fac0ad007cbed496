"""Recognise a bot-challenge or captcha page served instead of the page asked for.

Sites behind Cloudflare answer automated clients with an interstitial ("Just a moment...", a ``cf-challenge``
form, the ``/cdn-cgi/challenge-platform/`` script; 403 or 503, and a ``cf-mitigated: challenge`` header on recent
ones); others serve a small page whose only content is a captcha form (reCAPTCHA, hCaptcha, Turnstile). Both mean
"no automated clients here": cxrcurate reports them as such and never retries or solves them. A large page that
merely contains a captcha widget somewhere (a comment form) is not a challenge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_CHALLENGE_MARKERS = (
    re.compile(r"<title>\s*Just a moment\.\.\.\s*</title>", re.I),
    re.compile(r"<title>\s*Attention Required! \| Cloudflare\s*</title>", re.I),
    re.compile(r"\bcf-challenge\b|\bcf_chl_opt\b|/cdn-cgi/challenge-platform/", re.I),
)
_CAPTCHA = re.compile(r"\b(g-recaptcha|h-captcha|cf-turnstile|captcha)\b", re.I)
_FORM = re.compile(r"<form\b", re.I)
_TAGS = re.compile(r"<script\b.*?</script>|<style\b.*?</style>|<[^>]+>", re.I | re.S)
SMALL_PAGE_TEXT = 2000  # visible characters: a captcha page has little else to say


def challenge_reason(headers: Mapping[str, str], body: bytes | str) -> str | None:
    """Why this response is a bot challenge or captcha page, or None when it is not one."""
    if str(headers.get("cf-mitigated", "")).lower() == "challenge":
        return "Cloudflare challenge (cf-mitigated: challenge)"
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    head = text[:200_000]
    for marker in _CHALLENGE_MARKERS:
        if m := marker.search(head):
            return f"bot challenge page ({m.group(0)[:60]!r})"
    if _FORM.search(head) and (m := _CAPTCHA.search(head)):
        visible = " ".join(_TAGS.sub(" ", head).split())
        if len(visible) < SMALL_PAGE_TEXT:
            return f"captcha page ({m.group(0)!r} form)"
    return None


def is_html(content_type: str | None) -> bool:
    """True for HTML (and unlabelled) responses, the only ones a challenge page comes as."""
    ct = (content_type or "").lower()
    return not ct or "html" in ct
