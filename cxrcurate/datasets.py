"""The one dataset family: a PyTorch ``ManifestDataset`` (what ``cxrcurate bench`` itself trains on) and the
Hugging Face export ``to_hf_dataset``, both selecting rows the same way (``manifest.select_rows``).

``import cxrcurate.datasets`` stays light: torch and ``datasets`` are imported when an item is read or an export
is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CxrcurateError
from .imageio import decode_image
from .labels import LABELS
from .manifest import load_frame, resolve_data_root, row_paths, select_rows
from .preprocess.cache import cache_folder, entry_path

DEFAULT_CLASSES = ("normal", "covid19", "pneumonia")
DEFAULT_SIZE = 224  # side of a plain (not preprocessed) item, so a default DataLoader can batch them


class ManifestDataset:
    """Manifest rows as float tensors ``(C, H, W)``: ``(image, target, image_id)`` per item.

    The defaults are the honest ones: one copy per picture (``keep_only=True``: the extra copies dedup found are
    left out) and items of one size, so ``torch.utils.data.DataLoader(ds, batch_size=16)`` batches them.

    Without ``preprocess`` an item is the decoded 8-bit grayscale image in ``[0, 1]``, resized to
    ``(1, size, size)`` (aspect ratio not kept; ``size=None`` keeps each image's own ``(1, H, W)``). With a
    ``PreprocessConfig`` it is the rendered model input ``(C, size, size)`` (lung crop, histogram match,
    original/CLAHE/BEASF channels, as ``cxrcurate show`` draws it), read from the tensor cache when ``cache``
    holds an entry for the row's pixels (``cxrcurate preprocess``) and rendered on the fly otherwise. Then, in
    this order: ``augment(image, index)`` (seeded per sample, e.g. ``preprocess.augment.PaperAugment``),
    ``normalize=(mean, std)`` per channel, ``transform(image)``.

    Args:
        manifest: a manifest path or DataFrame.
        data_root: folder the paths are relative to (default: the manifest file's own folder; not needed when every
            row is served from the cache with ``require_cache``).
        classes: labels to keep, in class-index order (the target is the index of the row's label).
        split: keep only this split (``train``/``val``/``test``).
        keep_only: keep only ``keep == True`` rows, one per duplicate group (default); False serves every copy.
        size: side of a plain decoded item (default 224; None: native size, which a DataLoader cannot stack);
            ignored with ``preprocess``, whose ``size`` rules.
        preprocess: the ``PreprocessConfig`` of the model input, or None for the plain decoded image.
        cache: a tensor cache folder (``build_cache``) for ``preprocess``.
        require_cache: raise when a row has no cache entry instead of rendering it.
        mmap: memory-map cache entries instead of reading them.
        augment, normalize, transform: see above.

    Raises:
        CxrcurateError: unknown classes, no rows left, the data root is missing, or (``require_cache``) entries
            are missing from the cache.
        UnsafeManifestPath: a row names a file outside the data root (nothing is opened then).
    """

    def __init__(self, manifest: Any, data_root: str | os.PathLike | None = None,
                 classes: Sequence[str] = DEFAULT_CLASSES, split: str | None = None, keep_only: bool = True, *,
                 size: int | None = DEFAULT_SIZE, preprocess: Any = None, cache: str | os.PathLike | None = None,
                 require_cache: bool = False,
                 mmap: bool = False, augment: Callable | None = None,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                 transform: Callable | None = None) -> None:
        df = load_frame(manifest)
        rows = select_rows(df, classes, split, keep_only)
        try:
            root: Path | None = resolve_data_root(df, data_root)
        except CxrcurateError:
            if not require_cache:
                raise
            root = None
        targets = np.array([list(classes).index(lab) for lab in rows["label"]], dtype=int)
        where = manifest if isinstance(manifest, str | os.PathLike) else "MANIFEST"
        if size is not None and size < 1:
            raise CxrcurateError(f"size={size}: give a positive side in pixels, or None for each image's own size")
        self._setup(rows, root, classes, targets, preprocess, cache, require_cache, mmap, augment, normalize,
                    transform, where)
        self.size = size

    @classmethod
    def from_rows(cls, rows: Any, root: str | os.PathLike | None, classes: Sequence[str],
                  targets: Sequence[int] | None = None, **options: Any) -> ManifestDataset:
        """A dataset over rows already selected (the bench's task rows), targets from ``targets`` or the rows'
        ``target`` column; ``options`` are the constructor's keyword options (``size`` defaults to None here: the
        bench passes ``preprocess``)."""
        self = cls.__new__(cls)
        t = np.asarray(rows["target"] if targets is None else targets, dtype=int)
        self._setup(rows, Path(root) if root is not None else None, classes, t, options.pop("preprocess", None),
                    options.pop("cache", None), options.pop("require_cache", False), options.pop("mmap", False),
                    options.pop("augment", None), options.pop("normalize", None), options.pop("transform", None),
                    "MANIFEST")
        self.size = options.pop("size", None)
        if options:
            raise TypeError(f"unknown option(s) {sorted(options)}")
        return self

    def _setup(self, rows: Any, root: Path | None, classes: Sequence[str], targets: np.ndarray, preprocess: Any,
               cache: Any, require_cache: bool, mmap: bool, augment: Callable | None,
               normalize: tuple[Sequence[float], Sequence[float]] | None, transform: Callable | None,
               where: str) -> None:
        self.frame = rows.reset_index(drop=True)
        self.root = root
        self.classes = tuple(classes)
        self.targets = targets
        self.image_ids = list(self.frame["image_id"])
        self.paths = row_paths(self.frame, root) if root is not None else [None] * len(self.frame)
        self.preprocess, self.augment, self.transform, self.mmap = preprocess, augment, transform, mmap
        self.mean = self.std = None
        if normalize is not None:
            self.mean = np.array(normalize[0], np.float32)[:, None, None]
            self.std = np.array(normalize[1], np.float32)[:, None, None]
        self.cache_folder: Path | None = None
        self.cached: list[Path | None] = [None] * len(self.frame)
        if cache is not None:
            if preprocess is None:
                raise CxrcurateError("a tensor cache holds preprocessed inputs: pass preprocess= (the "
                                     "PreprocessConfig the cache was built with) together with cache=")
            self.cache_folder = cache_folder(cache, preprocess)
            self.cached = [e if (e := entry_path(self.cache_folder, sha, iid)).exists() else None
                           for sha, iid in zip(self.frame["pixel_sha256"], self.image_ids, strict=True)]
        missing = [iid for iid, e in zip(self.image_ids, self.cached, strict=True) if e is None]
        if require_cache and missing:
            size = getattr(preprocess, "size", "SIZE")
            raise CxrcurateError(f"{len(missing)} of {len(self.frame)} image(s) are not in the cache "
                                 f"{self.cache_folder} (e.g. {missing[0]}); run `cxrcurate preprocess {where} "
                                 f"--cache {cache} --size {size}` with the same options first")
        if missing and root is None:
            raise CxrcurateError("no data root: pass data_root= (the folder manifest paths are relative to)")
        self._pre: Any = None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers build their own preprocessor (lung model)
        state = dict(self.__dict__)
        state["_pre"] = None
        return state

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labels(self) -> list[int]:
        """Class index per item (as ``targets``)."""
        return self.targets.tolist()

    def record(self, index: int) -> dict[str, Any]:
        """The manifest row of item ``index``."""
        return self.frame.iloc[index].to_dict()

    def pixels(self, index: int) -> np.ndarray:
        """Item ``index`` before augmentation: ``(C, H, W)`` uint8 (cache entry, rendered input or decoded image)."""
        entry = self.cached[index]
        if entry is not None:
            array = np.load(entry, mmap_mode="r" if self.mmap else None)
            return np.array(array, copy=True) if self.mmap else array
        pixels = decode_image(self.paths[index]).pixels
        if self.preprocess is None:
            if self.size is not None:
                # cv2: loaded only when an item is resized
                from .preprocess.enhance import resize

                pixels = resize(pixels, (self.size, self.size))
            return pixels[None]
        if self._pre is None:
            # cv2: loaded only when an item is preprocessed
            from .preprocess.pipeline import Preprocessor

            self._pre = Preprocessor(self.preprocess)
        return self._pre(pixels)[0]

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        import torch

        array = np.ascontiguousarray(self.pixels(index))
        if not array.flags.writeable:
            array = array.copy()
        x = torch.from_numpy(array).float().div_(255.0)
        if self.augment is not None:
            x = self.augment(x, index)
        if self.mean is not None:
            x = torch.from_numpy((x.numpy() - self.mean) / self.std)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[index]), self.image_ids[index]

    @staticmethod
    def collate(batch: list[tuple[Any, int, str]]) -> tuple[Any, Any, list[str]]:
        """``DataLoader`` collate: stacked images (of one size, as the default ``size`` or ``preprocess`` gives),
        target tensor, image ids (the default collate gives the same, ids as a list)."""
        import torch

        images, targets, ids = zip(*batch, strict=True)
        return torch.stack(images), torch.tensor(targets), list(ids)


def to_hf_dataset(manifest: Any, data_root: str | os.PathLike | None = None, keep_only: bool = True,
                  classes: Sequence[str] | None = None, split: str | None = None) -> Any:
    """The manifest as a Hugging Face ``datasets.DatasetDict`` by the manifest's split, images decoded lazily.

    Every manifest column plus ``image`` (``datasets.Image``); ``label`` is a ``ClassLabel`` (names: ``classes``,
    else the whole label vocabulary, so ids are the same for every manifest). The keys are the manifest's splits
    (``train``/``val``/``test``); a manifest without a split gives one key, ``all``, and a warning: HF's
    ``train_test_split`` draws images, not patients, and puts one patient's images and copies of one picture on
    both sides (run ``cxrcurate split`` first). Each dataset's ``info.description`` holds the manifest's provenance
    (its ``cxrcurate`` metadata, JSON); ``info.license`` the licenses of its rows. The rows are those
    ``ManifestDataset`` serves (``manifest.select_rows``).

    Args:
        manifest: a manifest path or DataFrame (from ``read_manifest``): a release's ``open.parquet`` or a table you
            bring with the required columns are read too.
        data_root: folder the manifest's paths are relative to (default: the manifest file's own folder).
        keep_only: keep only ``keep == True`` rows, one per duplicate group (default); False exports every copy.
        classes: keep only rows with these labels, in ``ClassLabel`` order (default: every row).
        split: one split only: returns that ``datasets.Dataset`` instead of a ``DatasetDict``.

    Raises:
        CxrcurateError: the data root is unknown or missing, an image file is missing, or no row is selected.
    """
    import json
    import warnings

    import datasets

    frame = load_frame(manifest)
    root = resolve_data_root(frame, data_root)
    df = select_rows(frame, classes, split, keep_only)
    paths = [str(p) for p in row_paths(df, root)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise CxrcurateError(f"{len(missing)} image file(s) missing under {root}, e.g. {missing[0]}")
    odd = [p for p in paths if not os.path.isfile(p)]  # a FIFO or device would block whoever reads the export
    if odd:
        raise CxrcurateError(f"{len(odd)} path(s) under {root} are not regular files (a FIFO, device or folder), "
                             f"e.g. {odd[0]}; put the image files themselves there")
    names = list(classes) if classes is not None else list(LABELS)
    df = df.reset_index(drop=True).copy()
    if df["phash"].notna().all():  # a release table (or your own) may leave it null: kept as nullable then
        df["phash"] = df["phash"].astype("uint64")
    df["image"] = paths
    df["label"] = df["label"].map({name: i for i, name in enumerate(names)}).astype("int64")
    provenance = frame.attrs.get("cxrcurate", {})
    info = datasets.DatasetInfo(
        description="cxrcurate manifest; provenance (JSON): " + json.dumps(provenance, sort_keys=True, default=str),
        license="; ".join(sorted({str(x) for x in df["license"].dropna()})) or None)
    whole = datasets.Dataset.from_pandas(df, info=info, preserve_index=False)
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a cast of a few thousand rows in memory: no bar worth showing
    try:
        whole = whole.cast_column("label", datasets.ClassLabel(names=names)).cast_column("image", datasets.Image())
    finally:
        if shown:
            datasets.enable_progress_bars()

    def part(rows: Any) -> Any:
        return whole.select(np.flatnonzero(rows.to_numpy()))

    if split is not None:
        return whole
    sides = [s for s in ("train", "val", "test") if (df["split"] == s).any()] if "split" in df else []
    if not sides:
        warnings.warn("this manifest has no split: the DatasetDict has one key, 'all'. Do not split it with HF's "
                      "train_test_split, which draws images, not patients: one patient's images and copies of one "
                      "picture land on both sides. Run `cxrcurate split MANIFEST` first.", UserWarning, stacklevel=2)
        return datasets.DatasetDict({"all": whole})
    unsplit = int(df["split"].isna().sum())
    if unsplit:
        warnings.warn(f"{unsplit} selected row(s) have no split and are left out of the DatasetDict",
                      UserWarning, stacklevel=2)
    return datasets.DatasetDict({s: part(df["split"] == s) for s in sides})
