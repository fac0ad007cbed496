"""Tests of ``cxrcurate.imageio`` on realistic generated files (Pillow, numpy, pydicom); no network.

What the decoder does, as pinned down here:
- every format comes out as a 2-D C-contiguous ``uint8`` array, with EXIF orientation applied;
- colour is converted with Pillow's ITU-R 601 luma (``convert("L")``); alpha (RGBA, LA, PA, and P/L/RGB with a
  tRNS colour) is composited onto black, so a fully transparent pixel is 0 whatever colour it stores;
- CMYK JPEGs go through Pillow's naive CMYK->RGB, which is exact for the CMYK Pillow itself writes; Pillow writes the
  Adobe APP14 marker and reads every CMYK JPEG as inverted CMYK (the Adobe/Photoshop convention), marker or not;
- 16-bit data are windowed linearly from the image's minimum to its maximum onto 0..255 (never clipped), except a
  16-bit container holding only 0..255, whose values are kept as they are (same pixels as the 8-bit file);
- DICOM: modality LUT (rescale), then VOI LUT or window, mapped from the VOI's own output range onto 0..255 (a value
  at the window centre is mid-gray even when nothing saturates); MONOCHROME1 is inverted; 8-bit data kept;
- broken input raises ``ImageDecodeError`` naming the file and saying what to do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from cxrcurate.errors import ImageDecodeError
from cxrcurate.imageio import (
    DecodedImage,
    decode_bytes,
    decode_image,
    fingerprint,
    is_image_name,
    phash64,
    pixel_sha256,
)

ORIGINALS_DIR = Path("/work/shared/data/originals")
ORIGINALS_CSV = Path("/work/shared/data/ORIGINALS.csv")
ADVICE = ("re-download", "check", "raise", "trust")


# ----------------------------------------------------------------------------------------------------- helpers


def _picture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth radiograph-like 8-bit picture: a tilted gradient, a few bright/dark ellipses, a little blur."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy /= h
    xx /= w
    angle = rng.uniform(0, 2 * np.pi)
    img = 110 + 70 * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))
    for _ in range(5):
        cy, cx = rng.uniform(0.15, 0.85, 2)
        ry, rx = rng.uniform(0.08, 0.3, 2)
        img += rng.uniform(-80, 90) * ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.array(Image.fromarray(img).filter(ImageFilter.GaussianBlur(1.2)))


def _rgb_picture(h: int = 96, w: int = 128, seed: int = 0) -> Image.Image:
    """A colour version of ``_picture``: the channels differ, so the luma weights matter."""
    g = _picture(h, w, seed).astype(np.int16)
    rgb = np.stack([g, np.clip(g * 0.8 + 30, 0, 255), np.clip(255 - g * 0.9, 0, 255)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def _luma(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("L"))


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, color_type: int, rows) -> bytes:
    """A valid PNG written by hand (filter 0 on every row), streamed so a huge declared size costs little memory."""
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(b"\0" + row) for row in rows) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _bomb_png(side: int) -> bytes:
    """A real 1-bit all-black PNG of side x side pixels (30000 -> ~110 kB on disk, 900 Mpx when decoded)."""
    row = bytes((side + 7) // 8)
    return _png(side, side, 1, 0, (row for _ in range(side)))


def _is_monotone(inp: np.ndarray, out: np.ndarray) -> bool:
    """True when ``out`` never decreases as ``inp`` increases (ordering preserved, ties allowed)."""
    order = np.argsort(inp.ravel(), kind="stable")
    return bool(np.all(np.diff(out.ravel()[order].astype(np.int64)) >= 0))


def _write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                 **attrs) -> Path:
    """Write a DICOM file (Explicit VR Little Endian, with preamble and file meta) holding ``pixels``.

    ``pixels`` is (rows, cols) or (frames, rows, cols) for MONOCHROME, (rows, cols, 3) uint8 for RGB.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = pixels.shape[:2]
    else:
        ds.SamplesPerPixel = 1
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = 8 * pixels.dtype.itemsize
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _check_2d_uint8(img: DecodedImage) -> None:
    assert isinstance(img, DecodedImage)
    assert img.pixels.dtype == np.uint8
    assert img.pixels.ndim == 2
    assert img.pixels.flags.c_contiguous


