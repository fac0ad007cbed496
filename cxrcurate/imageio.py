"""Decode any chest X-ray file (JPEG, PNG 8/16-bit/palette/RGBA, WebP, TIFF, DICOM) to 8-bit grayscale.

Everything downstream (hashes, dedup, preprocessing, models) sees the same 2-D ``uint8`` array for the same
picture, whatever container it came in. 16-bit data are windowed onto 0..255 (linear from the image's own
minimum to maximum, or from the DICOM VOI window's output range), never clipped at 255; a 16-bit container (or an
8-bit DICOM) holding only values 0..255 keeps them as they are. Alpha is composited onto black.

Every read is bounded, because a manifest or a source folder may name anything. A file is opened without blocking
and refused unless it is a regular file (a FIFO or a device would hang or never end); it is refused when larger
than ``max_bytes`` before a byte is decoded; it is hashed in blocks and decoded from disk as the decoder asks (a
DICOM file's elements are read by pydicom, its pixel data whole, which the size limit bounds); a multi-frame file
(DICOM, TIFF, GIF, WebP) has only the frame used, the first, decoded. The limits are stated in each refusal and
can be raised per call (``max_bytes``, ``max_pixels``) or for every command through the environment variables
``CXRCURATE_MAX_FILE_MB`` and ``CXRCURATE_MAX_PIXELS``. Running out of memory while decoding is reported as an
``ImageDecodeError`` naming the file, so a build drops that file instead of aborting.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from .errors import CxrcurateError, ImageDecodeError, ParseError, UsageError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DEFAULT_MAX_PIXELS = 100_000_000  # a 10k x 10k radiograph; anything larger is treated as a decompression bomb
DEFAULT_MAX_FILE_BYTES = 512 * 2**20  # 2.5x a 10k x 10k 16-bit uncompressed DICOM; larger files are refused unread
MAX_PIXELS_ENV, MAX_FILE_MB_ENV = "CXRCURATE_MAX_PIXELS", "CXRCURATE_MAX_FILE_MB"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".dcm"})


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: ``pixels`` is 2-D ``uint8``; ``bit_depth`` is that of the stored samples."""

    pixels: np.ndarray
    bit_depth: int
    format: str
    frames: int = 1
    """frames in the file (GIF, TIFF, WebP, DICOM can hold several); ``pixels`` is the first."""

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def is_image_name(name: str | os.PathLike) -> bool:
    """True when a file name has one of the image suffixes sources use (case-insensitive)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


_PIXELS_HINT = f"raise max_pixels (or {MAX_PIXELS_ENV}) only if you trust the file"


def _env_limit(name: str, default: int, scale: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 1 <= value < 2**53:
        raise UsageError(f"{name}={raw!r}: expected a number >= 1 (default {default // scale:,}); fix or unset it")
    return int(value * scale)


def max_pixels_limit(value: int | None = None) -> int:
    """The pixel limit in force: ``value`` when given, else ``$CXRCURATE_MAX_PIXELS``, else 100 million.

    Raises:
        UsageError: the environment variable is not a number >= 1.
    """
    return int(value) if value is not None else _env_limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)


def max_file_bytes(value: int | None = None) -> int:
    """The file-size limit in force, in bytes: ``value`` when given, else ``$CXRCURATE_MAX_FILE_MB`` MiB, else 512 MiB.

    Raises:
        UsageError: the environment variable is not a number >= 1.
    """
    return int(value) if value is not None else _env_limit(MAX_FILE_MB_ENV, DEFAULT_MAX_FILE_BYTES, 2**20)


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "not a regular file")


def open_regular(path: str | os.PathLike, *, max_bytes: int | None = None,
                 error: type[CxrcurateError] = ParseError, limit_hint: str = "") -> IO[bytes]:
    """Open ``path`` for reading in binary, only if it is a regular file no larger than ``max_bytes``.

    The one way cxrcurate opens a file that a manifest, a source folder or an option names: a FIFO, socket, device or
    folder is refused before it is opened and the open itself never blocks (``O_NONBLOCK``, checked again on the
    open descriptor), so no command hangs on a named pipe or reads ``/dev/zero`` forever.

    Raises:
        error: (default ``ParseError``) naming the path: cannot be read, not a regular file, or too large (the
            message gives the limit and ``limit_hint``, how to raise it).
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        mode = os.stat(name).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{name}: {_kind(mode)}, not a regular file; not read (it could block or never end): "
                        "check the path and put the file itself there")
        fd = os.open(name, flags)
    except OSError as exc:
        raise error(f"{name}: cannot read the file ({exc.strerror}); check the path") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the check and the open
            raise error(f"{name}: {_kind(st.st_mode)}, not a regular file; not read: check the path")
        if max_bytes is not None and st.st_size > max_bytes:
            hint = limit_hint or f"raise {MAX_FILE_MB_ENV} (MiB) only if you trust the file"
            raise error(f"{name}: {st.st_size:,} bytes, over the limit of {max_bytes:,}; refused unread as a "
                        f"possible bomb or a wrong file; {hint}")
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, *, max_bytes: int, error: type[CxrcurateError] = ParseError,
                 limit_hint: str = "") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see ``open_regular``); never more than that is read,
    even when the file grows while it is read."""
    with open_regular(path, max_bytes=max_bytes, error=error, limit_hint=limit_hint) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{os.fspath(path)}: over the limit of {max_bytes:,} bytes (it grew while read); "
                    f"{limit_hint or 'check the file'}")
    return data


def _window(arr: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    arr = arr.astype(np.float64)
    lo = float(np.min(arr)) if low is None else low
    hi = float(np.max(arr)) if high is None else high
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    out = (np.clip(arr, lo, hi) - lo) * (255.0 / (hi - lo))
    return np.rint(out).astype(np.uint8)


def _voi_output_range(ds: Dataset) -> tuple[float | None, float | None]:
    """The range the dataset's VOI LUT or window maps onto (its two saturation values), lowest first.

    Mapping that range, not the VOI output's own minimum..maximum, onto 0..255 keeps the window's meaning: a
    value at the window centre is mid-gray even when no pixel falls outside the window.
    """
    from pydicom.pixels import apply_voi_lut

    item = ds.VOILUTSequence[0] if ds.get("VOILUTSequence") else None
    if item is not None and "LUTDescriptor" in item and "LUTData" in item:  # apply_voi_lut prefers the LUT
        entries, first = int(item.LUTDescriptor[0] or 2**16), int(item.LUTDescriptor[1])
        probe = np.array([first - 1, first + entries - 1], dtype=np.int64)  # below and at the LUT's last entry
    else:
        probe = np.array([-np.inf, np.inf])
    ends = np.asarray(apply_voi_lut(probe, ds), dtype=np.float64)
    if not np.all(np.isfinite(ends)) or ends.max() <= ends.min():
        return None, None  # no usable VOI: window on the data's own range
    return float(ends.min()), float(ends.max())


def _decode_dicom(fh: IO[bytes], name: str, max_pixels: int) -> DecodedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(fh, force=True)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        samples = max(1, int(ds.get("SamplesPerPixel", 1) or 1))
        if rows * cols * samples > max_pixels:
            raise ImageDecodeError(f"{name}: {cols}x{rows} pixels x {samples} samples exceeds the limit of "
                                   f"{max_pixels} (decompression bomb?); {_PIXELS_HINT}")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        ds.pixel_array_options(index=0)  # a multi-frame file: only the first frame (the radiograph) is decoded
        raw = ds.pixel_array
        if raw.ndim == 4 or (raw.ndim == 3 and samples == 1):
            frames = max(frames, raw.shape[0])
            raw = raw[0]
        if raw.ndim == 3:
            raw = raw[..., :3].mean(axis=-1)
        arr = np.asarray(apply_modality_lut(raw, ds))
        photometric = str(getattr(ds, "PhotometricInterpretation", "")).upper()
        low = high = None
        has_voi = ("WindowCenter" in ds or "VOILUTSequence" in ds) and photometric in {"MONOCHROME1", "MONOCHROME2"}
        if has_voi:  # pydicom refuses windowing on colour data; a colour secondary capture just skips it
            low, high = _voi_output_range(ds)
            arr = np.asarray(apply_voi_lut(arr, ds))
    except (ImageDecodeError, MemoryError):
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageDecodeError(f"{name}: not a readable DICOM image ({exc}); check the file or re-download it") from exc
    bits = int(getattr(ds, "BitsStored", 8 * raw.dtype.itemsize))
    if low is None and bits <= 8 and arr.size and 0 <= arr.min() and arr.max() <= 255 and np.all(arr == np.rint(arr)):
        out = arr.astype(np.uint8)  # 8-bit data keep their values, as an 8-bit PNG of the same picture does
    else:
        out = _window(arr, low, high)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return DecodedImage(np.ascontiguousarray(out), bits, "DICOM", frames)


def _decode_pillow(fh: IO[bytes], name: str, max_pixels: int) -> DecodedImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # ``max_pixels`` is the limit: Pillow's own warning (at ~89 Mpx) would refuse a 10k x 10k radiograph.
            # Pillow's hard DecompressionBombError (twice its MAX_IMAGE_PIXELS) still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh)
            fmt = im.format or "unknown"
            frames = int(getattr(im, "n_frames", 1) or 1)
            w, h = im.size
            if w * h > max_pixels:
                raise ImageDecodeError(f"{name}: {w}x{h} pixels exceeds the limit of {max_pixels} "
                                       f"(decompression bomb?); {_PIXELS_HINT}")
            im.load()  # the current frame only: a multi-frame GIF/TIFF/WebP has its other frames counted, not decoded
            im = ImageOps.exif_transpose(im)
    except (ImageDecodeError, MemoryError):
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not an image Pillow can read; check that the download is complete "
                               "and that the file is not an HTML error page") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: decompression bomb refused ({exc}); if you trust the file, raise "
                               "PIL.Image.MAX_IMAGE_PIXELS and max_pixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        if "Too Large" in text or "too large" in text:
            why = "a metadata chunk (text, ICC profile) over Pillow's safety limit: refused as a possible bomb"
        elif "checksum" in text or "CRC" in text:
            why = "a checksum does not match: the file is damaged"
        elif "truncated" in text or "end of" in text.lower():
            why = "the file is truncated"
        else:
            why = "the file is damaged or in an unsupported variant"
        raise ImageDecodeError(f"{name}: cannot decode ({text}); {why}: re-download it, or convert it to PNG "
                               "if it opens elsewhere") from exc

    mode = im.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        arr = np.asarray(im)
        eight_bit_values = mode != "F" and arr.size > 0 and 0 <= arr.min() and arr.max() <= 255
        depth = 32 if mode == "F" else 16 if mode.startswith("I;16") or not eight_bit_values else 8
        if eight_bit_values:  # a 16-bit container holding 8-bit values: keep them as they are (not stretched)
            return DecodedImage(np.ascontiguousarray(arr, dtype=np.uint8), depth, fmt, frames)
        return DecodedImage(_window(arr), depth, fmt, frames)
    if mode in {"RGBA", "LA", "PA"} or "transparency" in im.info:  # P, L or RGB with a tRNS colour
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(background, rgba)
    gray = np.asarray(im.convert("L"), dtype=np.uint8)
    return DecodedImage(np.ascontiguousarray(gray), 8, fmt, frames)


def decode_bytes(data: bytes, name: str = "<bytes>", max_pixels: int | None = None) -> DecodedImage:
    """Decode image bytes to 8-bit grayscale.

    Raises:
        ImageDecodeError: empty, truncated, non-image, bomb, out of memory, or unreadable DICOM; the message names
            ``name``.
    """
    return _decode_stream(io.BytesIO(data), name, max_pixels_limit(max_pixels))


def _decode_stream(fh: IO[bytes], name: str, max_pixels: int) -> DecodedImage:
    head = fh.read(132)
    fh.seek(0)
    if not head:
        raise ImageDecodeError(f"{name}: empty file; re-download it")
    try:
        if head[128:132] == b"DICM" or name.lower().endswith(".dcm"):
            return _decode_dicom(fh, name, max_pixels)
        return _decode_pillow(fh, name, max_pixels)
    except MemoryError as exc:
        raise ImageDecodeError(f"{name}: out of memory while decoding it; free memory, or lower the limits "
                               f"({MAX_PIXELS_ENV}, {MAX_FILE_MB_ENV}) so such files are refused unread") from exc


def decode_image(path: str | os.PathLike, max_pixels: int | None = None,
                 max_bytes: int | None = None) -> DecodedImage:
    """Decode an image file to 8-bit grayscale, reading it from disk as the decoder needs it (see ``decode_bytes``).

    Raises:
        ImageDecodeError: as ``decode_bytes``; also a path that is not a regular file or is over ``max_bytes``.
    """
    with open_regular(path, max_bytes=max_file_bytes(max_bytes), error=ImageDecodeError) as fh:
        return _decode_stream(fh, str(path), max_pixels_limit(max_pixels))


def pixel_sha256(pixels: np.ndarray) -> str:
    """sha256 of 8-bit grayscale pixels and their shape: equal only for identical pictures."""
    h = hashlib.sha256(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode())
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def phash64(pixels: np.ndarray) -> int:
    """The 64-bit imagehash pHash of an 8-bit grayscale image, as an unsigned integer."""
    import imagehash
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(pixels, mode="L")).hash.flatten()
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def fingerprint(path: str | os.PathLike, max_pixels: int | None = None, max_bytes: int | None = None) -> dict:
    """Decode a file once and return the manifest's image columns (size, depth, hashes).

    The file is hashed in blocks and decoded from disk, so memory stays bounded by the decoded picture.

    Raises:
        ImageDecodeError: the file cannot be decoded, is not a regular file, or is over the limits.
    """
    return fingerprint_decoded(path, max_pixels, max_bytes)[0]


def fingerprint_decoded(path: str | os.PathLike, max_pixels: int | None = None,
                        max_bytes: int | None = None) -> tuple[dict, np.ndarray]:
    """``fingerprint`` and the decoded 8-bit pixels it hashed (for work that needs the same decode: dedup features).

    Raises:
        ImageDecodeError: as ``fingerprint``.
    """
    with open_regular(path, max_bytes=max_file_bytes(max_bytes), error=ImageDecodeError) as fh:
        h = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
        fh.seek(0)
        img = _decode_stream(fh, str(path), max_pixels_limit(max_pixels))
    out = {
        "width": img.width, "height": img.height, "bit_depth": img.bit_depth, "file_sha256": h.hexdigest(),
        "pixel_sha256": pixel_sha256(img.pixels), "phash": phash64(img.pixels),
    }
    if img.frames > 1:
        out["frames"] = img.frames  # build notes it in the row's extra: only the first frame is used
    return out, img.pixels
