"""The exception hierarchy: every error names the file or URL at fault and says what to do."""

from __future__ import annotations


class CxrcurateError(Exception):
    """Base class of every error cxrcurate raises on purpose."""


class UsageError(CxrcurateError):
    """A command was called wrongly (a missing or contradictory option, an unknown name); the CLI exits 2 on it."""


class UnknownNameError(UsageError, KeyError):
    """A name (source, model, ...) that is not in its registry; the message says "did you mean ...?"."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SourceError(CxrcurateError):
    """A source folder is missing, misnamed or laid out differently from what its loader expects."""


class UnknownSourceError(UnknownNameError, SourceError):
    """A source name that is not in the registry."""


class ParseError(CxrcurateError):
    """A metadata file or image could not be parsed."""


class ImageDecodeError(ParseError):
    """An image file is truncated, not an image, too large or in an unsupported mode."""


class UnparseableRow(ParseError):
    """A metadata row the parser cannot read intact (an unclosed quote, a field count it cannot repair)."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file, self.line = file, line


class ManualDownloadRequired(SourceError):
    """A source needs a login or click-through; the message gives the URL and the expected layout."""


class SchemaError(CxrcurateError):
    """A manifest does not match the schema: a column is missing, mistyped or holds an invalid value."""


class MissingFileError(SchemaError, FileNotFoundError):
    """A table or file the caller named does not exist (the message says which command makes it)."""

    def __str__(self) -> str:  # FileNotFoundError would format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class UnsafeManifestPath(SchemaError):
    """A manifest names a file outside its data root (absolute, ``..``, or a link leading out); refused."""


class CheckpointError(CxrcurateError):
    """A checkpoint (weights, ``last.pt``) is missing, truncated, not what its name says, or unsafe to unpickle."""


class FetchError(CxrcurateError):
    """A URL could not be fetched: refused, failed after retries, too large, or not http(s)."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class HttpStatusError(FetchError):
    """The server answered with an error status (after the retries, for 429 and 5xx)."""

    def __init__(self, message: str, url: str, status: int) -> None:
        super().__init__(message, url)
        self.status = status


class BotChallenge(HttpStatusError):
    """The site answered with a bot challenge or a captcha (Cloudflare "Just a moment...", a captcha form) instead of
    the page. It is reported, never retried or solved: the site is asking automated clients to stay away."""


class TermsNotAccepted(UsageError):
    """A source whose terms restrict automated download was asked for without the explicit acknowledgement option."""


class RobotsDisallowed(FetchError):
    """robots.txt of the site does not allow cxrcurate to fetch this URL."""


class ResponseTooLarge(FetchError):
    """A response is larger than the cap set for it."""


class UnsafePath(FetchError):
    """A name or archive member that would write outside its folder (absolute, ``..``, a link)."""


class DownloadError(FetchError):
    """A download that did not complete or did not verify (the message says why and whether it can resume)."""


class LungWeightsError(CxrcurateError):
    """Lung-segmentation weights are missing or unreadable (the message says how to train or get them)."""


def did_you_mean(name: str, known: object, what: str = "name") -> str:
    """``unknown <what> 'x'. Did you mean 'y'? Known: a, b, c`` - the one "did you mean" message of cxrcurate."""
    import difflib

    choices = [str(k) for k in known]  # type: ignore[attr-defined]
    close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Known: {', '.join(choices)}"
