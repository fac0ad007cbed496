"""Fetched pages and the on-disk cache that replays them, so a re-run or a parser change asks no site again.

Each page is stored as ``<sha256 of URL>.body`` and then ``<sha256>.json`` (status, final URL, content type, when
stored); the metadata file is written last and atomically, so a page interrupted mid-write is simply absent.
A URL the site answered "not found" (404/410) can be remembered too (``put_missing``), so a resumed walk over
numbered pages (Eurorad's case numbers) does not ask for it again; ``get`` never returns such an entry as a page.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CxrcurateError, ParseError
from ..imageio import read_regular

_META_MAX = 64 * 1024
_BODY_MAX = 256 * 2**20  # above any page cap a client may set; a bigger file was not written by the cache


@dataclass
class Page:
    """A fetched (or replayed) page: the body and what is needed to interpret it."""

    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    from_cache: bool = False

    @property
    def text(self) -> str:
        """The body decoded with the charset the server declared (UTF-8 when none)."""
        charset = "utf-8"
        for part in self.content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"'")
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ParseError: the body is not JSON (names the URL and what it starts with).
        """
        try:
            return json.loads(self.text)
        except ValueError as exc:
            raise ParseError(f"{self.final_url}: expected JSON, got {self.body[:60]!r} ({exc})") from exc



class PageCache:
    """Pages on disk keyed by URL: ``<sha256>.body`` then ``<sha256>.json`` (written last, so it marks complete)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode()).hexdigest()
        base = self.root / key[:2] / key
        return base.with_suffix(".json"), base.with_suffix(".body")

    def get(self, url: str, max_age: float | None) -> Page | None:
        meta_path, body_path = self._paths(url)
        try:  # a cache entry that is not a regular file, or larger than any page kept, is a miss (never blocks)
            meta = json.loads(read_regular(meta_path, max_bytes=_META_MAX))
            if meta.get("missing"):
                return None
            if max_age is not None and time.time() - meta["stored"] > max_age:
                return None
            body = read_regular(body_path, max_bytes=_BODY_MAX)
            return Page(url, meta["final_url"], meta["status"], meta["content_type"], body, True)
        except (OSError, ValueError, KeyError, TypeError, CxrcurateError):
            return None

    def put(self, page: Page) -> None:
        meta_path, body_path = self._paths(page.url)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"url": page.url, "final_url": page.final_url, "status": page.status,
                "content_type": page.content_type, "stored": time.time()}
        for path, data in ((body_path, page.body), (meta_path, json.dumps(meta).encode())):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def get_missing(self, url: str, max_age: float | None) -> int | None:
        """The status (404/410) stored for ``url`` by ``put_missing`` within ``max_age`` seconds; None otherwise."""
        meta_path, _ = self._paths(url)
        try:
            meta = json.loads(read_regular(meta_path, max_bytes=_META_MAX))
            if not meta.get("missing") or (max_age is not None and time.time() - meta["stored"] > max_age):
                return None
            return int(meta["status"])
        except (OSError, ValueError, KeyError, TypeError, CxrcurateError):
            return None

    def put_missing(self, url: str, status: int) -> None:
        """Remember that ``url`` answered ``status`` (404/410), replacing any page stored for it."""
        meta_path, body_path = self._paths(url)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        body_path.unlink(missing_ok=True)
        meta = {"url": url, "status": status, "missing": True, "stored": time.time()}
        tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(json.dumps(meta).encode())
        os.replace(tmp, meta_path)