# ------------------------------------------------------------------------------------------------ 8-bit formats


def test_gray8_png_round_trips_exactly(tmp_path):
    src = _picture(37, 53, seed=1)
    img = decode_image(_save(Image.fromarray(src), tmp_path / "gray.png"))
    _check_2d_uint8(img)
    np.testing.assert_array_equal(img.pixels, src)
    assert (img.width, img.height, img.bit_depth, img.format) == (53, 37, 8, "PNG")


def test_decode_bytes_matches_decode_image(tmp_path):
    path = _save(Image.fromarray(_picture(seed=2)), tmp_path / "gray.png")
    np.testing.assert_array_equal(decode_bytes(path.read_bytes(), str(path)).pixels, decode_image(path).pixels)


def test_rgb_jpeg_is_luma_of_the_picture(tmp_path):
    rgb = _rgb_picture(seed=3)
    path = _save(rgb, tmp_path / "rgb.jpg", quality=95)
    img = decode_image(path)
    _check_2d_uint8(img)
    assert (img.width, img.height, img.bit_depth, img.format) == (128, 96, 8, "JPEG")
    np.testing.assert_array_equal(img.pixels, _luma(Image.open(path)))  # exactly Pillow's decode + luma
    diff = np.abs(img.pixels.astype(int) - _luma(rgb).astype(int))
    assert diff.mean() < 2 and diff.max() <= 16  # JPEG loss only


def test_progressive_jpeg(tmp_path):
    rgb = _rgb_picture(seed=4)
    path = _save(rgb, tmp_path / "prog.jpeg", quality=92, progressive=True)
    assert Image.open(path).info.get("progressive")
    img = decode_image(path)
    np.testing.assert_array_equal(img.pixels, _luma(Image.open(path)))
    assert np.abs(img.pixels.astype(int) - _luma(rgb).astype(int)).mean() < 2


def test_grayscale_jpeg_and_jfif_suffix(tmp_path):
    src = _picture(seed=5)
    path = _save(Image.fromarray(src), tmp_path / "gray.jfif", format="JPEG", quality=95)
    img = decode_image(path)
    assert img.format == "JPEG" and img.bit_depth == 8
    assert np.abs(img.pixels.astype(int) - src.astype(int)).mean() < 1.5


def test_cmyk_jpeg_is_close_to_rgb_luma(tmp_path):
    rgb = _rgb_picture(seed=6)
    cmyk = rgb.convert("CMYK")
    # Pillow's CMYK<->RGB is the naive one (C = 255 - R, K = 0), so CMYK->L equals RGB->L for its own CMYK.
    np.testing.assert_array_equal(_luma(cmyk), _luma(rgb))
    path = _save(cmyk, tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as reopened:
        assert reopened.mode == "CMYK"
        assert "adobe" in reopened.info  # Pillow writes the Adobe APP14 marker (inverted CMYK)
    img = decode_image(path)
    diff = np.abs(img.pixels.astype(int) - _luma(rgb).astype(int))
    assert diff.mean() < 3 and diff.max() <= 24


def test_cmyk_jpeg_without_adobe_marker_reads_the_same():
    """Pillow assumes the Adobe (inverted CMYK) convention for every CMYK JPEG, marker or not, so removing the
    APP14 segment changes nothing; a CMYK JPEG written by a tool using plain (non-inverted) CMYK would therefore
    decode as a negative. The Pillow writer, libjpeg and Photoshop all use the inverted convention."""
    rgb = _rgb_picture(seed=6)
    data = io.BytesIO()
    rgb.convert("CMYK").save(data, "JPEG", quality=95)
    raw = data.getvalue()
    start = raw.find(b"\xff\xee")  # APP14 "Adobe" segment
    assert start > 0 and raw[start + 4:start + 9] == b"Adobe"
    length = struct.unpack(">H", raw[start + 2:start + 4])[0]
    stripped = raw[:start] + raw[start + 2 + length:]
    assert b"Adobe" not in stripped
    np.testing.assert_array_equal(decode_bytes(stripped, "without.jpg").pixels, decode_bytes(raw, "with.jpg").pixels)


def test_rgba_png_composites_alpha_onto_black(tmp_path):
    rgb = np.asarray(_rgb_picture(40, 60, seed=7))
    alpha = np.full((40, 60), 255, np.uint8)
    alpha[:, 30:] = 0  # right half fully transparent, though its RGB is bright
    alpha[:5, :5] = 128
    rgba = np.dstack([rgb, alpha])
    rgba[:, 30:, :3] = 250
    img = decode_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    _check_2d_uint8(img)
    assert img.bit_depth == 8
    luma = _luma(Image.fromarray(rgb))
    assert np.all(img.pixels[:, 30:] == 0)  # transparent -> black, not the stored colour
    np.testing.assert_array_equal(img.pixels[5:, :30], luma[5:, :30])  # opaque -> plain luma
    half = img.pixels[:5, :5].astype(int)
    assert np.all(np.abs(half - luma[:5, :5].astype(int) * 128 / 255) <= 2)  # half transparent -> half as bright


def test_la_png_composites_alpha_onto_black(tmp_path):
    gray = _picture(30, 40, seed=8)
    alpha = np.full_like(gray, 255)
    alpha[20:, :] = 0
    img = decode_image(_save(Image.fromarray(np.dstack([gray, alpha]), "LA"), tmp_path / "la.png"))
    np.testing.assert_array_equal(img.pixels[:20], gray[:20])
    assert np.all(img.pixels[20:] == 0)


def _palette_image() -> Image.Image:
    im = Image.new("P", (40, 30))
    palette = [255, 255, 255, 200, 30, 30, 30, 200, 30, 90, 90, 90] + [0] * (256 * 3 - 12)
    im.putpalette(palette)
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, 39, 29), fill=1)
    draw.ellipse((5, 5, 25, 25), fill=2)
    draw.rectangle((30, 0, 39, 29), fill=0)  # white, transparent in the second test
    draw.line((0, 29, 39, 0), fill=3)
    return im


