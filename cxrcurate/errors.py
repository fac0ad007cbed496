"""The exception hierarchy: every error names the file or URL at fault and says what to do."""

from __future__ import annotations


class CxrcurateError(Exception):
    """Base class of every error cxrcurate raises on purpose."""


class SourceError(CxrcurateError):
    """A source folder is missing, misnamed or laid out differently from what its loader expects."""


class UnknownSourceError(SourceError, KeyError):
    """A source name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParseError(CxrcurateError):
    """A metadata file or image could not be parsed."""


class ImageDecodeError(ParseError):
    """An image file is truncated, not an image, too large or in an unsupported mode."""


class ManualDownloadRequired(SourceError):
    """A source needs a login or click-through; the message gives the URL and the expected layout."""


class SchemaError(CxrcurateError):
    """A manifest does not match the schema: a column is missing, mistyped or holds an invalid value."""
