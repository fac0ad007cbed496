"""Published releases (``manifests/v<N>/``): built from a data root, verified against a user's files, materialised
into a full manifest, and loaded as a DataFrame.

- ``quality``: the quality flags of one image (inverted, lateral, low information, figure/text, small).
- ``build``: ``build_release`` -- the one deterministic command that writes a release folder.
- ``card``: the dataset card (``README.md``) with tables measured from the release.
- ``verify``: ``verify_release`` (missing, changed, extra files by sha256), ``materialise``, ``load_release``.
"""

from __future__ import annotations

from .verify import VerifyReport, load_release, materialise, verify_release

__all__ = ["VerifyReport", "load_release", "materialise", "verify_release"]
