"""Decode any chest X-ray file (JPEG, PNG 8/16-bit/palette/RGBA, WebP, TIFF, DICOM) to 8-bit grayscale.

Everything downstream (hashes, dedup, preprocessing, models) sees the same 2-D ``uint8`` array for the same
picture, whatever container it came in. 16-bit data are windowed onto 0..255 (linear from the image's own
minimum to maximum, or from the DICOM VOI window's output range), never clipped at 255; a 16-bit container (or an
8-bit DICOM) holding only values 0..255 keeps them as they are. Alpha is composited onto black.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ImageDecodeError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DEFAULT_MAX_PIXELS = 100_000_000  # a 10k x 10k radiograph; anything larger is treated as a decompression bomb
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


def _decode_dicom(data: bytes, name: str, max_pixels: int) -> DecodedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        if rows * cols > max_pixels:
            raise ImageDecodeError(f"{name}: {cols}x{rows} pixels exceeds the limit of {max_pixels} "
                                   "(decompression bomb?); raise max_pixels only if you trust the file")
        raw = ds.pixel_array
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if raw.ndim == 4 or (raw.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1):
            frames = max(frames, raw.shape[0])
            raw = raw[0]  # a multi-frame file: the first frame is the radiograph (``frames`` says how many)
        if raw.ndim == 3:
            raw = raw[..., :3].mean(axis=-1)
        arr = np.asarray(apply_modality_lut(raw, ds))
        photometric = str(getattr(ds, "PhotometricInterpretation", "")).upper()
        low = high = None
        has_voi = ("WindowCenter" in ds or "VOILUTSequence" in ds) and photometric in {"MONOCHROME1", "MONOCHROME2"}
        if has_voi:  # pydicom refuses windowing on colour data; a colour secondary capture just skips it
            low, high = _voi_output_range(ds)
            arr = np.asarray(apply_voi_lut(arr, ds))
    except ImageDecodeError:
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


def _decode_pillow(data: bytes, name: str, max_pixels: int) -> DecodedImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # ``max_pixels`` is the limit: Pillow's own warning (at ~89 Mpx) would refuse a 10k x 10k radiograph.
            # Pillow's hard DecompressionBombError (twice its MAX_IMAGE_PIXELS) still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format or "unknown"
            frames = int(getattr(im, "n_frames", 1) or 1)
            w, h = im.size
            if w * h > max_pixels:
                raise ImageDecodeError(f"{name}: {w}x{h} pixels exceeds the limit of {max_pixels} "
                                       "(decompression bomb?); raise max_pixels only if you trust the file")
            im.load()
            im = ImageOps.exif_transpose(im)
    except ImageDecodeError:
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


def decode_bytes(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes to 8-bit grayscale.

    Raises:
        ImageDecodeError: empty, truncated, non-image, bomb, or unreadable DICOM; the message names ``name``.
    """
    if not data:
        raise ImageDecodeError(f"{name}: empty file; re-download it")
    if data[128:132] == b"DICM" or name.lower().endswith(".dcm"):
        return _decode_dicom(data, name, max_pixels)
    return _decode_pillow(data, name, max_pixels)


def decode_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode an image file to 8-bit grayscale (see ``decode_bytes``)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    return decode_bytes(data, str(path), max_pixels)


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


def fingerprint(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Decode a file once and return the manifest's image columns (size, depth, hashes).

    Raises:
        ImageDecodeError: the file cannot be decoded.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    img = decode_bytes(data, str(path), max_pixels)
    out = {
        "width": img.width, "height": img.height, "bit_depth": img.bit_depth,
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "pixel_sha256": pixel_sha256(img.pixels), "phash": phash64(img.pixels),
    }
    if img.frames > 1:
        out["frames"] = img.frames  # build notes it in the row's extra: only the first frame is used
    return out
