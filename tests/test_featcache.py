"""Dedup features stored once per picture (``dedup.featcache``): same pairs, bad entries recomputed, the CLI paths."""

import logging

import numpy as np
import pandas as pd
import pytest

from cxrcurate.cli import main
from cxrcurate.dedup import DedupOptions, dedup, featcache
from cxrcurate.dedup.featcache import FeatureCache, feature_tag, is_key
from cxrcurate.manifest import read_manifest


def _run(build, folder, **kw):
    m = read_manifest(build.manifest)
    opts = DedupOptions(workers=1, feature_cache=folder is not None, feature_dir=folder and str(folder), **kw)
    return m, dedup(m, build.info["data_root"], opts, progress=False)


def _entries(folder) -> list:
    return sorted(folder.rglob("*.npz"))


@pytest.fixture(scope="module")
def filled(sample_build, tmp_path_factory):
    """The real sample deduplicated twice into one new cache folder, and once with no cache at all."""
    folder = tmp_path_factory.mktemp("features")
    _, first = _run(sample_build, folder)
    _, second = _run(sample_build, folder)
    _, plain = _run(sample_build, None)
    return folder, first, second, plain


def test_stored_features_give_the_pairs_of_a_decode(sample_build, filled):
    folder, first, second, plain = filled
    m = read_manifest(sample_build.manifest)
    n, u = len(m), m["pixel_sha256"].nunique()
    assert n - u == 3  # pixel-identical copies in the sample: the second of each reads what the first stored
    assert first.features == {"features_reused": n - u, "features_computed": u, "feature_cache_bad": 0}
    assert second.features == {"features_reused": n, "features_computed": 0, "feature_cache_bad": 0}
    assert plain.features == {"features_reused": 0, "features_computed": n, "feature_cache_bad": 0}
    assert {p.stem for p in _entries(folder / feature_tag())} == set(m["pixel_sha256"])  # one entry per picture
    for run in (first, second):  # every column, floats exactly: stored features are the computed ones
        pd.testing.assert_frame_equal(run.pairs.reset_index(drop=True), plain.pairs.reset_index(drop=True),
                                      check_exact=True)
        assert run.manifest["dup_group"].tolist() == plain.manifest["dup_group"].tolist()
    assert first.summary["groups_with_copies"] == 5


def test_unreadable_and_malformed_entries_are_recomputed(sample_build, filled, tmp_path, caplog):
    import shutil

    src, _, _, plain = filled
    folder = tmp_path / "features"
    shutil.copytree(src, folder)
    entries = _entries(folder / feature_tag())
    entries[0].write_bytes(entries[0].read_bytes()[:5000])  # torn by a full disk
    entries[1].write_bytes(b"not a zip file at all")
    with np.load(entries[2]) as z:  # loads, but the descriptors are not 25 x 144 floats
        np.savez(entries[2], **{**{k: z[k] for k in z.files}, "raw": np.zeros((3, 3), np.float32)})
    with np.load(entries[3]) as z:  # a keypoint index beyond the keypoints
        np.savez(entries[3], **{**{k: z[k] for k in z.files}, "top": np.full(5, 30000, np.int16)})
    np.savez(entries[4], raw=np.array([{"a": 1}], dtype=object))  # pickled objects are never loaded
    caplog.set_level(logging.WARNING, logger="cxrcurate.dedup.featcache")
    n = len(read_manifest(sample_build.manifest))
    _, run = _run(sample_build, folder)
    assert run.features == {"features_reused": n - 5, "features_computed": 5, "feature_cache_bad": 5}
    assert sum("recomputed" in r.getMessage() for r in caplog.records) == 5
    named = " ".join(r.getMessage() for r in caplog.records)
    assert all(str(p) in named for p in entries[:5])  # each warning names its file
    pd.testing.assert_frame_equal(run.pairs.reset_index(drop=True), plain.pairs.reset_index(drop=True),
                                  check_exact=True)
    cache = FeatureCache(folder)  # rewritten: they load again
    assert all(cache.get(p.stem) is not None for p in entries[:5]) and cache.bad == 0


def test_an_unwritable_cache_folder_only_costs_recomputation(sample_build, filled, tmp_path, caplog):
    _, _, _, plain = filled
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    caplog.set_level(logging.WARNING, logger="cxrcurate.dedup.featcache")
    _, run = _run(sample_build, blocker)
    assert run.features["features_computed"] == len(plain.manifest)
    said = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(said) == 1 and "a-file" in said[0]  # once per chunk of pictures (one chunk here), naming the folder
    pd.testing.assert_frame_equal(run.pairs.reset_index(drop=True), plain.pairs.reset_index(drop=True))


