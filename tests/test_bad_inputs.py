"""Bad inputs, as a careless or hostile user gives them (issue 12): each case is built here and must end in a
dropped-table row with its reason, a clean one-line error with its exit code, or a refusal. Never a traceback
without --debug, never a lost row or file, never a file opened outside the data root because a manifest named it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cxrcurate.cli import main
from cxrcurate.errors import CheckpointError, FetchError, SchemaError, SourceError, UnsafeManifestPath
from cxrcurate.imageio import fingerprint
from cxrcurate.manifest import read_manifest, to_table, write_manifest

COHEN_HEADER = "patientid,offset,sex,age,finding,survival,view,modality,date,location,folder,filename,doi,url," \
               "license,clinical_notes,other_notes"


def _png(path, seed: int, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 180 - 100 * (((xx - 0.3) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1) + rng.normal(0, 10, (size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def _rows(root, names):
    rows = []
    for i, name in enumerate(names):
        rows.append({"image_id": f"toy:{name}", "source": "toy", "source_record": f"r#{i}", "patient_id": f"toy:{i}",
                     "path": name, "label": ("normal", "covid19")[i % 2], "view": "PA", "frontal": True,
                     "modality": "xray", **fingerprint(root / name)})
    return rows


@pytest.fixture
def small(tmp_path):
    """A data root with four images and a valid manifest of them."""
    root = tmp_path / "data"
    names = [f"toy/{i}.png" for i in range(4)]
    for i, n in enumerate(names):
        _png(root / n, i)
    path = write_manifest(_rows(root, names), root / "manifest.parquet", {"data_root": str(root)})
    return root, path


def _raw_manifest(rows, path, data_root) -> None:
    """Write rows as a manifest WITHOUT validation, as a hostile or hand-edited file would be."""
    meta = {b"cxrcurate": json.dumps({"schema_version": "1.0", "data_root": str(data_root)}).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(rows).replace_schema_metadata(meta), path)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# -- 1, 2: paths a manifest names stay inside the data root -------------------------------------------------------
@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.png", "toy/../../outside.png", "C:/x.png"])
def test_write_manifest_refuses_paths_leaving_the_root(small, tmp_path, bad):
    root, path = small
    rows = read_manifest(path)
    rows.loc[1, "path"] = bad
    with pytest.raises(UnsafeManifestPath, match=r"toy:toy/1\.png"):
        write_manifest(rows, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_commands_refuse_a_manifest_with_dotdot_path(small, tmp_path, capsys):
    root, path = small
    outside = tmp_path / "outside.png"
    shutil.copy(root / "toy/1.png", outside)  # the row's own image, placed outside the root: must not be read
    rows = read_manifest(path).to_dict("records")
    rows[1]["path"] = "../outside.png"
    hostile = root / "hostile.parquet"  # in the data root: the default root is the manifest's own folder
    _raw_manifest(rows, hostile, root)
    for argv in (["show", hostile, "toy:toy/1.png", "-o", tmp_path / "p.png", "--lungs", "none"],
                 ["preprocess", hostile, "--cache", tmp_path / "c", "--lungs", "none", "--workers", "1", "-q"],
                 ["stats", hostile], ["dedup", hostile, "-q", "--out", tmp_path / "d.parquet"]):
        code, err = _run(capsys, *argv)
        assert code == 1 and "toy:toy/1.png" in err and "'..' in the path" in err, argv
    assert not (tmp_path / "p.png").exists() and not list((tmp_path / "c").rglob("*.npy"))


def test_a_link_leading_out_of_the_root_is_refused_where_paths_are_read(small, tmp_path, capsys):
    root, path = small
    outside = tmp_path / "outside.png"
    shutil.copy(root / "toy/2.png", outside)
    (root / "toy/2.png").unlink()
    (root / "toy/2.png").symlink_to(outside)  # lexically fine, but resolves outside the data root
    code, err = _run(capsys, "show", path, "toy:toy/2.png", "-o", tmp_path / "p.png", "--lungs", "none")
    assert code == 1 and "outside the data root" in err and "toy:toy/2.png" in err
    code, err = _run(capsys, "preprocess", path, "--cache", tmp_path / "c", "--lungs", "none", "--workers", "1", "-q")
    assert code == 1 and "outside the data root" in err
    code, err = _run(capsys, "dedup", path, "-q", "--out", tmp_path / "d.parquet")
    assert code == 1 and "outside the data root" in err
    from cxrcurate.datasets import ManifestDataset

    with pytest.raises(UnsafeManifestPath, match="toy:toy/2.png"):
        ManifestDataset(path, classes=("normal", "covid19"))


def test_cache_entry_names_are_hex_sha256_only(small, tmp_path):
    from cxrcurate.datasets import ManifestDataset
    from cxrcurate.preprocess.cache import build_cache
    from cxrcurate.preprocess.config import PreprocessConfig

    root, path = small
    rows = read_manifest(path).to_dict("records")
    planted = tmp_path / "c" / "x.npy"
    planted.parent.mkdir(parents=True)
    np.save(planted, np.zeros((3, 8, 8), np.uint8))  # an existing .npy outside the config folder
    rows[0]["pixel_sha256"] = "../../x"
    hostile = root / "hostile.parquet"  # in the data root: the default root is the manifest's own folder
    _raw_manifest(rows, hostile, root)
    config = PreprocessConfig(size=32, lungs=None)
    with pytest.raises(UnsafeManifestPath, match="not a sha256"):
        build_cache(hostile, tmp_path / "c", config, workers=1, progress=False)
    with pytest.raises(UnsafeManifestPath, match="toy:toy/0.png"):
        ManifestDataset(hostile, classes=("normal", "covid19"), preprocess=config, cache=tmp_path / "c")


# -- 3: metadata rows never vanish ----------------------------------------------------------------------------------
def _cohen(folder, rows, n_images=None, header=COHEN_HEADER):
    (folder / "images").mkdir(parents=True)
    lines = [header]
    for i, notes in enumerate(rows):
        lines.append(f"p{i},0,M,50,COVID-19,Y,PA,X-ray,2020,here,images,img{i}.png,,http://x/{i},CC BY,{notes},")
    for i in range(len(rows) if n_images is None else n_images):
        _png(folder / "images" / f"img{i}.png", 10 + i)
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")


def test_a_5mb_notes_field_is_read_and_later_rows_keep_their_record(tmp_path, capsys):
    _cohen(tmp_path / "cohen", ["short", "x" * 5_000_000, "after"])
    code, _ = _run(capsys, "build-manifest", "--source", f"cohen={tmp_path / 'cohen'}", "--out", tmp_path / "o",
                   "-q", "--workers", "1")
    assert code == 0
    m = read_manifest(tmp_path / "o/manifest.parquet").set_index("image_id")
    assert len(m) == 3 and len(pd.read_parquet(tmp_path / "o/manifest.dropped.parquet")) == 0
    assert m.loc["cohen:images/img2.png", "source_record"] == "metadata.csv#2"
    assert len(json.loads(m.loc["cohen:images/img1.png", "extra"])["clinical_notes"]) == 5_000_000


def test_an_unclosed_quote_drops_one_row_with_its_line_not_the_rest(tmp_path, capsys):
    folder = tmp_path / "covid-cxnet"
    header = "filename,patient_id,sex,age,view,label"
    lines = [header] + [f"{260 + i}.png,P{i},M,{30 + i},PA,COVID-19" for i in range(6)]
    lines[2] = '261.png,P1,M,31,"PA,COVID-19'  # the quote is never closed
    (folder / "images").mkdir(parents=True)
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    for i in range(6):
        _png(folder / "images" / f"{260 + i}.png", 30 + i)
    code, _ = _run(capsys, "build-manifest", "--source", f"covid-cxnet={folder}", "--out", tmp_path / "o", "-q",
                   "--workers", "1")
    assert code == 0
    m = read_manifest(tmp_path / "o/manifest.parquet").set_index("image_id")
    dropped = pd.read_parquet(tmp_path / "o/manifest.dropped.parquet")
    assert dropped["reason"].tolist() == ["unparseable_row"]
    assert dropped["source_record"].tolist() == ["metadata.csv#1"] and "line 3" in dropped["detail"][0]
    assert len(m) == 6  # the image of the bad row is still in, without its metadata
    assert m.loc["covid-cxnet:images/265.png", "patient_id"] == "covid-cxnet:P5"
    assert m.loc["covid-cxnet:images/265.png", "source_record"] == "metadata.csv#5"
    assert pd.isna(m.loc["covid-cxnet:images/261.png", "patient_id"])


def test_real_covid_cxnet_metadata_with_an_unclosed_quote_keeps_every_row(shared_data, tmp_path):
    from cxrcurate.sources.metadata import read_metadata

    lines = (shared_data / "covid-cxnet/metadata.csv").read_text(encoding="utf-8").splitlines()
    n = len(lines) - 1
    lines[100] = lines[100].replace(",", ',"', 3)  # opens a quote that nothing closes
    bad = tmp_path / "metadata.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = read_metadata(bad, "metadata.csv")
    assert len(meta.rows) + len(meta.bad) == n == 452
    assert [rid for rid, _ in meta.bad] == ["metadata.csv#99"] and "line 101" in meta.bad[0][1]
    assert meta.rows[-1][0] == f"metadata.csv#{n - 1}" and meta.rows[-1][1]["patient_id"]


def test_empty_cohen_metadata_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "cohen/images").mkdir(parents=True)
    (tmp_path / "cohen/metadata.csv").write_text("")
    code, err = _run(capsys, "build-manifest", "--source", f"cohen={tmp_path / 'cohen'}", "--out", tmp_path / "o")
    assert code == 1 and "metadata.csv is empty" in err


# -- 4: a folder that is not the source is refused ------------------------------------------------------------------
def test_missing_required_column_is_refused_naming_expected_and_found(tmp_path, capsys):
    _cohen(tmp_path / "cohen", ["a"], header=COHEN_HEADER.replace("finding", "diagnosis"))
    code, err = _run(capsys, "build-manifest", "--source", f"cohen={tmp_path / 'cohen'}", "--out", tmp_path / "o")
    assert code == 1 and "missing column(s) ['finding']" in err and "diagnosis" in err


def test_covid_cxnet_refuses_a_cohen_folder(tmp_path, capsys):
    _cohen(tmp_path / "cohen", ["a", "b", "c"])
    code, err = _run(capsys, "build-manifest", "--source", f"covid-cxnet={tmp_path / 'cohen'}", "--out",
                     tmp_path / "o")
    assert code == 1 and "does not look like the COVID-CXNet collection" in err and "img0.png" in err
    assert not (tmp_path / "o/manifest.parquet").exists()


def test_covid_cxnet_refuses_the_real_cohen_folder(shared_data, tmp_path, capsys):
    code, err = _run(capsys, "build-manifest", "--source", f"covid-cxnet={shared_data / 'cohen'}", "--out",
                     tmp_path / "o")
    assert code == 1 and "expected files named by number" in err


# -- 5: every directory entry is accounted for ----------------------------------------------------------------------
def test_dangling_links_folders_and_links_out_go_to_the_dropped_table(tmp_path, capsys):
    folder = tmp_path / "covid-cxnet"
    for i in range(3):
        _png(folder / "images" / f"90{i}.png", 50 + i)
    (folder / "images/903.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "images/904.png").mkdir()
    _png(tmp_path / "elsewhere.png", 60)
    (folder / "images/905.png").symlink_to(tmp_path / "elsewhere.png")
    (folder / "images/906.png").symlink_to(folder / "images/900.png")  # a link inside the source: a file
    code, _ = _run(capsys, "build-manifest", "--source", f"covid-cxnet={folder}", "--out", tmp_path / "o", "-q",
                   "--workers", "1")
    assert code == 0
    dropped = pd.read_parquet(tmp_path / "o/manifest.dropped.parquet").set_index("path")
    assert dropped["reason"].to_dict() == {"covid-cxnet/images/903.png": "dangling_link",
                                           "covid-cxnet/images/904.png": "not_a_file",
                                           "covid-cxnet/images/905.png": "outside_root"}
    assert len(read_manifest(tmp_path / "o/manifest.parquet")) == 4


def test_hidden_files_named_like_images_are_listed_not_lost(tmp_path, capsys):
    folder = tmp_path / "covid-cxnet"
    for i in range(2):
        _png(folder / "images" / f"90{i}.png", 50 + i)
    _png(folder / "images/._900.png", 70)  # what unzipping a macOS archive leaves beside each image
    (folder / "images/.DS_Store").write_bytes(b"\0\0\0\1Bud1")  # not named like an image: not listed
    code, _ = _run(capsys, "build-manifest", "--source", f"covid-cxnet={folder}", "--out", tmp_path / "o", "-q",
                   "--workers", "1")
    assert code == 0
    dropped = pd.read_parquet(tmp_path / "o/manifest.dropped.parquet").set_index("path")
    assert dropped["reason"].to_dict() == {"covid-cxnet/images/._900.png": "hidden_file"}
    assert "rename it" in dropped.loc["covid-cxnet/images/._900.png", "detail"]
    assert len(read_manifest(tmp_path / "o/manifest.parquet")) == 2


# -- 6: a changed file is never given its old fingerprint -----------------------------------------------------------
def test_same_size_replacement_with_the_old_mtime_is_fingerprinted_again(tmp_path, capsys):
    folder = tmp_path / "covid-cxnet/images"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(folder / "900.bmp")
    Image.fromarray(np.full((40, 40), 30, np.uint8)).save(folder / "901.bmp")
    argv = ["build-manifest", "--source", f"covid-cxnet={tmp_path / 'covid-cxnet'}", "--out", tmp_path / "o", "-q",
            "--workers", "1"]
    assert _run(capsys, *argv)[0] == 0
    before = read_manifest(tmp_path / "o/manifest.parquet").set_index("image_id")["file_sha256"]
    st = os.stat(folder / "900.bmp")
    new = tmp_path / "new.bmp"
    Image.fromarray(np.full((40, 40), 200, np.uint8)).save(new)
    assert new.stat().st_size == st.st_size
    shutil.copyfile(new, folder / "900.bmp")  # as `cp -p` does: same size, old mtime
    os.utime(folder / "900.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _run(capsys, *argv)[0] == 0
    after = read_manifest(tmp_path / "o/manifest.parquet").set_index("image_id")["file_sha256"]
    assert after["covid-cxnet:images/900.bmp"] != before["covid-cxnet:images/900.bmp"]
    assert after["covid-cxnet:images/901.bmp"] == before["covid-cxnet:images/901.bmp"]
    assert _run(capsys, *argv, "--rehash")[0] == 0


# -- 7: clean errors, no tracebacks ---------------------------------------------------------------------------------
def _damaged(tmp_path, small, kind):
    root, path = small
    bad = tmp_path / "bad.parquet"
    if kind == "truncated":
        bad.write_bytes(path.read_bytes()[:300])
    elif kind == "not-parquet":
        bad.write_text("image_id,path\na,b\n")
    else:  # invalid cxrcurate metadata JSON
        pq.write_table(pq.read_table(path).replace_schema_metadata({b"cxrcurate": b"{not json"}), bad)
    return bad


@pytest.mark.parametrize("kind", ["truncated", "not-parquet", "bad-json"])
@pytest.mark.parametrize("command", ["stats", "split", "leakage", "dedup", "show", "preprocess", "bench"])
def test_damaged_manifests_give_one_line_errors(small, tmp_path, capsys, kind, command):
    bad = _damaged(tmp_path, small, kind)
    argv = {"show": ["show", bad, "toy:toy/0.png", "-o", tmp_path / "p.png"],
            "preprocess": ["preprocess", bad, "--cache", tmp_path / "c"],
            "bench": ["bench", "--model", "cxnet", "--manifest", bad, "--out", tmp_path / "run"],
            "split": ["split", bad, "--out", tmp_path / "s.parquet"],
            "dedup": ["dedup", bad, "--out", tmp_path / "d.parquet"]}.get(command, [command, bad])
    code, err = _run(capsys, *argv)
    assert code == 1 and str(bad) in err and len(err.strip().splitlines()) == 1
    assert ("not valid JSON" if kind == "bad-json" else "not a readable Parquet file") in err


def test_zero_row_manifest_to_dedup(tmp_path, capsys):
    path = write_manifest([], tmp_path / "manifest.parquet", {"data_root": str(tmp_path)})
    code, err = _run(capsys, "dedup", path, "--in-place")
    assert code == 1 and "has no rows" in err


def test_out_that_is_a_file_is_refused_before_any_decoding(tmp_path, capsys, monkeypatch):
    import cxrcurate.build as build

    _cohen(tmp_path / "cohen", ["a"])
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(build, "fingerprint_files", lambda *a, **k: pytest.fail("decoded before checking --out"))
    for out in (tmp_path / "file", tmp_path / "file/sub"):
        code, err = _run(capsys, "build-manifest", "--source", f"cohen={tmp_path / 'cohen'}", "--out", out)
        assert code == 2 and "is a file, not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_read_only_is_refused_before_any_decoding(tmp_path, capsys):
    _cohen(tmp_path / "cohen", ["a"])
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    code, err = _run(capsys, "build-manifest", "--source", f"cohen={tmp_path / 'cohen'}", "--out", ro)
    assert code == 1 and "cannot write there" in err


def test_show_output_that_is_a_folder(small, tmp_path, capsys):
    root, path = small
    code, err = _run(capsys, "show", path, "toy:toy/0.png", "-o", tmp_path)
    assert code == 2 and "is a folder; give a file name" in err


def test_broken_pipe_exits_quietly(small, capsys, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    root, path = small
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["stats", str(path)])
    monkeypatch.undo()
    assert code == 141 and "Traceback" not in capsys.readouterr().err


def test_leakage_radius_out_of_range_is_a_usage_error(small, capsys):
    code, err = _run(capsys, "leakage", small[1], "--radius", "40")
    assert code == 2 and "between 0 and 32" in err


def test_ctrl_c_in_dedup_does_not_promise_a_resume(small, capsys, monkeypatch):
    import cxrcurate.dedup.engine as engine

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "dedup_manifest", interrupted)
    code, err = _run(capsys, "dedup", small[1], "--out", small[1].with_name("d.parquet"))
    assert code == 130 and "resume" not in err and "nothing was written" in err


def test_unexpected_errors_are_one_line_and_debug_shows_them(small, capsys, monkeypatch):
    import cxrcurate.stats as stats

    def boom(*a, **k):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(stats, "label_source_table", boom)
    code, err = _run(capsys, "stats", small[1])
    assert code == 1 and "unexpected ZeroDivisionError: planted" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "stats", str(small[1])])


def test_source_outside_the_data_root_is_a_usage_error(tmp_path, capsys):
    _cohen(tmp_path / "cohen", ["a"])
    (tmp_path / "root").mkdir()
    code, err = _run(capsys, "build-manifest", "--source", f"cohen={tmp_path / 'cohen'}", "--data-root",
                     tmp_path / "root", "--out", tmp_path / "o")
    assert code == 2 and "is not inside --data-root" in err


# -- 7, 8: checkpoints ----------------------------------------------------------------------------------------------
class Planted:  # any object a tensors-only unpickler must refuse
    pass


@pytest.fixture
def checkpoints(tmp_path):
    import pickle

    import torch

    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    torch.save({"w": torch.ones(2), "obj": Planted()}, tmp_path / "unsafe.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    (tmp_path / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(2000))
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"w": [1.0]}))
    return tmp_path


def test_checkpoint_files_are_refused_with_the_right_reason(checkpoints):
    from cxrcurate.models.weights import read_state_dict

    assert set(read_state_dict(checkpoints / "ok.pt")) == {"w"}
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_state_dict(checkpoints / "pickle.safetensors")
    for name in ("truncated.pt", "garbage.pt"):
        with pytest.raises(CheckpointError, match="not a readable torch checkpoint") as exc:
            read_state_dict(checkpoints / name, trust=True)
        assert "unpickling arbitrary" not in str(exc.value)
    with pytest.raises(CheckpointError, match="needs unpickling arbitrary Python objects"):
        read_state_dict(checkpoints / "unsafe.pt")
    assert set(read_state_dict(checkpoints / "unsafe.pt", trust=True)) == {"w"}


def test_trust_checkpoint_reaches_the_imagenet_init(monkeypatch):
    import cxrcurate.models.ladder as ladder
    from cxrcurate.models import get_spec

    seen = []

    def record(path, trust=False):
        seen.append(trust)
        raise CheckpointError("stop here")

    monkeypatch.setattr(ladder, "read_state_dict", record)
    spec = next(s for s in (get_spec(n) for n in ("cxnet", "densenet121", "chexnet")) if s.head != "base")
    with pytest.raises(CheckpointError):
        ladder.build_model(spec, "imagenet", "w.pt", trust=True)
    assert seen == [True]


@pytest.mark.parametrize("name", ["truncated.pt", "garbage.pt", "unsafe.pt"])
def test_resume_from_a_bad_last_pt_is_a_clean_error(checkpoints, tmp_path, name):
    import torch

    from cxrcurate.bench.train import TrainConfig, fit

    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(checkpoints / name, out / "last.pt")
    with pytest.raises(CheckpointError, match="--resume"):
        fit(torch.nn.Linear(2, 1), None, None, np.array([0, 1]), 2, TrainConfig(lr=0.01), out, torch.device("cpu"),
            resume=True, progress=False)


# -- 9: the U-Net finds no lungs where there are none ---------------------------------------------------------------
@pytest.mark.parametrize("pixels", [np.zeros((1, 1), np.uint8), np.zeros((300, 300), np.uint8),
                                    np.full((200, 240), 255, np.uint8), np.zeros((20, 400), np.uint8)])
def test_unet_reports_no_lungs_on_blank_or_tiny_images(pixels):
    from cxrcurate.preprocess.config import SHIPPED_WEIGHTS
    from cxrcurate.preprocess.lungs import LungSegmenter

    result = LungSegmenter(SHIPPED_WEIGHTS).segment(pixels)
    assert result.box is None and not result.mask.any() and result.mask.shape == pixels.shape


# -- 10: minor ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_manifest_mode_follows_the_umask(small, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = write_manifest(read_manifest(small[1]), tmp_path / "x.parquet")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode


def test_multi_frame_images_are_noted(tmp_path, capsys):
    folder = tmp_path / "covid-cxnet/images"
    folder.mkdir(parents=True)
    frames = [Image.fromarray(np.full((32, 32), v, np.uint8)) for v in (20, 200)]
    frames[0].save(folder / "900.gif", save_all=True, append_images=frames[1:])
    _png(folder / "901.png", 1)
    code, _ = _run(capsys, "build-manifest", "--source", f"covid-cxnet={tmp_path / 'covid-cxnet'}", "--out",
                   tmp_path / "o", "-q", "--workers", "1")
    m = read_manifest(tmp_path / "o/manifest.parquet").set_index("image_id")
    assert code == 0 and json.loads(m.loc["covid-cxnet:images/900.gif", "extra"])["frames"] == 2


def test_redirect_into_an_internal_address_is_refused(web, tmp_path, monkeypatch):
    from fakeweb import Reply

    import cxrcurate.fetch.http as http
    from cxrcurate.fetch.http import HttpClient, HttpConfig, check_redirect

    with pytest.raises(FetchError, match="loopback/private/link-local"):
        check_redirect("http://93.184.216.34/a", "http://169.254.169.254/latest/meta-data")
    check_redirect("http://127.0.0.1:1/a", "http://127.0.0.1:2/b")  # a local start may redirect locally
    port = web.url.rsplit(":", 1)[1]
    web.add("/robots.txt", "")
    web.add("/target", "secret")
    web.sequence("/hop", Reply(b"", 302, headers={"Location": f"http://localhost:{port}/target"}))
    monkeypatch.setattr(http, "is_internal_host", lambda host: host == "localhost")  # 127.0.0.1 plays a public host
    with HttpClient(HttpConfig(delay=0, cache_dir=tmp_path / "cache")) as c:
        with pytest.raises(FetchError, match="redirected to"):
            c.get_page(f"{web.url}/hop")
    assert not web.requests_to("/target")


def test_manifests_with_bad_paths_do_not_validate(small):
    table = pq.read_table(small[1])
    rows = table.to_pandas()
    rows.loc[0, "mask_paths"] = None
    rows.at[0, "mask_paths"] = ["../../m.png"]
    with pytest.raises(SchemaError, match="mask_paths"):
        write_manifest(rows, small[1].with_name("x.parquet"))


def test_source_error_for_a_missing_folder_still_names_it(tmp_path):
    from cxrcurate.sources import get_source

    with pytest.raises(SourceError, match="nope"):
        get_source("cohen")(tmp_path / "nope")


def test_a_quote_closed_rows_later_does_not_swallow_the_rows_between(tmp_path):
    from cxrcurate.sources.metadata import read_metadata

    lines = ["filename,patient_id,sex,age,view,label"] + [f"{i}.png,P{i},M,3{i},PA,COVID-19" for i in range(6)]
    lines[2] = '1.png,P1,M,31,"PA,COVID-19'  # opened here ...
    lines[5] = '4.png,P4,M,34,PA",COVID-19'  # ... closed three rows later, in the same column: 6 fields in all
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    meta = read_metadata(tmp_path / "m.csv", "m.csv")
    assert [rid for rid, _ in meta.bad] == ["m.csv#1"] and "line 3: unclosed quote" in meta.bad[0][1]
    assert [r["patient_id"] for _, r in meta.rows] == ["P0", "P2", "P3", "P4", "P5"]
    assert [rid for rid, _ in meta.rows] == ["m.csv#0", "m.csv#2", "m.csv#3", "m.csv#4", "m.csv#5"]
