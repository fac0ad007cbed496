"""Metadata CSV reading that never loses a row.

``pandas.read_csv`` and a bare ``csv.reader`` lose rows three ways on real files: a field over the csv module's
131,072-character limit (a long ``clinical_notes``) is skipped, an unclosed quote swallows every later row into
one field, and rows with surplus commas are dropped or mis-split. Here every physical record is read with the
field limit lifted, and a record that cannot be read intact becomes a *bad row* (its ``source_record``, line
number and cause) for the dropped table; the rows after it are read normally, so their ``source_record``
(``<file>#<0-based data row>``) stays the row's real position in the file.

Records end only where the CSV dialect ends a line (``\r\n``, ``\n``, ``\r``): a U+2028, NEL or form feed inside
a field is text, as pandas reads it, not a row break (``str.splitlines`` would cut there). A header naming a column
twice (or two names that differ only in case, spacing or invisible characters) is refused, naming the column: which
one a loader would read is a guess. The file is opened without blocking and refused unless it is a regular file
under the size limit (``imageio.open_regular``); a gzip'd file is decompressed up to the same limit.
"""

from __future__ import annotations

import csv
import gzip
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParseError, SourceError
from ..imageio import MAX_FILE_MB_ENV, max_file_bytes, open_regular

Repair = Callable[[list[str], list[str]], "list[str] | None"]
"""``repair(fields, header)``: a row with surplus fields made to fit the header, or None when it cannot be."""

_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # the csv module's own line ends, nothing else
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")


@dataclass
class MetadataRows:
    """A metadata file read in full: its header, its rows and the records it could not read intact."""

    file: str
    header: list[str]
    rows: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    """``(source_record, {column: value or None})`` per readable row, in file order."""
    bad: list[tuple[str, str]] = field(default_factory=list)
    """``(source_record, "line N: cause")`` per record that could not be read intact."""


def _decode(path: Path) -> str:
    limit = max_file_bytes()
    hint = f"raise {MAX_FILE_MB_ENV} (MiB) if the file is right"
    try:
        with open_regular(path, max_bytes=None if path.suffix == ".gz" else limit, error=ParseError,
                          limit_hint=hint) as fh:
            raw = gzip.GzipFile(fileobj=fh).read(limit + 1) if path.suffix == ".gz" else fh.read(limit + 1)
    except (OSError, EOFError) as exc:
        raise ParseError(f"{path}: cannot read ({exc}); is the download complete?") from exc
    if len(raw) > limit:
        raise ParseError(f"{path}: more than {limit:,} bytes (decompressed); refused as a possible bomb; {hint}")
    encodings = ("utf-16", "utf-8-sig", "cp1252") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig", "cp1252")
    for enc in encodings:  # UTF-16 only with its byte-order mark (as Excel's "Unicode text" writes it)
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")  # cannot fail: every byte is a character


def split_lines(text: str) -> list[str]:
    """``text`` cut after each ``\r\n``, ``\n`` or ``\r`` only (line ends kept), as the csv module reads lines."""
    return _LINES.findall(text)


def _header_key(name: str) -> str:
    return " ".join(_INVISIBLE.sub("", unicodedata.normalize("NFKC", name)).casefold().split())


def check_header(header: list[str], path: Path, what: str = "") -> None:
    """Refuse a header that names a column twice, or two columns that differ only in case, spacing or invisible
    characters (``finding`` and ``Finding``): which one a loader reads would be a guess.

    Raises:
        SourceError: naming the column and both positions.
    """
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        key = _header_key(name)
        if not key:
            continue  # unnamed columns (trailing commas) are never read by name
        if key in seen:
            j = seen[key]
            same = "twice" if header[j] == name else f"twice ({header[j]!r} and {name!r} differ only in case, " \
                                                      "spacing or invisible characters)"
            raise SourceError(f"{what}{path}: the header names column {name!r} {same}, at columns {j + 1} and "
                              f"{i + 1}; which one holds the data is ambiguous. Rename or remove one and run again")
        seen[key] = i


def _fields(line: str) -> int:
    try:
        return len(next(csv.reader([line]), []))
    except csv.Error:
        return 0


def read_metadata(path: Path, rel: str, required: Iterable[str] = (), repair: Repair | None = None,
                  what: str = "", layout: str = "") -> MetadataRows:
    """Read the CSV at ``path`` (named ``rel`` in ``source_record``), every row accounted for.

    A record is *bad* (kept in ``MetadataRows.bad``, never silently dropped) when the csv module rejects it (an
    unclosed quote at the end of the file, a NUL byte), when it spans several lines of which one looks like a whole
    row (an unclosed quote that swallowed later rows: only its first line is bad, reading resumes on the next
    line), or when it has more fields than the header and ``repair`` cannot fit it. Short rows are padded with
    empty values, as pandas does. Blank lines are skipped.

    Raises:
        SourceError: the file is empty, a ``required`` column is missing (the message lists the columns
            expected and found), or the header is ambiguous (``check_header``).
        ParseError: the file cannot be read, is not a regular file, or is over the size limit.
    """
    csv.field_size_limit(_FIELD_LIMIT)
    lines = split_lines(_decode(path))
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    hint = f" Expected the layout:\n{layout}" if layout else ""
    if start is None:
        raise SourceError(f"{what}{path} is empty; expected a CSV header and rows. Fetch the source again.{hint}")
    header = [h.strip() for h in next(csv.reader([lines[start]]))]
    check_header(header, path, what)
    missing = [c for c in required if c not in header]
    if missing:
        raise SourceError(f"{what}{path}: missing column(s) {missing}; expected at least {list(required)}, found "
                          f"{header[:30]}. Is this the right folder for this source?{hint}")
    out = MetadataRows(rel, header)
    n = len(header)
    index = 0

    def add_bad(line: int, cause: str) -> None:
        nonlocal index
        out.bad.append((f"{rel}#{index}", f"{rel} line {line + 1}: {cause}; row not read, fix the file to include it"))
        index += 1

    pos = start + 1
    while pos < len(lines):
        restart = None
        reader = csv.reader(iter(lines[pos:]), strict=True)
        done = 0
        try:
            for rec in reader:
                first, end = pos + done, pos + reader.line_num
                done = reader.line_num
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    continue  # a blank line
                if end - first > 1 and n > 1 and any(_fields(x) >= n for x in lines[first + 1:end]):
                    add_bad(first, "unclosed quote (it runs over the following rows)")
                    restart = first + 1
                    break
                if len(rec) > n:
                    fixed = repair(rec, header) if repair else None
                    if fixed is None or len(fixed) != n:
                        add_bad(first, f"{len(rec)} fields, the header has {n}")
                        continue
                    rec = fixed
                rec = rec + [""] * (n - len(rec))
                out.rows.append((f"{rel}#{index}", {h: (v if v.strip() else None) for h, v in zip(header, rec,
                                                                                                  strict=True)}))
                index += 1
        except csv.Error as exc:
            first = pos + done
            add_bad(first, f"cannot be parsed ({exc}; an unclosed quote?)")
            restart = first + 1
        if restart is None:
            break
        pos = restart
    return out
