"""Dedup features kept once per picture across runs, keyed by ``pixel_sha256``: decode once.

Dedup needs, per picture, its crop-tolerant descriptors (``descriptors.raw_descriptors``) and its verification
features (``features.orb_features``: 320-px grey copy, ORB keypoints and descriptors, strongest keypoints). They
depend only on the pixels (and on the code and OpenCV that computed them), so they are stored under the pixel hash
the manifest already carries and reused by every later run: ``build-manifest --dedup`` computes them in its
decoding workers from the decode that hashes the picture (``store_decoded``, the build's ``on_decode`` hook), so
dedup does not decode the collection a second time, and ``dedup`` reads what is stored and computes only what is
missing (a re-run with other thresholds, or after a source was added, decodes only the new pictures).

Layout: ``FOLDER/<tag>/<sha[:2]>/<sha>.npz`` (uncompressed ``numpy`` arrays, about 120 KB per picture, most of it
the 320-px grey copy). ``tag`` is a hash of the feature parameters and the OpenCV version, so features made by
other code are never mixed in. ``FOLDER`` is ``$CXRCURATE_DEDUP_CACHE``, else ``$XDG_CACHE_HOME/cxrcurate/
dedup-features``, else ``~/.cache/cxrcurate/dedup-features``; deleting it only costs recomputation. Entries are
written to a temporary name and renamed, so concurrent workers and killed runs never leave a torn entry under a
real name; an entry that does not load, or whose arrays do not have the shapes and types the features have, is
counted, recomputed and overwritten. Entries are read as the features of the picture the manifest's
``pixel_sha256`` names (``DedupOptions.feature_cache=False`` recomputes everything from the files).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from ..fpcache import user_cache_dir
from .descriptors import AXIS_WINDOWS, CANON, N_CROPS, SIDE, raw_descriptors
from .features import GATE_KEYPOINTS, MAX_KEYPOINTS, VERIFY_SIDE, orb_features

log = logging.getLogger(__name__)

CACHE_ENV = "CXRCURATE_DEDUP_CACHE"
FEATURES_VERSION = 1  # bump when the code computing the features changes
_HEX64 = frozenset("0123456789abcdef")


def default_feature_dir() -> Path:
    """``$CXRCURATE_DEDUP_CACHE``, else ``$XDG_CACHE_HOME/cxrcurate/dedup-features``, else under ``~/.cache``."""
    return user_cache_dir("dedup-features", CACHE_ENV)


def feature_folder(given: str | os.PathLike | None = None) -> str:
    """The cache folder a run uses: ``given`` (``--feature-cache``), else ``default_feature_dir()``."""
    return str(given or default_feature_dir())


def feature_tag() -> str:
    """A short hash of everything the stored features depend on besides the pixels."""
    import cv2

    params = {"version": FEATURES_VERSION, "verify_side": VERIFY_SIDE, "max_keypoints": MAX_KEYPOINTS,
              "gate_keypoints": GATE_KEYPOINTS, "side": SIDE, "canon": CANON, "windows": AXIS_WINDOWS,
              "opencv": cv2.__version__}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def picture_features(pixels: np.ndarray, orb=None) -> dict[str, np.ndarray]:
    """Everything dedup needs of one decoded picture: ``raw`` descriptors, ``thumb``, ``pts``, ``desc``, ``top``."""
    thumb, pts, desc, top = orb_features(pixels, orb)
    if desc is None:
        desc = np.zeros((0, 32), np.uint8)
    return {"raw": raw_descriptors(pixels), "thumb": np.ascontiguousarray(thumb, np.uint8),
            "pts": np.ascontiguousarray(pts, np.float32), "desc": np.ascontiguousarray(desc, np.uint8),
            "top": np.ascontiguousarray(top, np.int16)}


def _well_formed(f: dict[str, np.ndarray]) -> bool:
    raw, thumb, pts, desc, top = (f.get(k) for k in ("raw", "thumb", "pts", "desc", "top"))
    if any(a is None for a in (raw, thumb, pts, desc, top)):
        return False
    m = len(desc)
    return (raw.shape == (N_CROPS, SIDE * SIDE) and raw.dtype == np.float32 and bool(np.isfinite(raw).all())
            and thumb.ndim == 2 and thumb.dtype == np.uint8 and max(thumb.shape) == VERIFY_SIDE
            and desc.ndim == 2 and desc.shape[1] == 32 and desc.dtype == np.uint8 and m <= MAX_KEYPOINTS
            and pts.shape == (m, 2) and pts.dtype == np.float32
            and top.ndim == 1 and top.dtype == np.int16 and len(top) <= min(m, GATE_KEYPOINTS)
            and bool(((top >= 0) & (top < max(m, 1))).all()))


def is_key(sha: object) -> bool:
    """Whether ``sha`` is a well-formed ``pixel_sha256`` (a stored entry's name)."""
    return isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX64


class FeatureCache:
    """The stored features of one feature tag in ``folder``: ``get`` by pixel hash, ``put`` what was computed.

    Counters ``hits``, ``bad`` (entries that did not load or were malformed) and ``unstored`` (puts that failed:
    full or read-only disk, a file where the folder should be) say what a run reused.
    """

    def __init__(self, folder: str | os.PathLike | None = None, tag: str | None = None) -> None:
        self.root = Path(feature_folder(folder))
        self.folder = self.root / (tag or feature_tag())
        self.hits = self.bad = self.unstored = 0

    def path(self, sha: str) -> Path:
        if not is_key(sha):
            raise ValueError(f"not a pixel_sha256: {sha!r}")
        return self.folder / sha[:2] / f"{sha}.npz"

    def get(self, sha: str) -> dict[str, np.ndarray] | None:
        p = self.path(sha)
        try:
            with np.load(p, allow_pickle=False) as z:
                f = {k: z[k] for k in z.files}
        except (FileNotFoundError, NotADirectoryError):  # never stored (or the folder is not one: put says so)
            return None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("dedup feature cache entry %s unreadable (%s): recomputed", p, exc)
            self.bad += 1
            return None
        if not _well_formed(f):
            log.warning("dedup feature cache entry %s is malformed: recomputed", p)
            self.bad += 1
            return None
        self.hits += 1
        return f

    def put(self, sha: str, f: dict[str, np.ndarray]) -> None:
        """Store ``f`` (atomically: a temporary name, then a rename); a full or read-only disk only logs."""
        p = self.path(sha)
        tmp = p.with_name(f"{p.stem}.{os.getpid()}.tmp.npz")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **f)
            tmp.replace(p)
        except OSError as exc:
            self.unstored += 1
            if self.unstored == 1:  # once per chunk of pictures, not once per picture
                log.warning("dedup features of %s (and maybe more) not stored in %s (%s): the next run computes "
                            "them again", sha, self.folder, exc)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # the folder itself is not one, or not ours: there is nothing of ours to remove
                pass


@functools.lru_cache(maxsize=4)
def _process_cache(folder: str, tag: str) -> FeatureCache:
    return FeatureCache(folder, tag)  # one per process: a failing disk is reported once, not once per picture


def store_decoded(folder: str, tag: str, sha: str, pixels: np.ndarray) -> None:
    """Compute and store one decoded picture's features unless stored: the build's per-picture hook.

    ``build-manifest --dedup`` passes ``functools.partial(store_decoded, folder, tag)`` as ``build.fingerprint_files``'s
    ``on_decode``, so the features come from the decode that fingerprints the file.
    """
    if not is_key(sha):
        return
    cache = _process_cache(folder, tag)
    if not cache.path(sha).exists():
        cache.put(sha, picture_features(pixels))

