"""The build's fingerprint cache (``<out>/.fingerprints.jsonl``): decoded files' fingerprints, kept across runs.

A rebuild, or a build resumed after an interruption, reuses an entry instead of decoding the file again, so the
manifest's hashes and sizes come from the cache: an entry is trusted only when it is *signed* and *valid*.

* Signed: each line carries an HMAC-SHA256 of its content under a key kept outside the output folder
  (``$XDG_CACHE_HOME/cxrcurate/fingerprint-cache.key``, else ``~/.cache/...``; 32 random bytes, mode 0600, made on
  first use). A line edited by hand, written by another user or machine, or copied from another build fails the
  check and its file is decoded again. Without a usable key the cache is not read at all (a warning says so).
* Valid: the fingerprint has exactly the manifest's image columns with well-formed values (64-hex digests, sizes
  >= 1, a 64-bit pHash).
* Current: the file's path, size, mtime, ctime and inode are unchanged AND the sha256 of its first and last 64 KiB
  matches, so a same-size replacement that kept the old mtime (``cp -p``, ``rsync -a``) is decoded again.

Lines that fail are counted and logged, never used. ``rehash=True`` (``--rehash``) ignores the cache altogether.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

from .errors import CxrcurateError
from .imageio import open_regular

log = logging.getLogger(__name__)

KEY_NAME = "fingerprint-cache.key"
_SAMPLE = 65536
_MAX_LINE = 1 << 16
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FP_INT = {"width", "height", "bit_depth", "frames"}
_FP_KEYS = {"width", "height", "bit_depth", "file_sha256", "pixel_sha256", "phash"}


def user_cache_dir(name: str, env: str | None = None) -> Path:
    """A folder of cxrcurate's in the user's cache: ``$<env>`` when that variable is set, else
    ``$XDG_CACHE_HOME/cxrcurate/<name>``, else ``~/.cache/cxrcurate/<name>`` (the signing key, the bench's tensor
    cache and dedup's feature cache all live there)."""
    if env and os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cxrcurate" / name


def key_path() -> Path:
    """Where the signing key lives: ``$XDG_CACHE_HOME/cxrcurate/`` or ``~/.cache/cxrcurate/``."""
    return user_cache_dir(KEY_NAME)


def _load_key() -> bytes | None:
    path = key_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        with open_regular(path, max_bytes=4096) as fh:
            key = fh.read()
    except (OSError, CxrcurateError) as exc:
        log.warning("fingerprint cache key %s unusable (%s): the cache is not reused, every file is decoded", path, exc)
        return None
    return key if len(key) >= 16 else None


def sample_digest(file: str, size: int) -> str:
    """sha256 of the first and last 64 KiB of a file: a cheap check that the bytes are the ones fingerprinted."""
    h = hashlib.sha256()
    with open_regular(file) as fh:
        h.update(fh.read(_SAMPLE))
        if size > 2 * _SAMPLE:
            fh.seek(-_SAMPLE, os.SEEK_END)
        h.update(fh.read(_SAMPLE))
    return h.hexdigest()


def valid_fingerprint(fp: Any) -> bool:
    """Whether ``fp`` has exactly the manifest's image columns (``frames`` optional), each well-formed."""
    if not isinstance(fp, dict) or not _FP_KEYS <= set(fp) <= _FP_KEYS | {"frames"}:
        return False
    ints_ok = all(type(fp[k]) is int and 1 <= fp[k] < 2**31 for k in _FP_INT & set(fp))
    return (ints_ok and type(fp["phash"]) is int and 0 <= fp["phash"] < 2**64
            and all(isinstance(fp[k], str) and _HEX64.fullmatch(fp[k]) for k in ("file_sha256", "pixel_sha256")))


def _mac(key: bytes, body: dict) -> str:
    return hmac.new(key, json.dumps(body, sort_keys=True).encode(), hashlib.sha256).hexdigest()


class FingerprintCache:
    """Fingerprints of decoded files, appended as they complete, reused only when signed, valid and current."""

    def __init__(self, path: Path | None, rehash: bool = False) -> None:
        self.path = path
        self.entries: dict[tuple, tuple[str, dict]] = {}
        self.rejected = 0
        self.key = _load_key() if path is not None else None
        self._fh = None
        if path is None or not os.path.lexists(path):
            return
        if not path.is_file() or path.is_symlink():
            raise CxrcurateError(f"{path}: the fingerprint cache is not a regular file; delete it (the build "
                                 "writes a new one)")
        if rehash or self.key is None:
            return
        with open_regular(path) as fh:
            while raw := fh.readline(_MAX_LINE + 1):
                if len(raw) > _MAX_LINE and not raw.endswith(b"\n"):  # an endless line: skip to its end, unread
                    while (rest := fh.readline(_MAX_LINE)) and not rest.endswith(b"\n"):
                        pass
                    self.rejected += 1
                    continue
                self._read_line(raw)
        if self.rejected:
            log.warning("%s: %d line(s) failed the signature or format check (edited, cut by an interrupted run, "
                        "or written elsewhere); their files are decoded again", path, self.rejected)

    def _read_line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            if len(raw) > _MAX_LINE:
                raise ValueError("line too long")
            e = json.loads(raw)
            mac = e.pop("mac")
            if not (isinstance(mac, str) and hmac.compare_digest(mac, _mac(self.key or b"", e))):
                raise ValueError("bad signature")
            key = (e["file"], e["size"], e["mtime_ns"], e["ctime_ns"], e["ino"])
            if not (isinstance(e["sample"], str) and _HEX64.fullmatch(e["sample"]) and valid_fingerprint(e["fp"])):
                raise ValueError("bad entry")
            self.entries[key] = (e["sample"], e["fp"])
        except (ValueError, KeyError, TypeError, AttributeError):
            self.rejected += 1

    @staticmethod
    def key_of(file: str) -> tuple[str, int, int, int, int]:
        st = os.stat(file)
        return file, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino

    def get(self, file: str) -> dict | None:
        """The trusted fingerprint of ``file``, or None (not cached, changed, or unreadable: decoding reports it)."""
        try:
            k = self.key_of(file)
            hit = self.entries.get(k)
            return dict(hit[1]) if hit is not None and hit[0] == sample_digest(file, k[1]) else None
        except (OSError, CxrcurateError):
            return None

    def put(self, file: str, fp: dict) -> None:
        """Append the signed fingerprint of ``file`` (nothing without a key or a cache path)."""
        if self.path is None or self.key is None:
            return
        try:
            k = self.key_of(file)
            sample = sample_digest(file, k[1])
        except (OSError, CxrcurateError):
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a")
        body = {"file": k[0], "size": k[1], "mtime_ns": k[2], "ctime_ns": k[3], "ino": k[4], "sample": sample,
                "fp": fp}
        self._fh.write(json.dumps({**body, "mac": _mac(self.key, body)}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()
