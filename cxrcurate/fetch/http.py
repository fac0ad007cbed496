"""The one HTTP client cxrcurate uses to reach a web site: polite, retrying, cached and capped.

Everything that fetches goes through ``HttpClient`` so every site sees the same manners: a user agent that names
cxrcurate with a contact URL, robots.txt obeyed (its ``Crawl-delay`` too), one request at a time per host with a
delay between requests, retries with exponential backoff on 429/5xx/timeouts/connection errors (honouring
``Retry-After``), a size cap per response, and only ``http``/``https`` URLs. The retrying and the per-host delay
live in one transport adapter, so redirect hops are throttled, retried and checked against robots.txt like the
first request. Pages (HTML/JSON) are kept in an on-disk cache, so a re-run or a parser change replays them instead
of asking the site again; every attempt, replay and refusal is appended to a JSON-lines log.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
import urllib.robotparser
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .. import __version__
from ..errors import BotChallenge, FetchError, HttpStatusError, ResponseTooLarge, RobotsDisallowed
from .bodies import _challenge_of, raise_for_status, read_capped, read_prefix
from .challenge import challenge_reason, is_html
from .pagecache import Page, PageCache
from .robots import disallow_all, parse_robots

log = logging.getLogger(__name__)

CONTACT_URL = "https://github.com/cxrcurate/cxrcurate"
USER_AGENT = f"cxrcurate/{__version__} (+{CONTACT_URL})"
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: a crawler must parse at least 500 KiB; the rest is ignored, never read
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_TRANSIENT = (requests.ConnectionError, requests.Timeout)


@dataclass
class HttpConfig:
    """How politely and how persistently to fetch. The defaults suit real sites; tests shrink the times.

    Attributes:
        delay: seconds between the end of one request and the start of the next to the same host (>= 1 s for
            real sites); a larger robots.txt ``Crawl-delay`` wins.
        retries: extra attempts after a 429/5xx/timeout/connection error.
        backoff: seconds before the first retry; doubled for each further one (unless ``Retry-After`` says).
        max_wait: the longest ``Retry-After``/``Crawl-delay``/backoff honoured; a server asking for more gets
            its error reported instead of a stalled run.
        timeout: connect and read timeout per request, seconds.
        max_bytes: size cap of a page (HTML/JSON); downloads set their own cap.
        max_redirects: redirect hops before giving up (a loop ends here).
        obey_robots: fetch and obey robots.txt (leave on for real sites).
        cache_dir: where pages are cached (None: no cache).
        log_path: JSON-lines log of every request's outcome (None: no log).
        refresh: ignore cached pages (they are still rewritten).
    """

    delay: float = 1.0
    retries: int = 4
    backoff: float = 2.0
    max_wait: float = 300.0
    timeout: float = 30.0
    max_bytes: int = 20 * 2**20
    max_redirects: int = 10
    obey_robots: bool = True
    user_agent: str = USER_AGENT
    cache_dir: Path | None = None
    log_path: Path | None = None
    refresh: bool = False


def check_url(url: str) -> str:
    """``url`` when it is an absolute http(s) URL.

    Raises:
        FetchError: any other scheme (``file:``, ``ftp:``, ``javascript:`` ...) or no host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r}: only absolute http(s) URLs are fetched", url)
    return url


def is_internal_host(host: str | None) -> bool:
    """Whether ``host`` is (or resolves to) a loopback, private, link-local or otherwise non-public address."""
    import ipaddress
    import socket

    if not host:
        return False
    try:
        addrs = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo(host, None)]
        except (OSError, UnicodeError, ValueError):
            return False  # unresolvable: the connection itself will fail with a clear error
    return any(a.is_loopback or a.is_private or a.is_link_local or a.is_reserved or a.is_unspecified
               or a.is_multicast for a in addrs)


def check_redirect(start: str, url: str) -> None:
    """Refuse a redirect from a public start URL into a loopback, private or link-local address.

    Raises:
        FetchError: naming both URLs (a server must not steer cxrcurate into the local network).
    """
    target = urlsplit(url).hostname
    if target != urlsplit(start).hostname and is_internal_host(target) and not is_internal_host(
            urlsplit(start).hostname):
        raise FetchError(f"{start}: redirected to {url}, a loopback/private/link-local address; refused (a public "
                         "page must not send cxrcurate into the local network). Fetch that URL directly if you "
                         "mean it", start)


