"""Duplicates on the real shipped sample and on transformed copies: grouping, evidence, keep policy, conflicts."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from cxrcurate.build import build_manifest
from cxrcurate.cli import main
from cxrcurate.dedup import DedupOptions, assign_groups, dedup, dedup_manifest, exact_pairs
from cxrcurate.errors import CxrcurateError
from cxrcurate.manifest import read_info, read_manifest


@pytest.fixture(scope="module")
def sample_dedup(sample_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("dedup") / "manifest.parquet"
    return dedup_manifest(sample_build.manifest, out, options=DedupOptions(workers=1), progress=False)


def _groups(df: pd.DataFrame) -> set[frozenset]:
    multi = df[df.duplicated("dup_group", keep=False)]
    return {frozenset(g["image_id"]) for _, g in multi.groupby("dup_group")}


def test_sample_copies_across_three_collections(sample_dedup):
    path, result = sample_dedup
    m = read_manifest(path)
    assert _groups(m) == {
        frozenset({"hannover:png/483f2ad8.png", "covid-cxnet:images/549.png", "cohen:images/483f2ad8.jpg"}),
        frozenset({"hannover:png/19abe1f3.png", "covid-cxnet:images/522.png", "cohen:images/19abe1f3.jpg"}),
        frozenset({"hannover:png/b343e657.png", "cohen:images/b343e657.jpg"}),
        frozenset({"hannover:png/b0500187.png", "covid-cxnet:images/705.png"}),
        # a child's radiograph, cropped and overlaid differently, twice in COVID-CXNet (one copy has no age)
        frozenset({"covid-cxnet:images/166-.jpeg", "covid-cxnet:images/455p.jpg"}),
    }
    kept = set(m.loc[m["keep"], "image_id"])
    assert {"hannover:png/483f2ad8.png", "hannover:png/b343e657.png", "covid-cxnet:images/166-.jpeg"} <= kept
    assert m.groupby("dup_group")["keep"].sum().eq(1).all()  # exactly one kept copy per picture
    assert len(m) - m["keep"].sum() == 7  # 2 + 2 + 1 + 1 + 1 extra copies
    info = read_info(path)
    assert info["dedup"]["groups_with_copies"] == 5 and info["sources"]  # provenance survives


def test_pairs_carry_evidence(sample_dedup):
    path, _ = sample_dedup
    pairs = pd.read_parquet(path.with_name("manifest.pairs.parquet")).set_index(["image_a", "image_b"])
    exact = pairs.loc[("covid-cxnet:images/549.png", "hannover:png/483f2ad8.png")]
    assert exact["kind"].startswith("file") and exact["accepted"]
    recropped = pairs.loc[("cohen:images/b343e657.jpg", "hannover:png/b343e657.png")]
    assert "name" in recropped["kind"] and recropped["hamming"] >= 10  # pHash alone would miss it
    assert recropped["accepted"] and recropped["inliers"] >= 220
    rejected = pairs[~pairs["accepted"]]
    assert len(rejected) > 50 and (rejected["inliers"] < 220).all()


def test_the_gate_only_skips_work(sample_build, sample_dedup, tmp_path):
    """The cheap gate stops most candidates of the real sample, and every decision equals the full match's."""
    path, _ = sample_dedup
    gated = pd.read_parquet(path.with_name("manifest.pairs.parquet"))
    out = tmp_path / "manifest.parquet"  # the gate switched off the way users do it: the CLI's --gate 0
    assert main(["dedup", str(sample_build.manifest), "--out", str(out), "--gate", "0", "--workers", "1", "-q"]) == 0
    full = pd.read_parquet(tmp_path / "manifest.pairs.parquet")
    assert set(full["stage"]) <= {"exact", "matches", "ransac"}  # gate 0: every pair got the full match
    both = gated.merge(full, on=["image_a", "image_b"], suffixes=("", "_full"))
    assert len(both) == len(gated) == len(full)
    stopped = both[both["stage"] == "gate"]
    assert len(stopped) > 0.5 * (both["stage"] != "exact").sum()  # the gate is where most pairs end
    assert (stopped["inliers"] < 14).all() and not stopped["accepted"].any()
    assert (both["accepted"] == both["accepted_full"]).all()
    after = both[both["stage"] != "gate"]  # pairs past the gate get the very same evidence
    assert (after["inliers"] == after["inliers_full"]).all() and (after["score"] == after["score_full"]).all()


def _transforms(pixels: np.ndarray, rng: np.random.Generator) -> dict[str, Image.Image]:
    im = Image.fromarray(pixels)
    w, h = im.size
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(30, 90)))
    c = rng.uniform(0.02, 0.08)
    pad = Image.new("L", (w + 2 * int(0.08 * w), h), 0)
    pad.paste(im, (int(0.08 * w), 0))
    text = im.copy()
    ImageDraw.Draw(text).rectangle((4, 4, 110, 34), fill=255)
    ImageDraw.Draw(text).text((8, 10), "PORTABLE", fill=0)
    f = rng.uniform(0.5, 0.9)
    return {
        "resize": im.resize((int(w * f), int(h * f))), "jpeg": Image.open(buf),
        "crop": im.crop((int(w * c), int(h * c), w - int(w * c / 2), h)), "pad": pad, "text": text,
        "bright": Image.fromarray(np.clip(pixels * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)),
    }


