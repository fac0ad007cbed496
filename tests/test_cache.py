"""Tests of ``cxrcurate.preprocess.cache`` (build, resume, invalidation, interruption, the Dataset) and of the
``preprocess`` / ``show`` / ``train-lungs`` commands, on the shipped sample."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from cxrcurate.datasets import ManifestDataset
from cxrcurate.errors import CxrcurateError
from cxrcurate.manifest import read_manifest
from cxrcurate.preprocess import cache as cache_mod
from cxrcurate.preprocess.cache import build_cache, cache_folder, entry_path, read_info
from cxrcurate.preprocess.config import SHIPPED_WEIGHTS, PreprocessConfig
from cxrcurate.preprocess.pipeline import Preprocessor

SMALL = PreprocessConfig(size=48, lungs=None)


@pytest.fixture
def manifest(sample_build):
    return read_manifest(sample_build.manifest)


@pytest.fixture
def counted(monkeypatch):
    """Count the images actually preprocessed (in this process: workers=1)."""
    calls = []
    original = Preprocessor.__call__

    def counting(self, pixels, lungs=None):
        calls.append(pixels.shape)
        return original(self, pixels, lungs)

    monkeypatch.setattr(Preprocessor, "__call__", counting)
    return calls


def test_second_pass_reads_instead_of_recomputing(manifest, tmp_path, counted):
    distinct = manifest["pixel_sha256"].nunique()
    first = build_cache(manifest, tmp_path, SMALL, workers=1, progress=False)
    assert (first.computed, first.reused, first.failed) == (distinct, 0, 0) and len(counted) == distinct
    assert first.folder == cache_folder(tmp_path, SMALL) and (first.folder / "config.json").exists()
    entry = np.load(entry_path(first.folder, manifest["pixel_sha256"].iloc[0]))
    assert entry.shape == (3, 48, 48) and entry.dtype == np.uint8
    second = build_cache(manifest, tmp_path, SMALL, workers=1, progress=False)
    assert (second.computed, second.reused) == (0, distinct) and len(counted) == distinct  # nothing recomputed
    assert len(read_info(first.folder)) == distinct


def test_a_changed_config_gets_a_fresh_folder(manifest, tmp_path, counted):
    rows = manifest.head(4)
    a = build_cache(rows, tmp_path, SMALL, workers=1, progress=False)
    b = build_cache(rows, tmp_path, PreprocessConfig(size=48, lungs=None, beasf_gamma=2.0), workers=1, progress=False)
    assert a.folder != b.folder and b.computed == a.computed == rows["pixel_sha256"].nunique()
    assert len(counted) == 2 * a.computed


def test_interrupted_build_resumes_without_torn_files(manifest, tmp_path, monkeypatch):
    real_job, done = cache_mod._job, []

    def dies_after_three(item):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(item)
        return real_job(item)

    monkeypatch.setattr(cache_mod, "_job", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_cache(manifest, tmp_path, SMALL, workers=1, progress=False)
    folder = cache_folder(tmp_path, SMALL)
    files = list(folder.glob("*/*.npy"))
    assert len(files) == 3 and not list(folder.glob("*/.*.tmp"))
    assert all(np.load(f).shape == (3, 48, 48) for f in files)
    monkeypatch.setattr(cache_mod, "_job", real_job)
    resumed = build_cache(manifest, tmp_path, SMALL, workers=1, progress=False)
    assert resumed.reused == 3 and resumed.computed == manifest["pixel_sha256"].nunique() - 3


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(fh, array):
        fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    target = tmp_path / "ab" / "abc.npy"
    with pytest.raises(OSError):
        cache_mod._write_npy(target, np.zeros((1, 2, 2), np.uint8))
    assert not target.exists() and not list(target.parent.iterdir())


def test_changed_file_is_reported_not_cached(manifest, tmp_path):
    rows = manifest.head(3).copy()
    rows.loc[rows.index[0], "pixel_sha256"] = "0" * 64
    result = build_cache(rows, tmp_path, SMALL, workers=1, progress=False)
    assert result.failed == 1 and "rebuild the manifest" in result.errors[0][1] and result.computed == 2


def test_parallel_build_matches_serial(manifest, tmp_path):
    serial = build_cache(manifest, tmp_path / "s", SMALL, workers=1, progress=False)
    parallel = build_cache(manifest, tmp_path / "p", SMALL, workers=2, progress=False)
    assert parallel.computed == serial.computed and parallel.failed == 0
    for sha in manifest["pixel_sha256"].unique()[:5]:
        assert np.array_equal(np.load(entry_path(serial.folder, sha)), np.load(entry_path(parallel.folder, sha)))


def test_dataset_yields_tensors_labels_and_ids(manifest, tmp_path):
    import torch

    from cxrcurate.preprocess.augment import PaperAugment

    def cached(**kw):
        return ManifestDataset(manifest, preprocess=SMALL, cache=tmp_path, require_cache=True, **kw)

    with pytest.raises(CxrcurateError, match="cxrcurate preprocess"):
        cached()
    build_cache(manifest, tmp_path, SMALL, workers=1, progress=False)
    ds = cached(classes=("normal", "covid19", "pneumonia"))
    assert len(ds) == manifest["label"].isin(["normal", "covid19", "pneumonia"]).sum()
    image, label, image_id = ds[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert ds.classes[label] == manifest.set_index("image_id").loc[image_id, "label"]
    mapped = cached(mmap=True, augment=PaperAugment(seed=1))
    assert mapped[0][0].shape == (3, 48, 48) and mapped[0][2] == image_id
    assert torch.equal(mapped[0][0], mapped[0][0])  # seeded per sample
    with pytest.raises(CxrcurateError, match="unknown class"):
        cached(classes=("covid",))


@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no lung weights shipped in this checkout")
def test_build_with_the_shipped_lung_model(manifest, tmp_path):
    rows = manifest[manifest["source"] == "hannover"].head(3)
    result = build_cache(rows, tmp_path, PreprocessConfig(size=64), workers=1, progress=False)
    infos = list(read_info(result.folder).values())
    assert result.computed == 3 and all(i["lungs"] == "found" and i["box"] for i in infos)


@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no lung weights shipped in this checkout")
def test_lungs_are_segmented_once_per_picture(manifest, tmp_path, monkeypatch):
    """A second size (another config folder) crops with the stored boxes: the U-Net never runs again, and the
    tensors equal those of a cache built from scratch at that size."""
    from cxrcurate.preprocess.lungs import LungSegmenter
    from cxrcurate.preprocess.lungstore import LungStore

    rows = manifest[manifest["source"].isin(["hannover", "cohen"])].head(4)
    first = build_cache(rows, tmp_path / "c", PreprocessConfig(size=64), workers=1, progress=False)
    store = LungStore(tmp_path / "c", PreprocessConfig(size=96))
    assert first.lungs_reused == 0 and len(store) == rows["pixel_sha256"].nunique()
    assert {b["lungs"] for b in store.boxes.values()} <= {"found", "not_found"}
    fresh = build_cache(rows, tmp_path / "fresh", PreprocessConfig(size=96), workers=1, progress=False)

    def no_unet(self, pixels):
        raise AssertionError("the U-Net ran although the box was stored")

    monkeypatch.setattr(LungSegmenter, "probabilities", no_unet)
    second = build_cache(rows, tmp_path / "c", PreprocessConfig(size=96), workers=1, progress=False)
    assert second.computed == len(store) and second.lungs_reused == len(store)
    for sha in rows["pixel_sha256"].unique():
        a = np.load(entry_path(second.folder, sha))
        assert np.array_equal(a, np.load(entry_path(fresh.folder, sha)))
    assert read_info(second.folder).keys() == read_info(fresh.folder).keys()
    assert PreprocessConfig(size=64).lung_hash() == PreprocessConfig(size=96, channels=("original",)).lung_hash()
    assert PreprocessConfig(crop_margin=0.1).lung_hash() != PreprocessConfig().lung_hash()
    assert PreprocessConfig(lungs=None).lung_hash() is None


@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no lung weights shipped in this checkout")
def test_batched_segmentation_gives_the_per_image_boxes(manifest, tmp_path):
    """The device path (workers send the U-Net input, the network sees a batch) on CPU tensors: same boxes."""
    from cxrcurate.imageio import decode_image
    from cxrcurate.preprocess.cache import segment_batched
    from cxrcurate.preprocess.lungs import LungSegmenter
    from cxrcurate.preprocess.lungstore import LungStore

    rows = manifest.drop_duplicates("pixel_sha256").head(6)
    root = sample_root(manifest)
    config = PreprocessConfig(size=64)
    store = LungStore(tmp_path, config)
    items = [(sha, iid, str(root / p), "", None) for sha, iid, p in zip(rows["pixel_sha256"], rows["image_id"],
                                                                       rows["path"], strict=True)]
    assert segment_batched(items, store, config, "cpu", workers=1, batch_size=4) == len(items)
    seg = LungSegmenter(SHIPPED_WEIGHTS)
    for sha, _, path, _, _ in items:
        pixels = decode_image(path).pixels
        box = seg.segment(pixels).box
        assert store.get(sha)["box"] == (list(box) if box else None)
        assert store.get(sha)["shape"] == list(pixels.shape)
    again = LungStore(tmp_path, config)  # read back from boxes.jsonl
    assert again.boxes == store.boxes and again.add([(items[0][0], {"lungs": "found", "box": [0, 1, 0, 1]})]) == 0


def sample_root(manifest):
    from cxrcurate.manifest import resolve_data_root

    return resolve_data_root(manifest, None)


def _parser():
    from cxrcurate.cli.preprocess import register

    p = argparse.ArgumentParser(prog="cxrcurate")
    register(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_preprocess_show_and_train(sample_build, tmp_path, capsys):
    from PIL import Image

    m = str(sample_build.manifest)
    args = _parser().parse_args(["preprocess", m, "--size", "32", "--lungs", "none", "--cache", str(tmp_path / "c"),
                                 "--workers", "1", "-q"])
    assert args.func(args) == 0
    assert "computed" in capsys.readouterr().out
    image_id = read_manifest(m)["image_id"].iloc[0]
    out = tmp_path / "panel.png"
    args = _parser().parse_args(["show", m, image_id, "-o", str(out), "--lungs", "none", "--size", "64"])
    assert args.func(args) == 0 and Image.open(out).format == "PNG"
    args = _parser().parse_args(["show", m, "cohen:nope.jpg", "-o", str(out), "--lungs", "none"])
    with pytest.raises(CxrcurateError, match="no image_id"):
        args.func(args)
    args = _parser().parse_args(["preprocess", m, "--lungs", str(tmp_path / "missing.safetensors"), "-q"])
    with pytest.raises(CxrcurateError, match="train-lungs"):
        args.func(args)
    weights = tmp_path / "w.safetensors"
    args = _parser().parse_args(["train-lungs", m, "--size", "32", "--width", "4", "--depth", "2", "--epochs", "1",
                                 "--test", "0.5", "--out", str(weights), "--device", "cpu", "-q"])
    assert args.func(args) == 0 and weights.exists()
    assert "held-out Dice" in capsys.readouterr().out
