"""Reading response statuses and bodies with a cap, as they stream, with or without Content-Length (chunked bodies too).

``read_capped`` refuses a body over its cap (a page); ``read_prefix`` keeps only the first bytes of one and stops
reading (a robots.txt, an error page sniffed for a bot challenge). Neither ever holds more than its cap in memory.
"""

from __future__ import annotations

import requests

from ..errors import BotChallenge, HttpStatusError, ResponseTooLarge
from .challenge import challenge_reason, is_html

ERROR_PAGE_MAX_BYTES = 2 * 2**20  # of an error page read for a bot-challenge marker


def read_prefix(resp: requests.Response, max_bytes: int) -> bytes:
    """At most the first ``max_bytes`` of a response body, read as it streams (with or without Content-Length).

    What was read stays the response's ``content`` (cut), so nothing later reads the rest of a huge body; closing
    the response drops the connection instead of draining it.
    """
    if getattr(resp, "_content_consumed", False) and isinstance(getattr(resp, "_content", None), bytes):
        return resp.content[:max_bytes]
    chunks, size = [], 0
    for chunk in resp.iter_content(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    body = b"".join(chunks)[:max_bytes]
    resp._content, resp._content_consumed = body, True  # type: ignore[attr-defined]
    return body


def read_capped(resp: requests.Response, max_bytes: int, url: str) -> bytes:
    """The whole body of a streamed response, refusing more than ``max_bytes``.

    Raises:
        ResponseTooLarge: Content-Length or the bytes read exceed the cap.
    """
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(f"{url}: {int(declared):,} bytes declared, over the cap of {max_bytes:,}", url)
    chunks, size = [], 0
    for chunk in resp.iter_content(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(f"{url}: more than {max_bytes:,} bytes, over the cap", url)
        chunks.append(chunk)
    return b"".join(chunks)


def raise_for_status(resp: requests.Response, url: str) -> None:
    """Nothing for a 2xx/3xx response.

    Raises:
        HttpStatusError: naming the URL, the status and, for 429/503, the Retry-After the server sent.
    """
    if resp.status_code < 400:
        return
    if why := _challenge_of(resp):
        raise BotChallenge(f"{url}: HTTP {resp.status_code}: the site answered with a {why}; cxrcurate does not solve "
                           f"or retry these. Fetch later, or get the data another way.", url, resp.status_code)
    hint = f" (Retry-After: {resp.headers['Retry-After']})" if "Retry-After" in resp.headers else ""
    raise HttpStatusError(f"{url}: HTTP {resp.status_code} {resp.reason or ''}{hint}".rstrip(), url, resp.status_code)


def _challenge_of(resp: requests.Response) -> str | None:
    """The bot-challenge reason of an error response (read when small and HTML), remembered on the response."""
    if resp.status_code not in (403, 429, 503) or not is_html(resp.headers.get("Content-Type")):
        return None
    if not hasattr(resp, "_cxrcurate_challenge"):
        declared = resp.headers.get("Content-Length", "")
        small = not declared or (declared.isdigit() and int(declared) <= ERROR_PAGE_MAX_BYTES)
        try:
            body = read_prefix(resp, ERROR_PAGE_MAX_BYTES) if small else b""  # chunked: its first 2 MiB only
        except requests.RequestException:  # the error page itself broke off: judge by the status and headers
            body = b""
        resp._cxrcurate_challenge = challenge_reason(resp.headers, body)  # type: ignore[attr-defined]
    return resp._cxrcurate_challenge  # type: ignore[attr-defined]
