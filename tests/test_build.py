"""build-manifest on the shipped sample and on broken inputs: every file and row is accounted for."""

import gzip
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from cxrcurate.build import build_manifest
from cxrcurate.cli import main
from cxrcurate.errors import CxrcurateError, UnknownSourceError
from cxrcurate.manifest import read_info, read_manifest


def _all_files(root):
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_sample_every_file_and_row_is_accounted_for(sample_build, sample_root):
    m = read_manifest(sample_build.manifest)
    d = pd.read_parquet(sample_build.dropped)
    assert m.attrs["cxrcurate"]["data_root"] == str(sample_build.manifest.parent.resolve())  # sources' common parent
    masks = {p for paths in m["mask_paths"].dropna() for p in paths}
    accounted = set(m["path"]) | masks | set(d["path"].dropna())
    on_disk = {f for f in _all_files(sample_root)
               if f.count("/") == 2 and f.split("/")[1] in {"images", "png", "lung-masks"}}
    assert on_disk == accounted
    # nothing counted twice
    assert len(m) + d["path"].notna().sum() + len(masks) == len(on_disk)
    # every metadata row is in exactly one table
    for source, csv, n_rows in [("cohen", "metadata.csv", None), ("hannover", "data.csv", None),
                                ("nih-cxr14", "Data_Entry_2017_v2020.csv.gz", None)]:
        opener = gzip.open if csv.endswith(".gz") else open
        with opener(sample_root / source / csv, "rt") as fh:
            n_rows = len(pd.read_csv(fh, dtype=str))
        ids = set(m.loc[m.source == source, "source_record"]) | set(d.loc[d.source == source, "source_record"])
        assert {f"{csv}#{i}" for i in range(n_rows)} <= ids, source


def test_sample_content(sample_build):
    m = read_manifest(sample_build.manifest).set_index("image_id")
    d = pd.read_parquet(sample_build.dropped)
    assert sample_build.n_images == len(m) == 30  # 9 cohen X-rays + 8 hannover + 11 covid-cxnet + 2 nih
    # the CT volume row of Cohen is dropped as not an X-ray; NIH rows without images are dropped
    assert (d.loc[d.source == "cohen", "reason"] == "not_xray").sum() == 1
    assert (d.loc[d.source == "nih-cxr14", "reason"] == "row_without_file").sum() == 30  # 32 rows, 2 images
    # covid-cxnet: "374.png" in metadata matches the file 374.PNG; 446p is a child by age, 001 has no metadata
    assert m.loc["covid-cxnet:images/374.PNG", "source_record"].startswith("metadata.csv#")
    assert m.loc["covid-cxnet:images/446p.jpg", "pediatric_reason"] == "age<18"
    assert pd.isna(m.loc["covid-cxnet:images/001.jpeg", "patient_id"])
    # Cohen keeps the Hannover picture it labelled "No Finding"; the same pixels are in the Hannover set
    cohen = m.loc["cohen:images/b343e657.jpg"]
    assert cohen["patient_id"] == "cohen:219" and cohen["mask_paths"][0] == "cohen/lung-masks/b343e657.jpg"
    han = m.loc["hannover:png/483f2ad8.png"]
    assert han["pixel_sha256"] == m.loc["covid-cxnet:images/549.png", "pixel_sha256"]
    assert han["file_sha256"] != m.loc["cohen:images/483f2ad8.jpg", "file_sha256"]
    assert m["width"].max() <= 512 and set(m["bit_depth"]) <= {8, 16}
    info = read_info(sample_build.manifest)
    assert info["sources"]["nih-cxr14"]["notes"]["csv_pediatric_images"] == 10
    assert info["build"]["views"] == ["PA", "AP", "AP_supine", "unknown"]


def _tiny_source(tmp_path):
    """A Hannover-layout folder with good, truncated, non-image and 16-bit files."""
    root = tmp_path / "hannover"
    (root / "png").mkdir(parents=True)
    Image.new("L", (64, 48), 90).save(root / "png/aaaa0001.png")
    Image.radial_gradient("L").save(root / "png/aaaa0002.png")
    data = (root / "png/aaaa0002.png").read_bytes()
    (root / "png/aaaa0003.png").write_bytes(data[: len(data) // 2])  # truncated
    (root / "png/aaaa0004.png").write_text("<html>404 Not Found</html>")  # an error page saved as an image
    import numpy as np

    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 9).astype(np.uint16)).save(root / "png/aaaa0005.png")
    (root / "png/notes.txt").write_text("not an image")
    rows = ["patient_id,image_id,sex,admission_offset,projection"]
    rows += [f"p{i},aaaa000{i},{'fm'[i % 2]},{-i},{'ap' if i % 2 else 'pa'}" for i in range(1, 6)]
    rows += ["p9,missing9,m,0,ap", "p1,aaaa0001,f,-1,pa", "p7,aaaa0007,m,5,lateral"]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root