def test_palette_png_without_transparency(tmp_path):
    im = _palette_image()
    img = decode_image(_save(im, tmp_path / "p.png"))
    assert img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels, _luma(im.convert("RGB")))
    assert np.all(img.pixels[np.asarray(im) == 0] == 255)


def test_palette_png_with_transparency(tmp_path):
    im = _palette_image()
    path = _save(im, tmp_path / "pt.png", transparency=0)
    assert Image.open(path).info.get("transparency") == 0
    img = decode_image(path)
    luma = _luma(im.convert("RGB"))
    opaque = np.asarray(im) != 0
    np.testing.assert_array_equal(img.pixels[opaque], luma[opaque])
    assert np.all(img.pixels[~opaque] == 0)  # the white transparent entry composites to black


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_trns_colour_in_l_and_rgb_png_is_transparent(tmp_path, mode):
    gray = _picture(20, 30, seed=9)
    gray[gray == 77] = 78
    gray[:4, :4] = 77
    im = Image.fromarray(gray).convert(mode)
    path = _save(im, tmp_path / f"trns_{mode}.png", transparency=77 if mode == "L" else (77, 77, 77))
    img = decode_image(path)
    assert np.all(img.pixels[:4, :4] == 0)
    mask = np.ones_like(gray, bool)
    mask[:4, :4] = False
    np.testing.assert_array_equal(img.pixels[mask], gray[mask])


def test_one_bit_png(tmp_path):
    bits = _picture(33, 47, seed=10) > 110
    im = Image.fromarray(bits)
    assert im.mode == "1"
    img = decode_image(_save(im, tmp_path / "bits.png"))
    assert set(np.unique(img.pixels)) <= {0, 255}
    np.testing.assert_array_equal(img.pixels, np.where(bits, 255, 0))


def test_webp_lossless_is_exact(tmp_path):
    rgb = _rgb_picture(seed=11)
    img = decode_image(_save(rgb, tmp_path / "pic.webp", lossless=True))
    assert img.format == "WEBP" and img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels, _luma(rgb))
    gray = _picture(seed=12)
    np.testing.assert_array_equal(decode_image(_save(Image.fromarray(gray), tmp_path / "g.webp", lossless=True)).pixels,
                                  gray)


