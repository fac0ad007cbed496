"""Downloads that cannot corrupt, file names that cannot escape, archives whose members are checked.

A download streams into a hidden ``.<name>.part`` file beside its destination, is checked (length, hash when
known, content when a check is given) and only then renamed into place, so a file under its final name is always
complete and a re-run can skip it without asking the server. An interrupted download resumes from the part file
with an HTTP ``Range`` request when the server honours it, and starts over when it does not.

Names on disk come from cxrcurate's own scheme (case ids and positions passed through ``safe_component``); a URL
or a header never names a file. ``safe_join`` refuses any path that would leave its root, and ``extract_archive``
refuses archive members with absolute paths, ``..`` parts, links or device entries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests
import urllib3

from ..errors import DownloadError, FetchError, ResponseTooLarge, UnsafePath
from ..imageio import open_regular
from .http import HttpClient, raise_for_status

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 200 * 2**20  # one image or document
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_BODY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError)


@dataclass
class DownloadResult:
    """A file that is now complete on disk, and whether this call transferred it."""

    path: Path
    url: str
    size: int
    transferred: bool
    resumed_from: int = 0


def safe_component(text: str, max_len: int = 80) -> str:
    """A file-name component made from site text (a slug, a case id): ``[A-Za-z0-9._-]`` only, no leading dot.

    Raises:
        UnsafePath: nothing usable is left (``..``, ``/``, an empty string).
    """
    name = _UNSAFE.sub("-", text.strip()).strip(".-")[:max_len].strip(".-")
    if not name:
        raise UnsafePath(f"{text!r} gives no safe file name")
    return name


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """``root/parts...`` when it stays inside ``root``.

    Raises:
        UnsafePath: a part is absolute, holds ``..``, or the result resolves outside ``root``.
    """
    base = Path(root).resolve()
    for part in parts:
        p = part.replace("\\", "/")
        if p.startswith("/") or re.match(r"^[A-Za-z]:", p) or ".." in PurePosixPath(p).parts:
            raise UnsafePath(f"{part!r}: absolute or '..' path refused")
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise UnsafePath(f"{'/'.join(parts)!r} resolves outside {base}")
    return target


_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
          (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))


def sniff_image(path: str | os.PathLike) -> str:
    """The suffix (``.jpg``, ``.png``, ...) of the image format the file really holds.

    Raises:
        DownloadError: the bytes are not an image (an HTML error page served as image/jpeg, say) or the image
            is truncated.
    """
    with open(path, "rb") as fh:
        head = fh.read(132)
    suffix = next((s for magic, s in _MAGIC if head.startswith(magic)), None)
    if suffix is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        suffix = ".webp"
    if suffix is None and head[128:132] == b"DICM":
        return ".dcm"
    if suffix is None:
        raise DownloadError(f"not an image: the content starts with {head[:24]!r}")
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # Pillow raises many types for broken files
        raise DownloadError(f"a {suffix} file that does not decode ({exc})") from exc
    return suffix


def _part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def _content_range_start(value: str | None) -> tuple[int | None, int | None]:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (int(m.group(2)) if m.group(2).isdigit() else None)


def download(client: HttpClient, url: str, dest: str | os.PathLike, *, sha256: str | None = None,
             size: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
             check: Callable[[Path], object] | None = None) -> DownloadResult:
    """Bring ``url`` to ``dest`` completely or not at all; a complete ``dest`` is kept without a request.

    Args:
        client: the polite client.
        url: what to get.
        dest: the final path (its name comes from the caller's scheme, never from the URL).
        sha256: expected hex digest, when the source publishes one.
        size: expected length in bytes, when known beforehand.
        max_bytes: refuse larger bodies.
        check: called with the finished part file; raises (``DownloadError``) when the content is wrong.

    Raises:
        DownloadError: truncated after all attempts (the part file is kept; a re-run resumes it), a hash or
            length mismatch, or content that fails ``check`` (both discard the part file).
        HttpStatusError, ResponseTooLarge, FetchError: from the client.
    """
    dest = Path(dest)
    if dest.exists():
        return DownloadResult(dest, url, dest.stat().st_size, transferred=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    attempts = client.config.retries + 1
    first_offset = part.stat().st_size if part.exists() else 0
    last_error = ""
    for attempt in range(attempts):
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}  # the bytes as stored, so lengths and ranges agree
        if offset:
            headers["Range"] = f"bytes={offset}-"
        started = time.monotonic()
        try:
            with client.stream(url, headers=headers) as resp:
                if resp.status_code == 416:  # our part file is not a prefix the server knows: start over
                    part.unlink(missing_ok=True)
                    last_error = "HTTP 416 for the resume range; restarting"
                    continue
                raise_for_status(resp, url)
                total = _expected_total(resp, offset, size)
                if resp.status_code != 206:
                    offset = 0
                if total is not None and total > max_bytes:
                    raise ResponseTooLarge(f"{url}: {total:,} bytes, over the cap of {max_bytes:,}", url)
                _stream_to(resp, part, offset, max_bytes, url)
        except _BODY_ERRORS as exc:
            have = part.stat().st_size if part.exists() else 0
            last_error = f"connection lost after {have:,} bytes ({type(exc).__name__})"
            client.log_event(url=url, outcome="retry" if attempt + 1 < attempts else "error", error=last_error,
                             attempt=attempt, started=started)
            time.sleep(client.backoff(attempt))
            continue
        have = part.stat().st_size
        if total is not None and have != total:
            last_error = f"truncated: {have:,} of {total:,} bytes"
            client.log_event(url=url, outcome="retry" if attempt + 1 < attempts else "error", error=last_error,
                             attempt=attempt, started=started)
            if have > total:
                part.unlink()
            time.sleep(client.backoff(attempt))
            continue
        _verify(part, url, sha256, check)
        os.replace(part, dest)
        client.log_event(url=url, outcome="downloaded", bytes=have, file=dest.name, resumed_from=offset or None)
        return DownloadResult(dest, url, have, transferred=True, resumed_from=first_offset)
    kept = f"; {part.stat().st_size:,} bytes kept in {part.name}, a re-run resumes" if part.exists() else ""
    raise DownloadError(f"{url}: {last_error} after {attempts} attempt(s){kept}", url)


def _expected_total(resp: requests.Response, offset: int, size: int | None) -> int | None:
    if resp.status_code == 206:
        start, total = _content_range_start(resp.headers.get("Content-Range"))
        if start != offset:
            raise DownloadError(f"{resp.url}: asked for bytes from {offset}, got Content-Range "
                                f"{resp.headers.get('Content-Range')!r}", resp.url)
        return total if total is not None else size
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and "Content-Encoding" not in resp.headers:
        if size is not None and int(declared) != size:
            raise DownloadError(f"{resp.url}: the server sends {declared} bytes, {size} were expected", resp.url)
        return int(declared)
    return size


def _stream_to(resp: requests.Response, part: Path, offset: int, max_bytes: int, url: str) -> None:
    # read1 hands over what has arrived without waiting to fill a block, so a connection lost mid-way keeps
    # (almost) every byte that came: the resume starts where the data stopped, not at the last full block
    written = offset
    with open(part, "ab" if offset else "wb") as fh:
        while chunk := resp.raw.read1(64 * 1024, decode_content=True):
            written += len(chunk)
            if written > max_bytes:
                fh.close()
                part.unlink()
                raise ResponseTooLarge(f"{url}: more than {max_bytes:,} bytes, over the cap", url)
            fh.write(chunk)


def file_digests(path: str | os.PathLike, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """``{algorithm: hex digest}`` of a file, all algorithms computed in one read (blocks of 1 MiB).

    Raises:
        ParseError: the path is not a regular file (a FIFO or device is refused, never read: it could block or
            never end) or cannot be read.
    """
    hashers = {a: hashlib.new(a) for a in dict.fromkeys(algorithms)}
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in blocks."""
    return file_digests(path)["sha256"]


def _verify(part: Path, url: str, sha256: str | None, check: Callable[[Path], object] | None) -> None:
    if sha256:
        actual = file_sha256(part)
        if actual != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: sha256 {actual} is not the expected {sha256}", url)
    if check is not None:
        try:
            check(part)
        except DownloadError as exc:
            part.unlink()
            raise DownloadError(f"{url}: {exc}", url) from exc


# -- archives -------------------------------------------------------------------------------------------------
@dataclass
class Extracted:
    """What ``extract_archive`` wrote and what it refused (member name, reason)."""

    files: list[Path]
    refused: list[tuple[str, str]]


def _member_parts(name: str, strip: int) -> list[str] | None:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return parts[strip:] or None


def _check_member(name: str) -> str | None:
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return "absolute path"
    if ".." in n.split("/"):
        return "'..' in path"
    return None


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike, *, strip: int = 0,
                    max_total: int = 20 * 2**30) -> Extracted:
    """Extract a zip or tar archive into ``dest``, member by member, each through a temp file and a rename.

    Args:
        archive: the archive file.
        dest: the folder to extract into (created).
        strip: leading path components to drop (1 for GitHub's ``<repo>-<commit>/`` folder).
        max_total: refuse to write more than this many bytes in all (a zip bomb stops here).

    Raises:
        FetchError: the file is neither a zip nor a tar archive, or it expands beyond ``max_total``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = Extracted([], [])
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [(i.filename, i.is_dir(), stat.S_ISLNK(i.external_attr >> 16), i) for i in zf.infolist()]
            _extract(members, lambda i: zf.open(i), dest, strip, max_total, out)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = [(m.name, m.isdir(), not (m.isfile() or m.isdir()), m) for m in tf.getmembers()]
            _extract(members, lambda m: tf.extractfile(m), dest, strip, max_total, out)
    else:
        raise FetchError(f"{archive}: neither a zip nor a tar archive")
    return out


def _extract(members: list, opener: Callable, dest: Path, strip: int, max_total: int, out: Extracted) -> None:
    total = 0
    for name, is_dir, is_special, handle in members:
        why = _check_member(name) or ("a link or special file" if is_special else None)
        if why:
            out.refused.append((name, why))
            log.warning("archive member %r refused: %s", name, why)
            continue
        parts = _member_parts(name, strip)
        if parts is None or is_dir:
            continue
        try:
            target = safe_join(dest, *parts)
        except UnsafePath as exc:
            out.refused.append((name, str(exc)))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        with opener(handle) as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 20):
                total += len(block)
                if total > max_total:
                    dst.close()
                    tmp.unlink()
                    raise FetchError(f"archive expands beyond {max_total:,} bytes; stopped (a zip bomb?)")
                dst.write(block)
        os.replace(tmp, target)
        out.files.append(target)


def remove_tree(path: Path) -> None:
    """Delete a folder cxrcurate made (a temporary download folder), ignoring one that is already gone."""
    shutil.rmtree(path, ignore_errors=True)