def test_bad_images_go_to_dropped_with_reason_and_build_resumes(tmp_path):
    root = _tiny_source(tmp_path)
    Image.new("L", (40, 40), 10).save(root / "png/aaaa0007.png")
    res = build_manifest([("hannover", root)], tmp_path / "out", workers=1, progress=False)
    m = read_manifest(res.manifest).set_index("path")
    d = pd.read_parquet(res.dropped).set_index("path", drop=False)
    assert sorted(m.index) == ["hannover/png/aaaa0001.png", "hannover/png/aaaa0002.png", "hannover/png/aaaa0005.png"]
    assert m.loc["hannover/png/aaaa0005.png", "bit_depth"] == 16
    unreadable = d[d.reason == "unreadable"]
    assert set(unreadable.path) == {"hannover/png/aaaa0003.png", "hannover/png/aaaa0004.png"}
    assert all(str(root / "png") in msg for msg in unreadable.detail)  # the message names the file
    assert d.loc["hannover/png/notes.txt", "reason"] == "not_image"
    assert d.loc["hannover/png/aaaa0007.png", "reason"] == "view_excluded"  # "lateral" is not frontal
    assert set(d.reason) == {"unreadable", "not_image", "view_excluded", "row_without_file", "duplicate_row"}
    # a rebuild decodes nothing again (cache), and gives the same manifest
    cache = (tmp_path / "out/.fingerprints.jsonl").read_text().splitlines()
    assert len(cache) == 3  # the lateral image is excluded before decoding
    res2 = build_manifest([("hannover", root)], tmp_path / "out", workers=1, progress=False)
    assert len((tmp_path / "out/.fingerprints.jsonl").read_text().splitlines()) == 3
    pd.testing.assert_frame_equal(read_manifest(res2.manifest), read_manifest(res.manifest))


def test_parallel_build_matches_serial(tmp_path, sample_build):
    from cxrcurate.sample import sample_sources

    res = build_manifest(sample_sources(), tmp_path, workers=2, progress=False)
    a = read_manifest(res.manifest).sort_values("image_id").reset_index(drop=True)
    b = read_manifest(sample_build.manifest).sort_values("image_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_views_option_and_errors(tmp_path):
    root = _tiny_source(tmp_path)
    res = build_manifest([("hannover", root)], tmp_path / "pa", views=["PA"], workers=1, progress=False)
    assert set(read_manifest(res.manifest)["view"]) == {"PA"}
    with pytest.raises(CxrcurateError, match="unknown view"):
        build_manifest([("hannover", root)], tmp_path / "x", views=["frontal"])
    with pytest.raises(UnknownSourceError, match="Did you mean 'hannover'"):
        build_manifest([("hanover", root)], tmp_path / "x")
    with pytest.raises(CxrcurateError, match="not a folder"):
        build_manifest([("cohen", tmp_path / "nowhere")], tmp_path / "x")


def test_cli_build_and_stats(tmp_path, capsys):
    root = _tiny_source(tmp_path)
    assert main(["build-manifest", "--source", f"hannover={root}", "--out", str(tmp_path / "o"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "3 images" in out and "unreadable" in out
    assert main(["stats", str(tmp_path / "o/manifest.parquet"), "--format", "markdown"]) == 0
    table = capsys.readouterr().out
    assert "| hannover | covid19 | 3 |" in table
    assert main(["build-manifest", "--source", "cohen", "--out", str(tmp_path / "o")]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err
    assert main(["build-manifest", "--source", f"coen={root}", "--out", str(tmp_path / "o")]) == 2
    assert "Did you mean 'cohen'" in capsys.readouterr().err


def test_missing_metadata_file_names_the_layout(tmp_path):
    root = _tiny_source(tmp_path)
    (root / "data.csv").unlink()
    with pytest.raises(CxrcurateError) as err:
        build_manifest([("hannover", root)], tmp_path / "x")
    assert "data.csv" in str(err.value) and "png/<image_id>.png" in str(err.value)


def test_help_is_light():
    code = ("import sys; from cxrcurate.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'timm', 'captum', 'datasets', 'cv2', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\nimport cxrcurate\nassert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "build-manifest" in out.stdout


def test_sources_command_lists_every_loader(capsys):
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    for name in ["cohen", "covid-cxnet", "hannover", "figure1", "actualmed", "nih-cxr14", "kermany", "shenzhen",
                 "montgomery"]:
        assert f"\n{name} " in "\n" + out, name
