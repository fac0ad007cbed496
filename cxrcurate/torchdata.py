"""A PyTorch ``Dataset`` over a manifest: yields ``(image, label, record)``. Imports torch when used."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from .errors import CxrcurateError
from .labels import LABELS


def select_rows(df: Any, classes: Sequence[str], split: str | None = None, keep_only: bool = False) -> Any:
    """The rows of a manifest DataFrame with a label in ``classes`` (and the split, and kept copies only, if asked).

    Raises:
        CxrcurateError: an unknown class, or no row is left.
    """
    bad = [c for c in classes if c not in LABELS]
    if bad:
        raise CxrcurateError(f"unknown class(es) {bad}; labels are {list(LABELS)}")
    df = df[df["label"].isin(classes)]
    if split is not None:
        df = df[df["split"] == split]
    if keep_only:
        df = df[df["keep"].fillna(True).astype(bool)]
    if df.empty:
        raise CxrcurateError(f"no rows with labels {list(classes)}" + (f" in split {split!r}" if split else ""))
    return df


class ManifestDataset:
    """Images of a manifest as float tensors ``(1, H, W)`` in ``[0, 1]``, decoded with ``imageio.decode_image``.

    Args:
        manifest: a manifest path or DataFrame.
        data_root: folder the paths are relative to (default: recorded in the manifest).
        classes: labels to keep, in class-index order (default: normal, covid19, pneumonia).
        split: keep only this split (``train``/``val``/``test``).
        transform: applied to the tensor image.
        keep_only: keep only ``keep == True`` rows when dedup has run.

    Raises:
        CxrcurateError: no rows are left, or the data root is missing.
    """

    def __init__(self, manifest: Any, data_root: str | os.PathLike | None = None,
                 classes: Sequence[str] = ("normal", "covid19", "pneumonia"), split: str | None = None,
                 transform: Callable | None = None, keep_only: bool = False) -> None:
        from .hf import _frame, resolve_data_root

        df = _frame(manifest)
        self.root = resolve_data_root(df, data_root)
        df = select_rows(df, classes, split, keep_only)
        self.frame = df.reset_index(drop=True)
        self.classes = tuple(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> tuple[Any, int, dict]:
        import torch

        from .imageio import decode_image

        rec = self.frame.iloc[index].to_dict()
        pixels = decode_image(self.root / rec["path"]).pixels
        image = torch.from_numpy(pixels.copy()).unsqueeze(0).float().div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.classes.index(rec["label"]), rec

    @staticmethod
    def collate(batch: list[tuple[Any, int, dict]]) -> tuple[Any, Any, list[dict]]:
        """``DataLoader`` collate: stacked images (give a resizing ``transform``), label tensor, record list."""
        import torch

        images, labels, records = zip(*batch, strict=True)
        return torch.stack(images), torch.tensor(labels), list(records)
