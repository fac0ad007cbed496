"""Hostile image files for tests and benchmarks/bench_hostile.py, made here rather than shipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid


def rle_dicom(path: Path, frames: int, side: int = 512) -> None:
    """A 12-bit RLE Lossless DICOM of ``frames`` identical frames (RLE as DICOM PS3.5 annex G; pydicom encodes it).

    Decoding every frame takes ``frames * side**2 * 2`` bytes; the file stays small (each row is one run).
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "DX", side, side, 1
    ds.PhotometricInterpretation, ds.PixelRepresentation = "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    frame = np.repeat((np.arange(side) * 4 % 4096).astype(np.uint16)[:, None], side, axis=1)
    ds.PixelData = frame.tobytes()
    ds.compress(RLELossless, frame)
    one = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData, ds.NumberOfFrames = encapsulate([one] * frames), frames
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