def test_transformed_copies_are_found_and_distinct_pictures_are_not(sample_build, tmp_path):
    from cxrcurate.imageio import decode_image

    base = read_manifest(sample_build.manifest)
    base = base[base["source"].isin(["hannover", "nih-cxr14"])]  # 10 distinct pictures
    root = tmp_path / "covid-cxnet" / "images"
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    truth = {}
    for k, rec in enumerate(base.itertuples()):
        pixels = decode_image(sample_build.info["data_root"] + "/" + rec.path).pixels
        Image.fromarray(pixels).save(root / f"{k:03d}.png")
        truth[f"{k:03d}.png"] = k
        for name, img in _transforms(pixels, rng).items():
            img.save(root / f"{k:03d}{name}.png")
            truth[f"{k:03d}{name}.png"] = k
    res = build_manifest([("covid-cxnet", tmp_path / "covid-cxnet")], tmp_path / "out", workers=1, progress=False)
    out = dedup(read_manifest(res.manifest), tmp_path, DedupOptions(workers=1), progress=False).manifest
    out["truth"] = out["path"].str.rsplit("/", n=1).str[-1].map(truth)
    assert out.groupby("dup_group")["truth"].nunique().eq(1).all(), "a group mixes different pictures"
    assert out.groupby("truth")["dup_group"].nunique().eq(1).all(), "a copy was missed"


def _frame(labels, sources, pairs):
    n = len(labels)
    df = pd.DataFrame({
        "image_id": [f"{s}:{i}.png" for i, s in enumerate(sources)], "source": sources, "label": labels,
        "patient_id": None, "age_years": [30.0] * n, "sex": ["M"] * n, "pediatric": [False] * n,
        "view": ["PA"] * n, "url": None, "license": None, "width": [400] * n, "height": [400] * n,
    })
    p = pd.DataFrame(pairs, columns=["a", "b"]).assign(accepted=True)
    return df, p


def test_label_conflicts_are_never_resolved_silently():
    df, pairs = _frame(["normal", "covid19", "covid19", "unknown"], ["cohen", "hannover", "nih-cxr14", "cohen"],
                       [(0, 1), (2, 3)])
    out, conflicts = assign_groups(df, pairs, DedupOptions())
    assert list(conflicts["field"]) == ["label"] and conflicts["sources"].iat[0] == "cohen,hannover"
    assert not out.loc[[0, 1], "keep"].any()  # excluded by default
    assert out.loc[2, "keep"] and not out.loc[3, "keep"]  # "unknown" is not a conflict; the known label wins
    out, _ = assign_groups(df, pairs, DedupOptions(label_conflict="report"))
    assert out.loc[1, "keep"] and not out.loc[0, "keep"]  # preferred source kept, conflict still listed
    with pytest.raises(CxrcurateError, match="label_conflict"):
        assign_groups(df, pairs, DedupOptions(label_conflict="vote"))


def test_keep_policy_prefers_originals_then_resolution():
    df, pairs = _frame(["covid19"] * 3, ["covid-cxnet", "cohen", "covid-cxnet"], [(0, 1), (1, 2)])
    df.loc[2, "width"] = 800
    out, _ = assign_groups(df, pairs, DedupOptions())
    assert list(out["keep"]) == [False, True, False]
    out, _ = assign_groups(df, pairs, DedupOptions(preference=("covid-cxnet", "cohen")))
    assert list(out["keep"]) == [False, False, True]  # same source: larger picture wins


def test_exact_pairs_form_a_star():
    df = pd.DataFrame({"pixel_sha256": ["a", "a", "a", "b"], "file_sha256": ["x", "x", "y", "z"]})
    pairs = exact_pairs(df)
    assert sorted(map(tuple, pairs[["a", "b", "kind"]].to_numpy().tolist())) == [(0, 1, "file"), (0, 2, "pixel")]


def test_cli_dedup_and_stats(sample_build, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert main(["dedup", str(sample_build.manifest), "--out", str(out), "-q", "--workers", "1", "--knn", "3"]) == 0
    text = capsys.readouterr().out
    assert "5 pictures have copies" in text and "groups holding pictures of both sources" in text
    assert out.with_name("m.pairs.parquet").exists() and out.with_name("m.conflicts.parquet").exists()
    assert main(["stats", str(out)]) == 0
    assert "duplicate groups shared by sources" in capsys.readouterr().out


def test_dask_engine_gives_the_local_groups(sample_build, sample_dedup, tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    _, local = sample_dedup
    m = read_manifest(sample_build.manifest)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        opts = DedupOptions(engine="dask", scheduler=cluster.scheduler_address, work_dir=str(tmp_path))
        remote = dedup(m, sample_build.info["data_root"], opts, progress=False)
        with Client(cluster.scheduler_address) as client:  # the three stages ran as tasks of this cluster
            prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert {"fingerprint_chunk", "search_task", "verify_chunk"} <= set(prefixes)
    assert _groups(remote.manifest) == _groups(local.manifest)
    cols = ["image_a", "image_b", "kind", "inliers", "score", "accepted"]
    pd.testing.assert_frame_equal(remote.pairs[cols].reset_index(drop=True), local.pairs[cols].reset_index(drop=True))


def test_unknown_engine_is_a_clear_error(sample_build):
    m = read_manifest(sample_build.manifest)
    with pytest.raises(CxrcurateError, match="engine"):
        dedup(m, sample_build.info["data_root"], DedupOptions(engine="spark", workers=1), progress=False)