def test_webp_lossy_is_close(tmp_path):
    gray = _picture(seed=13)
    img = decode_image(_save(Image.fromarray(gray), tmp_path / "lossy.webp", quality=90))
    assert np.abs(img.pixels.astype(int) - gray.astype(int)).mean() < 2


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".gif"])
def test_other_8bit_containers_are_exact(tmp_path, suffix):
    gray = _picture(seed=14)
    img = decode_image(_save(Image.fromarray(gray), tmp_path / f"g{suffix}"))
    np.testing.assert_array_equal(img.pixels, gray)
    assert img.bit_depth == 8


def test_exif_orientation_is_applied(tmp_path):
    src = _picture(40, 80, seed=15)  # landscape, 80 wide
    src[:10, :10] = 255  # a bright top-left corner marker
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(Image.fromarray(src), tmp_path / "rot.jpg", quality=95, exif=exif)
    img = decode_image(path)
    assert (img.width, img.height) == (40, 80)  # portrait after the rotation
    expected = np.rot90(src, k=-1)  # 90 degrees clockwise
    assert np.abs(img.pixels.astype(int) - expected.astype(int)).mean() < 2
    assert img.pixels[:10, -10:].mean() > 240  # the marker moved to the top-right corner
    np.testing.assert_array_equal(img.pixels, _luma(ImageOps.exif_transpose(Image.open(path))))


# ----------------------------------------------------------------------------------------------- 16-bit formats


def _gradient16(h: int = 48, w: int = 64, low: int = 1000, high: int = 40000) -> np.ndarray:
    """A 16-bit gradient from ``low`` to ``high`` with a brighter disc, every value distinct-ish."""
    arr = np.linspace(low, high - 5000, h * w).reshape(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    arr[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 4) ** 2] += 5000
    arr.flat[-1] = high
    return np.rint(arr).astype(np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_is_windowed_min_to_max_not_clipped(tmp_path, suffix):
    arr = _gradient16()
    im = Image.fromarray(arr)
    assert im.mode == "I;16"
    img = decode_image(_save(im, tmp_path / f"g16{suffix}"))
    _check_2d_uint8(img)
    assert img.bit_depth == 16
    assert img.pixels.min() == 0 and img.pixels.max() == 255
    assert _is_monotone(arr, img.pixels)
    assert (img.pixels == 255).mean() < 0.01  # not clipped: values > 255 are not all 255
    assert len(np.unique(img.pixels)) > 200
    expected = np.rint((arr.astype(float) - 1000) * 255 / 39000)
    assert np.abs(img.pixels - expected).max() <= 1


def test_16bit_png_holding_8bit_values_keeps_them(tmp_path):
    """A 16-bit container with values in 0..255 decodes to those very values (as the 8-bit file would), not
    stretched min..max; bit_depth still says 16, what the file stores."""
    gray = _picture(seed=16)
    path = _save(Image.fromarray(gray.astype(np.uint16)), tmp_path / "g16_8.png")
    assert Image.open(path).mode == "I;16"
    img = decode_image(path)
    assert img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels, gray)
    eight = decode_image(_save(Image.fromarray(gray), tmp_path / "g8.png"))
    assert pixel_sha256(img.pixels) == pixel_sha256(eight.pixels)


def test_16bit_png_just_above_255_is_windowed(tmp_path):
    arr = (_picture(seed=17).astype(np.uint16) + 100)  # 100..355: not 8-bit values any more
    img = decode_image(_save(Image.fromarray(arr), tmp_path / "g16_300.png"))
    assert img.bit_depth == 16 and img.pixels.min() == 0 and img.pixels.max() == 255
    assert _is_monotone(arr, img.pixels)


def test_16bit_constant_png_is_black_not_an_error(tmp_path):
    arr = np.full((10, 12), 30000, np.uint16)
    img = decode_image(_save(Image.fromarray(arr), tmp_path / "flat16.png"))
    assert img.bit_depth == 16 and img.pixels.shape == (10, 12) and np.all(img.pixels == 0)


def test_16bit_rgb_png_is_not_clipped(tmp_path):
    """Pillow has no 16-bit RGB mode and keeps each sample's high byte; the output is still ordered and unclipped
    (bit_depth reads 8 for such files: Pillow does not say the file held 16 bits)."""
    arr = _gradient16(16, 24)
    rows = (np.repeat(r, 3).astype(">u2").tobytes() for r in arr)
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png(24, 16, 16, 2, rows))
    img = decode_image(path)
    assert img.pixels.shape == (16, 24)
    assert _is_monotone(arr, img.pixels)
    assert img.pixels.max() < 255 and img.pixels.max() - img.pixels.min() > 100