def test_rows_without_a_pixel_hash_are_computed_and_not_stored(sample_build, filled, tmp_path):
    _, _, _, plain = filled
    m = read_manifest(sample_build.manifest)
    m.loc[:3, "pixel_sha256"] = ["", None, "../../etc/passwd", "A" * 64]  # none is a 64-hex key
    folder = tmp_path / "features"
    run = dedup(m, sample_build.info["data_root"], DedupOptions(workers=1, feature_dir=str(folder)), progress=False)
    keyed = m.loc[m["pixel_sha256"].map(is_key), "pixel_sha256"]
    assert len(keyed) == len(m) - 4
    assert run.features == {"features_reused": len(keyed) - keyed.nunique(), "features_computed": 4 + keyed.nunique(),
                            "feature_cache_bad": 0}
    assert {p.stem for p in _entries(folder)} == set(keyed)
    assert not any(".." in str(p) for p in folder.rglob("*"))
    pd.testing.assert_frame_equal(run.pairs.reset_index(drop=True), plain.pairs.reset_index(drop=True))


def test_the_tag_separates_feature_versions(monkeypatch):
    before = feature_tag()
    monkeypatch.setattr(featcache, "FEATURES_VERSION", featcache.FEATURES_VERSION + 1)
    assert feature_tag() != before and len(before) == 16
    monkeypatch.setattr(featcache, "FEATURES_VERSION", featcache.FEATURES_VERSION - 1)
    monkeypatch.setattr(featcache, "MAX_KEYPOINTS", featcache.MAX_KEYPOINTS + 1)
    assert feature_tag() != before


def test_the_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(featcache.CACHE_ENV, str(tmp_path / "mine"))
    assert featcache.default_feature_dir() == tmp_path / "mine"
    monkeypatch.delenv(featcache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert featcache.default_feature_dir() == tmp_path / "xdg" / "cxrcurate" / "dedup-features"


def test_cli_dedup_default_stores_and_no_feature_cache_does_not(sample_build, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "default-cache"
    monkeypatch.setenv(featcache.CACHE_ENV, str(folder))
    n = len(read_manifest(sample_build.manifest))
    args = ["dedup", str(sample_build.manifest), "-q", "--workers", "1"]
    assert main([*args, "--out", str(tmp_path / "a.parquet"), "--no-feature-cache"]) == 0
    assert f"features: {n} pictures decoded and computed (no feature cache)" in capsys.readouterr().out
    assert not folder.exists()
    assert main([*args, "--out", str(tmp_path / "b.parquet")]) == 0  # the default: the documented folder
    u = read_manifest(sample_build.manifest)["pixel_sha256"].nunique()
    assert f"{n - u} pictures read from the feature cache, {u} decoded and computed ({folder})" in \
        capsys.readouterr().out
    assert len(_entries(folder)) == u
    a, b = (pd.read_parquet(tmp_path / f"{x}.pairs.parquet") for x in "ab")
    pd.testing.assert_frame_equal(a, b)


def test_cli_build_dedup_takes_the_features_from_its_own_decode(tmp_path, capsys):
    folder = tmp_path / "features"
    out = tmp_path / "m"
    assert main(["build-manifest", "--sample", "--out", str(out), "-q", "--workers", "1", "--dedup",
                 "--feature-cache", str(folder)]) == 0
    m = read_manifest(out / "manifest.parquet")
    assert f"features: {len(m)} pictures read from the feature cache, 0 decoded and computed ({folder})" in \
        capsys.readouterr().out
    assert {p.stem for p in _entries(folder / feature_tag())} == set(m["pixel_sha256"])
    assert m["dup_group"].notna().all() and (~m["keep"]).sum() == 7  # the sample's 7 extra copies


def test_feature_cache_flags_are_exclusive(sample_build, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["dedup", str(sample_build.manifest), "--out", str(tmp_path / "x.parquet"), "--no-feature-cache",
              "--feature-cache", str(tmp_path)])
    assert "not allowed with" in capsys.readouterr().err


def _broken_hook(sha, pixels):
    raise RuntimeError("disk on fire")


def test_a_failing_per_picture_hook_costs_the_build_nothing(tmp_path, caplog):
    from cxrcurate.build import build_manifest
    from cxrcurate.sample import copy_sample

    out = tmp_path / "m"
    out.mkdir()
    specs = copy_sample(out)
    plain = build_manifest(specs, tmp_path / "plain", data_root=out, workers=1, progress=False)
    pooled = build_manifest(specs, tmp_path / "pooled", data_root=out, workers=2, progress=False,
                            on_decode=_broken_hook)  # in worker processes (the hook pickles)
    assert (pooled.n_images, pooled.n_dropped) == (plain.n_images, plain.n_dropped)
    caplog.set_level(logging.WARNING, logger="cxrcurate.build")
    result = build_manifest(specs, out, workers=1, progress=False, on_decode=_broken_hook)
    assert (result.n_images, result.n_dropped) == (plain.n_images, plain.n_dropped)
    said = [r.getMessage() for r in caplog.records if "hook failed" in r.getMessage()]
    assert len(said) == result.n_images and all("disk on fire" in m for m in said)