def _host_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Gate:
    """One host's turn: a lock (one request at a time) and when its last request ended."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.last = float("-inf")

    def wait(self, delay: float) -> None:
        pause = self.last + delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    def touch(self) -> None:
        self.last = time.monotonic()


class PoliteAdapter(HTTPAdapter):
    """The transport every request goes through: robots.txt, per-host turn and delay, retries with backoff."""

    def __init__(self, client: HttpClient) -> None:
        super().__init__(max_retries=0)
        self.client = client

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        c = self.client
        url = check_url(request.url or "")
        start = getattr(c.local, "start", None)
        if start and url != start:
            check_redirect(start, url)
        if urlsplit(url).path != "/robots.txt":
            c.require_allowed(url)
        gate = c.gate(url)
        kwargs["timeout"] = kwargs.get("timeout") or c.config.timeout
        attempt = 0
        while True:
            started = time.monotonic()
            with gate.lock:
                gate.wait(c.delay_for(url))
                try:
                    resp = super().send(request, **kwargs)
                except requests.exceptions.SSLError:
                    gate.touch()
                    raise
                except _TRANSIENT as exc:
                    gate.touch()
                    if attempt >= c.config.retries:
                        c.log_event(url=url, outcome="error", attempt=attempt, error=repr(exc), started=started)
                        raise
                    wait = c.backoff(attempt)
                    c.log_event(url=url, outcome="retry", attempt=attempt, error=repr(exc), wait=wait, started=started)
                    attempt += 1
                    time.sleep(wait)
                    continue
                gate.touch()
            if resp.status_code in RETRY_STATUSES and attempt < c.config.retries and not _challenge_of(resp):
                asked = retry_after_seconds(resp.headers.get("Retry-After"))
                if asked is None or asked <= c.config.max_wait:
                    wait = max(asked, 0.0) if asked is not None else c.backoff(attempt)
                    c.log_event(url=url, outcome="retry", status=resp.status_code, attempt=attempt, wait=wait,
                                started=started)
                    resp.close()
                    attempt += 1
                    time.sleep(wait)
                    continue
            outcome = "ok" if resp.status_code < 400 else "http_error"
            c.log_event(url=url, outcome=outcome, status=resp.status_code, attempt=attempt, started=started)
            return resp


class HttpClient:
    """The polite client. One instance per fetch run; use it as a context manager to close its connections."""

    def __init__(self, config: HttpConfig | None = None) -> None:
        self.config = config or HttpConfig()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = self.config.user_agent
        self.session.max_redirects = self.config.max_redirects
        adapter = PoliteAdapter(self)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._gates: dict[str, _Gate] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self._crawl_delays: dict[str, float] = {}
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self.local = threading.local()  # .start: the URL this thread's request began at (redirect checks)
        self.cache = PageCache(self.config.cache_dir) if self.config.cache_dir else None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def _get(self, url: str, **kwargs: Any) -> requests.Response:
        """``session.get`` with ``url`` remembered as the start of any redirect chain (see ``check_redirect``)."""
        outer = getattr(self.local, "start", None)
        self.local.start = url
        try:
            return self.session.get(url, **kwargs)
        finally:
            self.local.start = outer

    # -- politeness -----------------------------------------------------------------------------------------
    def gate(self, url: str) -> _Gate:
        """The turn of ``url``'s host (created on first use)."""
        with self._lock:
            return self._gates.setdefault(_host_key(url), _Gate())

    def delay_for(self, url: str) -> float:
        """Seconds between requests to ``url``'s host: the configured delay or robots.txt's Crawl-delay."""
        crawl = self._crawl_delays.get(_host_key(url)) or 0.0
        return max(self.config.delay, min(crawl, self.config.max_wait))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        return min(self.config.backoff * 2**attempt, self.config.max_wait)

    def require_allowed(self, url: str) -> None:
        """Nothing when robots.txt of ``url``'s site allows it.

        Raises:
            RobotsDisallowed: robots.txt disallows the URL, or could not be read (a 5xx or network error means
                "do not crawl", as RFC 9309 asks).
        """
        if not self.config.obey_robots:
            return
        key = _host_key(url)
        if key not in self._robots:
            self._robots[key] = self._read_robots(url)
        rp = self._robots[key]
        if rp is None:
            return
        if rp.disallow_all or not rp.can_fetch(self.config.user_agent, url):
            why = "could not be read" if rp.disallow_all else "disallows it"
            self.log_event(url=url, outcome="robots_disallowed")
            raise RobotsDisallowed(f"{url}: robots.txt of {urlsplit(url).netloc} {why}; not fetched", url)

    def _read_robots(self, url: str) -> urllib.robotparser.RobotFileParser | None:
        parts = urlsplit(url)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        try:
            with self._get(robots_url, timeout=self.config.timeout, stream=True) as resp:
                body = read_prefix(resp, ROBOTS_MAX_BYTES) if resp.status_code < 400 else b""
        except requests.RequestException as exc:
            log.warning("%s unreachable (%s): not crawling %s", robots_url, exc, parts.netloc)
            return disallow_all(robots_url)
        if resp.status_code >= 500:
            log.warning("%s answered %d: not crawling %s", robots_url, resp.status_code, parts.netloc)
            return disallow_all(robots_url)
        if resp.status_code in (401, 403):  # a site that forbids reading its rules forbids crawling (as Google does)
            log.warning("%s answered %d: not crawling %s", robots_url, resp.status_code, parts.netloc)
            return disallow_all(robots_url)
        if resp.status_code >= 400:
            return None  # no robots.txt: everything allowed
        rp, delay = parse_robots(robots_url, body.decode("utf-8", errors="replace"), self.config.user_agent)
        if delay:
            self._crawl_delays[_host_key(url)] = delay
        return rp

    # -- fetching -------------------------------------------------------------------------------------------
    @contextmanager
    def stream(self, url: str, headers: dict[str, str] | None = None) -> Iterator[requests.Response]:
        """An open streamed response to GET ``url``; the host's turn is held until the block ends.

        Raises:
            FetchError: a refused, non-http(s) or looping URL, or a network error after the retries.
        """
        check_url(url)
        gate = self.gate(url)
        with gate.lock:
            try:
                resp = self._get(url, headers=headers, stream=True, timeout=self.config.timeout)
            except requests.TooManyRedirects as exc:
                hops = [r.url for r in getattr(exc.response, "history", [])][:4]
                raise FetchError(f"{url}: more than {self.config.max_redirects} redirects (a loop? {hops} ...)",
                                 url) from exc
            except requests.exceptions.InvalidSchema as exc:
                raise FetchError(f"{url}: redirected to a URL that is not http(s) ({exc})", url) from exc
            except requests.RequestException as exc:
                raise FetchError(f"{url}: {exc} (after {self.config.retries} retries)", url) from exc
            try:
                yield resp
            finally:
                resp.close()
                gate.touch()

    def get_page(self, url: str, *, max_age: float | None = None, use_cache: bool = True,
                 max_bytes: int | None = None) -> Page:
        """GET a page (HTML/JSON), from the cache when it holds one younger than ``max_age`` seconds.

        Raises:
            HttpStatusError: the server answered 4xx/5xx (after the retries).
            ResponseTooLarge: the body is larger than ``max_bytes`` (default ``config.max_bytes``).
            FetchError: refused by robots.txt, not http(s), a redirect loop, or a network error after the retries.
        """
        if use_cache and self.cache is not None and not self.config.refresh:
            page = self.cache.get(url, max_age)
            if page is not None:
                self.log_event(url=url, outcome="cache", status=page.status)
                return page
        cap = max_bytes or self.config.max_bytes
        last: Exception | None = None
        for attempt in range(self.config.retries + 1):
            with self.stream(url) as resp:
                raise_for_status(resp, url)
                try:
                    body = read_capped(resp, cap, url)
                except _TRANSIENT + (requests.exceptions.ChunkedEncodingError,) as exc:
                    last = exc
                    self.log_event(url=url, outcome="retry" if attempt < self.config.retries else "error",
                                   error=f"body: {exc!r}", attempt=attempt)
                    time.sleep(self.backoff(attempt))
                    continue
                page = Page(url, resp.url, resp.status_code, resp.headers.get("Content-Type", ""), body)
            if is_html(page.content_type) and (why := challenge_reason(resp.headers, body)):
                self.log_event(url=url, outcome="challenge", status=page.status, error=why)
                raise BotChallenge(f"{url}: the site answered with a {why} instead of the page; cxrcurate does not "
                                   f"solve or retry these. Fetch later, or get the data another way.", url, page.status)
            if self.cache is not None:
                self.cache.put(page)
            return page
        raise FetchError(f"{url}: the body could not be read ({last}) after {self.config.retries} retries", url)

    # -- the log --------------------------------------------------------------------------------------------
    def log_event(self, *, url: str, outcome: str, started: float | None = None, **fields: Any) -> None:
        """Append one outcome (a request attempt, a cache replay, a refusal, a download) to the JSON-lines log."""
        event = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "url": url, "outcome": outcome}
        if started is not None:
            event["seconds"] = round(time.monotonic() - started, 3)
        event.update({k: v for k, v in fields.items() if v is not None})
        log.debug("http %s", event)
        if self.config.log_path is None:
            return
        with self._log_lock:
            self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.config.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")


__all__ = ["HttpClient", "HttpConfig", "PoliteAdapter", "check_url", "check_redirect", "is_internal_host",
           "retry_after_seconds", "raise_for_status", "read_capped", "read_prefix", "USER_AGENT", "CONTACT_URL",
           "FetchError", "HttpStatusError", "ResponseTooLarge", "RobotsDisallowed", "BotChallenge"]