# ------------------------------------------------------------------------------------------------------- DICOM


def _dicom_ramp(h: int = 32, w: int = 64) -> np.ndarray:
    return np.rint(np.linspace(0, 4095, h * w)).astype(np.uint16).reshape(h, w)


def test_dicom_monochrome1_is_the_inverse_of_monochrome2(tmp_path):
    raw = _dicom_ramp()
    m2 = decode_image(_write_dicom(tmp_path / "m2.dcm", raw, "MONOCHROME2", bits_stored=12))
    m1 = decode_image(_write_dicom(tmp_path / "m1.dcm", raw, "MONOCHROME1", bits_stored=12))
    for img in (m1, m2):
        _check_2d_uint8(img)
        assert (img.width, img.height, img.bit_depth, img.format) == (64, 32, 12, "DICOM")
    np.testing.assert_array_equal(m2.pixels.astype(int) + m1.pixels, 255)
    assert m2.pixels.min() == 0 and m2.pixels.max() == 255
    assert _is_monotone(raw, m2.pixels)
    assert _is_monotone(-raw.astype(int), m1.pixels)


def test_dicom_is_recognised_by_its_magic_not_its_name(tmp_path):
    raw = _dicom_ramp()
    named = decode_image(_write_dicom(tmp_path / "a.dcm", raw, bits_stored=12))
    unnamed = decode_image(_write_dicom(tmp_path / "IM0001", raw, bits_stored=12))
    assert unnamed.format == "DICOM"
    np.testing.assert_array_equal(named.pixels, unnamed.pixels)


def test_dicom_rescale_then_window(tmp_path):
    raw = _dicom_ramp()
    path = _write_dicom(tmp_path / "ct.dcm", raw, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024,
                        WindowCenter=0, WindowWidth=1000)
    img = decode_image(path)
    value = raw.astype(float) * 2 - 1024  # the window is in rescaled units
    assert np.all(img.pixels[value <= -500] == 0)  # below the window saturates black
    assert np.all(img.pixels[value > 500] == 255)  # above saturates white
    inside = (value > -490) & (value < 490)
    expected = np.clip(((value - -0.5) / 999 + 0.5) * 255, 0, 255)  # DICOM LINEAR: centre - 0.5, width - 1
    assert np.abs(img.pixels[inside] - expected[inside]).max() <= 1
    assert _is_monotone(raw, img.pixels)
    # ignoring the rescale would put the window at raw 0 +- 500, i.e. most of this ramp white
    assert (img.pixels == 255).mean() < 0.85


def test_dicom_window_is_applied_even_when_nothing_saturates(tmp_path):
    raw = np.rint(np.linspace(1800, 2300, 32 * 64)).astype(np.uint16).reshape(32, 64)
    img = decode_image(_write_dicom(tmp_path / "win.dcm", raw, bits_stored=12, WindowCenter=2048, WindowWidth=1024))
    expected = ((raw.astype(float) - 2047.5) / 1023 + 0.5) * 255
    assert np.abs(img.pixels - expected).max() <= 1  # not stretched to 0..255
    assert 60 < img.pixels.min() < 80 and 185 < img.pixels.max() < 200


def test_dicom_window_saturates_and_monochrome1_inverts_after_it(tmp_path):
    raw = _dicom_ramp()
    kw = {"bits_stored": 12, "WindowCenter": 1500, "WindowWidth": 600}
    m2 = decode_image(_write_dicom(tmp_path / "w2.dcm", raw, "MONOCHROME2", **kw)).pixels
    m1 = decode_image(_write_dicom(tmp_path / "w1.dcm", raw, "MONOCHROME1", **kw)).pixels
    assert np.all(m2[raw <= 1200] == 0) and np.all(m2[raw > 1800] == 255)
    np.testing.assert_array_equal(m2.astype(int) + m1, 255)


