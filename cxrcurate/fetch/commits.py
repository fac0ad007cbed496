"""Commit ids: the one check every commit id passes before it reaches a download URL or a file name."""

from __future__ import annotations

import re

from ..errors import UsageError

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def check_commit(value: str, what: str = "--commit") -> str:
    """``value`` lower-cased when it is a full git commit id (40 hex digits, or 64 for SHA-256 repositories).

    A commit id goes into a download URL and a digest list's file name, so nothing else gets through: no branch
    names, no abbreviations (they can become ambiguous), no slashes, spaces or shell characters.

    Raises:
        UsageError: naming ``what`` and the value, with the fix.
    """
    sha = str(value).strip().lower()
    if not _COMMIT.fullmatch(sha):
        raise UsageError(f"{what} {str(value)[:80]!r} is not a full commit id (40 hexadecimal digits, as `git "
                         "rev-parse HEAD` prints); give the whole id of the commit")
    return sha