def test_dicom_voi_lut_sequence(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    raw = _dicom_ramp()
    lut = np.rint(np.sqrt(np.arange(4096) / 4095) * 1000).astype(np.uint16)  # declares 16 bits, uses 0..1000
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    img = decode_image(_write_dicom(tmp_path / "lut.dcm", raw, bits_stored=12, VOILUTSequence=Sequence([item])))
    expected = lut[raw].astype(float) * 255 / 1000  # the LUT's own output range is mapped onto 0..255
    assert np.abs(img.pixels - expected).max() <= 1


def test_dicom_8bit_keeps_its_values(tmp_path):
    gray = _picture(seed=18)
    img = decode_image(_write_dicom(tmp_path / "sc8.dcm", gray))
    assert img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels, gray)
    png = decode_image(_save(Image.fromarray(gray), tmp_path / "sc8.png"))
    assert pixel_sha256(img.pixels) == pixel_sha256(png.pixels)


def test_dicom_rgb_with_a_window_decodes(tmp_path):
    """Colour secondary captures sometimes carry WindowCenter/Width; pydicom refuses windowing colour data."""
    rgb = np.asarray(_rgb_picture(20, 30, seed=19))
    img = decode_image(_write_dicom(tmp_path / "rgb.dcm", rgb, "RGB", WindowCenter=128, WindowWidth=256))
    _check_2d_uint8(img)
    assert img.pixels.shape == (20, 30)
    assert np.corrcoef(img.pixels.ravel(), rgb.mean(axis=-1).ravel())[0, 1] > 0.99


def test_dicom_multiframe_uses_the_first_frame(tmp_path):
    frames = np.stack([_dicom_ramp(), 4095 - _dicom_ramp()])
    img = decode_image(_write_dicom(tmp_path / "mf.dcm", frames, bits_stored=12))
    assert img.pixels.shape == (32, 64)
    assert img.pixels[0, 0] == 0 and img.pixels[-1, -1] == 255
    assert img.frames == 2  # so the build notes it in the row's extra (only the first frame is described)
    assert fingerprint(tmp_path / "mf.dcm")["frames"] == 2


# ------------------------------------------------------------------------------------------------------ errors


def _truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _make_broken(kind: str, tmp_path: Path) -> tuple[Path, dict]:
    """A broken file of the given kind and the keyword arguments to decode it with."""
    if kind == "truncated-jpeg":
        return _truncated(_save(_rgb_picture(seed=20), tmp_path / "full.jpg", quality=95), tmp_path / "cut.jpg"), {}
    if kind == "truncated-png":
        return _truncated(_save(Image.fromarray(_picture(seed=21)), tmp_path / "full.png"), tmp_path / "cut.png"), {}
    if kind == "truncated-webp":
        return _truncated(_save(_rgb_picture(seed=22), tmp_path / "full.webp"), tmp_path / "cut.webp"), {}
    if kind == "truncated-dicom":
        full = _write_dicom(tmp_path / "full.dcm", _dicom_ramp(), bits_stored=12)
        return _truncated(full, tmp_path / "cut.dcm"), {}
    if kind == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        return tmp_path / "empty.png", {}
    if kind == "html-jpg":
        page = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"
        (tmp_path / "page.jpg").write_bytes(page)
        return tmp_path / "page.jpg", {}
    if kind == "html-dcm":
        (tmp_path / "page.dcm").write_bytes(b"<html><body>Access denied</body></html>")
        return tmp_path / "page.dcm", {}
    if kind == "random-bytes":
        (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
        return tmp_path / "noise.png", {}
    if kind == "bomb-30000":  # a real, valid PNG: Pillow's own hard limit refuses it before decoding
        (tmp_path / "bomb.png").write_bytes(_bomb_png(30000))
        return tmp_path / "bomb.png", {}
    if kind == "bomb-12000":  # over max_pixels (100 Mpx) but under Pillow's hard limit: max_pixels refuses it
        (tmp_path / "bomb12k.png").write_bytes(_bomb_png(12000))
        return tmp_path / "bomb12k.png", {}
    if kind == "header-only-bomb":  # IHDR claims 50000 x 50000, no data at all
        ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
        (tmp_path / "hdr.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
        return tmp_path / "hdr.png", {}
    if kind == "small-max-pixels":
        return _save(Image.fromarray(_picture(seed=23)), tmp_path / "ok.png"), {"max_pixels": 5000}
    if kind == "dicom-small-max-pixels":
        return _write_dicom(tmp_path / "big.dcm", _dicom_ramp(), bits_stored=12), {"max_pixels": 1000}
    if kind == "missing":
        return tmp_path / "no" / "such.png", {}
    if kind == "directory":
        (tmp_path / "dir.png").mkdir()
        return tmp_path / "dir.png", {}
    raise AssertionError(kind)


BROKEN = ["truncated-jpeg", "truncated-png", "truncated-webp", "truncated-dicom", "empty", "html-jpg", "html-dcm",
          "random-bytes", "bomb-30000", "bomb-12000", "header-only-bomb", "small-max-pixels",
          "dicom-small-max-pixels", "missing", "directory"]


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_files_raise_image_decode_error_naming_the_file(tmp_path, kind):
    path, kw = _make_broken(kind, tmp_path)
    if path.is_file():
        assert path.stat().st_size < 1_000_000  # no huge test files
    for call in (decode_image, fingerprint):
        with pytest.raises(ImageDecodeError) as info:
            call(path, **kw)
        message = str(info.value)
        assert str(path) in message
        advice = message.replace(str(path), "")  # the tmp path itself may contain an advice word
        assert any(word in advice for word in ADVICE), message


def test_bomb_message_says_why(tmp_path):
    path, _ = _make_broken("bomb-12000", tmp_path)
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 100000000"):
        decode_image(path)
    path, _ = _make_broken("bomb-30000", tmp_path)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(path)


def test_max_pixels_governs_below_pillows_hard_limit(tmp_path, monkeypatch):
    """Pillow warns past MAX_IMAGE_PIXELS (~89 Mpx) and refuses past twice that; max_pixels (100 Mpx by default)
    must decide in between, or a 10k x 10k radiograph would be refused. Scaled down via MAX_IMAGE_PIXELS."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    ok = _save(Image.fromarray(_picture(30, 40, seed=24)), tmp_path / "1200px.png")  # 1.2x Pillow's limit
    assert decode_image(ok).pixels.shape == (30, 40)
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        decode_image(ok, max_pixels=1199)
    hard = _save(Image.fromarray(_picture(50, 50, seed=24)), tmp_path / "2500px.png")  # over 2x: Pillow refuses
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(hard)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the half-read UIDs of a cut DICOM
def test_errors_are_image_decode_errors_for_every_prefix(tmp_path):
    """Cutting a file anywhere gives ImageDecodeError (or, for a cut in the trailer only, a full decode): never an
    unrelated exception type such as struct.error or zlib.error."""
    files = {
        "a.png": _save(Image.fromarray(_picture(24, 32, seed=25)), tmp_path / "a.png"),
        "a.jpg": _save(_rgb_picture(24, 32, seed=25), tmp_path / "a.jpg", quality=90),
        "a.webp": _save(_rgb_picture(24, 32, seed=25), tmp_path / "a.webp"),
        "a.gif": _save(Image.fromarray(_picture(24, 32, seed=25)), tmp_path / "a.gif"),
        "a.dcm": _write_dicom(tmp_path / "a.dcm", _dicom_ramp(8, 8), bits_stored=12),
    }
    for name, path in files.items():
        data = path.read_bytes()
        full = decode_bytes(data, name).pixels
        for cut in sorted(set(range(0, len(data), max(1, len(data) // 150))) | {len(data) - 1}):
            try:
                img = decode_bytes(data[:cut], name)
            except ImageDecodeError as exc:
                assert name in str(exc)
            else:
                assert cut > len(data) // 2, (name, cut)  # only a nearly complete file may decode
                assert img.pixels.shape == full.shape


# ----------------------------------------------------------------------------------------- hashes and fingerprint


def test_pixel_sha256_same_picture_in_two_containers(tmp_path):
    gray = _picture(seed=26)
    png = _save(Image.fromarray(gray), tmp_path / "same.png")
    webp = _save(Image.fromarray(gray), tmp_path / "same.webp", lossless=True)
    fp_png, fp_webp = fingerprint(png), fingerprint(webp)
    assert fp_png["pixel_sha256"] == fp_webp["pixel_sha256"]
    assert fp_png["file_sha256"] != fp_webp["file_sha256"]
    assert fp_png["file_sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
    assert fp_png["phash"] == fp_webp["phash"]
    assert {k: fp_png[k] for k in ("width", "height", "bit_depth")} == {"width": 128, "height": 96, "bit_depth": 8}
    assert set(fp_png) == {"width", "height", "bit_depth", "file_sha256", "pixel_sha256", "phash"}


def test_pixel_sha256_depends_on_shape_and_every_pixel():
    a = np.arange(24, dtype=np.uint8).reshape(4, 6)
    h = pixel_sha256(a)
    assert len(h) == 64 and int(h, 16) >= 0
    assert pixel_sha256(a.reshape(6, 4)) != h  # same bytes, different shape
    assert pixel_sha256(a.reshape(3, 8)) != h
    b = a.copy()
    b[3, 5] += 1
    assert pixel_sha256(b) != h
    flipped = a[:, ::-1]  # a non-contiguous view hashes like its contiguous copy
    assert pixel_sha256(flipped) == pixel_sha256(np.ascontiguousarray(flipped))


def _hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_phash64_matches_imagehash_bit_order():
    """phash64 packs imagehash's 8x8 boolean hash row by row, first bit most significant: the same number as
    imagehash's hex string."""
    import imagehash

    for seed in range(5):
        gray = _picture(seed=seed)
        value = phash64(gray)
        assert isinstance(value, int) and 0 <= value < 2**64
        reference = imagehash.phash(Image.fromarray(gray))
        assert value == int(str(reference), 16)
        bits = reference.hash.flatten()
        assert all(((value >> (63 - i)) & 1) == int(bit) for i, bit in enumerate(bits))


def test_phash64_is_robust_to_reencoding_and_resizing(tmp_path):
    gray = _picture(192, 256, seed=27)
    original = phash64(decode_image(_save(Image.fromarray(gray), tmp_path / "o.png")).pixels)
    jpeg = decode_image(_save(Image.fromarray(gray), tmp_path / "o.jpg", quality=90)).pixels
    half = Image.fromarray(gray).resize((128, 96), Image.Resampling.LANCZOS)
    small = decode_image(_save(half, tmp_path / "half.jpg", quality=90)).pixels
    assert _hamming(original, phash64(jpeg)) <= 4
    assert _hamming(original, phash64(small)) <= 4


def test_phash64_separates_different_pictures():
    hashes = [phash64(_picture(192, 256, seed=seed)) for seed in (30, 31, 32, 33)]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert _hamming(hashes[i], hashes[j]) > 10, (i, j)


def test_is_image_name():
    for name in ("a.jpg", "a.JPG", "b.jpeg", "c.jfif", "d.png", "e.PNG", "f.webp", "g.dcm", "h.tif", "i.tiff"):
        assert is_image_name(name), name
        assert is_image_name(Path("dir") / name)
    for name in ("metadata.csv", "README.md", "noext", "a.jpg.txt", "png"):
        assert not is_image_name(name), name


# ------------------------------------------------------------------------------------------ real files, if here


def _originals() -> list[Path]:
    if not ORIGINALS_DIR.is_dir():
        return []
    return sorted(p for p in ORIGINALS_DIR.rglob("*") if p.is_file() and is_image_name(p))


def _recorded_sizes() -> dict[str, tuple[int, int]]:
    """original_sha256 -> (width, height) from ORIGINALS.csv, when it is there."""
    if not ORIGINALS_CSV.is_file():
        return {}
    with ORIGINALS_CSV.open(newline="") as fh:
        return {r["original_sha256"]: (int(r["original_width"]), int(r["original_height"])) for r in csv.DictReader(fh)}


@pytest.mark.parametrize("path", _originals() or [None], ids=lambda p: p.name if p else "absent")
def test_real_original_files_decode(path):
    if path is None:
        pytest.skip(f"{ORIGINALS_DIR} is absent: the real original files are only on development machines")
    img = decode_image(path)
    _check_2d_uint8(img)
    with Image.open(path) as im:
        raw_size = im.size
        assert img.format == im.format  # by content: some '.jpg' files there are PNGs
        shown = ImageOps.exif_transpose(im)
        assert (img.width, img.height) == shown.size
        if shown.mode not in {"RGBA", "LA", "PA", "P"}:
            np.testing.assert_array_equal(img.pixels, _luma(shown))
    recorded = _recorded_sizes().get(hashlib.sha256(path.read_bytes()).hexdigest())
    if recorded is not None:
        assert recorded == raw_size
