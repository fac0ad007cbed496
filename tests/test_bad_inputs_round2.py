"""Bad inputs, round 2 (issue 23), by class: memory, blocking, CSV dialect, cache trust, downloads. Each case is
driven through the CLI (``cxrcurate.cli.main``) and ends in a dropped-table row with its reason or a one-line error
naming the file, row or option; nothing hangs, nothing is read whole that need not be.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tracemalloc

import pandas as pd
import pytest
from fakefiles import rle_dicom
from test_bad_inputs import _cohen, _png, _run

from cxrcurate.cli import main
from cxrcurate.manifest import read_manifest

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs and signals")


@pytest.fixture(autouse=True)
def no_hang():
    """A case that blocks fails after 30 s instead of hanging the suite."""
    def fail(*_):
        raise TimeoutError("blocked: the command waited on a FIFO or an endless read")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def own_key(tmp_path, monkeypatch):
    """The fingerprint cache's signing key lives in this test's own cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _build(capsys, folder, out, source="covid-cxnet", *extra):
    return _run(capsys, "build-manifest", "--source", f"{source}={folder}", "--out", out, "-q", "--workers", "1",
                *extra)


def _dropped(out):
    return pd.read_parquet(out / "manifest.dropped.parquet")


def _small_manifest(capsys, tmp_path, n=3):
    folder = tmp_path / "covid-cxnet"
    for i in range(n):
        _png(folder / "images" / f"90{i}.png", 40 + i)
    assert _build(capsys, folder, tmp_path / "o")[0] == 0
    return folder, tmp_path / "o" / "manifest.parquet"


# -- memory -----------------------------------------------------------------------------------------------------------
def test_a_sparse_huge_png_is_refused_unread_naming_the_file_and_limit(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "covid-cxnet"
    _png(folder / "images/900.png", 1)
    _png(folder / "images/901.png", 2)
    with open(folder / "images/901.png", "r+b") as fh:
        fh.truncate(3 * 2**20)  # a valid PNG followed by a hole: 3 MiB on paper, nothing on disk
    monkeypatch.setenv("CXRCURATE_MAX_FILE_MB", "2")  # the same refusal a 1.5 GB file meets at the 512 MiB default
    code, _ = _build(capsys, folder, tmp_path / "o")
    assert code == 0
    d = _dropped(tmp_path / "o").set_index("path")
    detail = d.loc["covid-cxnet/images/901.png", "detail"]
    assert d.loc["covid-cxnet/images/901.png", "reason"] == "unreadable"
    assert "901.png" in detail and "over the limit of 2,097,152" in detail and "CXRCURATE_MAX_FILE_MB" in detail
    assert len(read_manifest(tmp_path / "o/manifest.parquet")) == 1


def test_a_bad_limit_in_the_environment_is_a_usage_error(tmp_path, capsys, monkeypatch):
    _png(tmp_path / "covid-cxnet/images/900.png", 1)
    monkeypatch.setenv("CXRCURATE_MAX_FILE_MB", "lots")
    code, err = _build(capsys, tmp_path / "covid-cxnet", tmp_path / "o")
    assert code == 2 and "CXRCURATE_MAX_FILE_MB='lots'" in err


def test_a_multi_frame_rle_dicom_has_only_its_first_frame_decoded(tmp_path, capsys):
    folder = tmp_path / "covid-cxnet"
    rle_dicom(folder / "images/900.dcm", frames=200)  # 100 MB if every frame were decoded
    tracemalloc.start()
    try:
        code, _ = _build(capsys, folder, tmp_path / "o")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0
    row = read_manifest(tmp_path / "o/manifest.parquet").iloc[0]
    assert json.loads(row["extra"])["frames"] == 200 and (row["width"], row["height"]) == (512, 512)
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB: more than the first frame was decoded"


def test_out_of_memory_while_decoding_drops_that_file_naming_it(tmp_path, capsys, monkeypatch):
    import cxrcurate.imageio as imageio

    folder = tmp_path / "covid-cxnet"
    _png(folder / "images/900.png", 1)
    _png(folder / "images/901.png", 2)
    real = imageio._decode_pillow

    def starved(fh, name, max_pixels):
        if name.endswith("901.png"):
            raise MemoryError
        return real(fh, name, max_pixels)

    monkeypatch.setattr(imageio, "_decode_pillow", starved)
    code, err = _build(capsys, folder, tmp_path / "o")
    assert code == 0 and "unexpected" not in err
    d = _dropped(tmp_path / "o").set_index("path")
    assert d.loc["covid-cxnet/images/901.png", "reason"] == "unreadable"
    assert "901.png: out of memory" in d.loc["covid-cxnet/images/901.png", "detail"]


@pytest.mark.parametrize("argv, option, span", [
    (["preprocess", "M", "--size", "100000"], "--size", "8..4096"),
    (["show", "M", "x:y", "-o", "p.png", "--size", "0"], "--size", "8..4096"),
    (["preprocess", "M", "--workers", "0"], "--workers", "1..512"),
    (["preprocess", "M", "--clahe-clip", "nan"], "--clahe-clip", "0.01..1000"),
    (["dedup", "M", "--knn", "100000"], "--knn", "1..100"),
    (["build-manifest", "--sample", "--out", "o", "--workers", "-3"], "--workers", "1..512"),
    (["train-lungs", "M", "--out", "w.safetensors", "--batch-size", "1e9"], "--batch-size", "1..4096"),
])
def test_numeric_options_out_of_range_are_refused_with_the_range(tmp_path, capsys, argv, option, span):
    argv = [str(tmp_path / "m.parquet") if a == "M" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        _run(capsys, *argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {option}" in err and span in err


# -- blocking ---------------------------------------------------------------------------------------------------------
def test_a_fifo_as_metadata_csv_is_refused_without_blocking(tmp_path, capsys):
    _cohen(tmp_path / "cohen", ["a"])
    (tmp_path / "cohen/metadata.csv").unlink()
    os.mkfifo(tmp_path / "cohen/metadata.csv")
    code, err = _build(capsys, tmp_path / "cohen", tmp_path / "o", "cohen")
    assert code == 1 and "metadata.csv: a FIFO (named pipe), not a regular file" in err


def test_a_fifo_as_the_source_record_does_not_block_the_build(tmp_path, capsys):
    _png(tmp_path / "covid-cxnet/images/900.png", 1)
    os.mkfifo(tmp_path / "covid-cxnet/.cxrcurate-source.json")
    code, err = _build(capsys, tmp_path / "covid-cxnet", tmp_path / "o")
    assert code == 1 and ".cxrcurate-source.json: a FIFO" in err


def test_a_fifo_where_the_manifest_names_an_image_is_refused_by_every_command(tmp_path, capsys):
    folder, manifest = _small_manifest(capsys, tmp_path)
    (folder / "images/901.png").unlink()
    os.mkfifo(folder / "images/901.png")
    code, err = _run(capsys, "show", manifest, "covid-cxnet:images/901.png", "-o", tmp_path / "p.png", "--lungs",
                     "none", "--data-root", tmp_path)
    assert code == 1 and "901.png: a FIFO (named pipe), not a regular file" in err
    code = main([str(a) for a in ("preprocess", manifest, "--cache", tmp_path / "c", "--lungs", "none", "--workers",
                                  "1", "-q", "--data-root", tmp_path)])
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.err and "901.png: a FIFO (named pipe)" in out.out
    code, err = _run(capsys, "dedup", manifest, "-q", "--out", tmp_path / "d.parquet", "--workers", "1",
                     "--data-root", tmp_path)
    assert code == 1 and "901.png" in err


def test_a_device_is_refused_like_a_fifo(tmp_path, capsys):
    from cxrcurate.errors import ImageDecodeError
    from cxrcurate.imageio import decode_image

    with pytest.raises(ImageDecodeError, match="/dev/null: a device, not a regular file"):
        decode_image("/dev/null")  # /dev/zero or a tape would be read forever; /dev/null shows the refusal safely


# -- CSV dialect ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c", "\u2029", "\x1e"])
def test_unicode_line_separators_inside_a_field_do_not_split_the_row(tmp_path, capsys, separator):
    notes = [f"fever{separator}cough", "short", "after"]
    _cohen(tmp_path / "cohen", notes)
    code, _ = _build(capsys, tmp_path / "cohen", tmp_path / "o", "cohen")
    assert code == 0
    assert _dropped(tmp_path / "o").empty  # no phantom row
    m = read_manifest(tmp_path / "o/manifest.parquet").set_index("image_id")
    assert json.loads(m.loc["cohen:images/img0.png", "extra"])["clinical_notes"] == notes[0]  # not cut
    assert m.loc["cohen:images/img2.png", "source_record"] == "metadata.csv#2"  # not shifted
    reference = pd.read_csv(tmp_path / "cohen/metadata.csv")
    assert len(reference) == len(m) == 3 and reference.loc[0, "clinical_notes"] == notes[0]


@pytest.mark.parametrize("twin", ["finding", "Finding", " finding\u200b"])
def test_a_header_naming_a_column_twice_is_refused_naming_it(tmp_path, capsys, twin):
    _cohen(tmp_path / "cohen", ["a"], header=f"{twin},patientid,offset,sex,age,finding,survival,view,modality,date,"
                                             "location,folder,filename,doi,url,license,clinical_notes,other_notes")
    code, err = _build(capsys, tmp_path / "cohen", tmp_path / "o", "cohen")
    assert code == 1 and "column 'finding'" in err and "columns 1 and 6" in err and "ambiguous" in err
    assert not (tmp_path / "o/manifest.parquet").exists()


def test_a_utf16_metadata_csv_with_its_bom_is_read(tmp_path, capsys):
    folder = tmp_path / "covid-cxnet"
    for i in range(2):
        _png(folder / "images" / f"{260 + i}.png", 30 + i)
    rows = ["filename,patient_id,sex,age,view,label", "260.png,P0,M,30,PA,COVID-19", "261.png,P1,F,31,PA,normal"]
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-16")  # Excel's "Unicode text"
    assert _build(capsys, folder, tmp_path / "o")[0] == 0
    m = read_manifest(tmp_path / "o/manifest.parquet").set_index("image_id")
    assert m.loc["covid-cxnet:images/261.png", "patient_id"] == "covid-cxnet:P1"


def test_hannover_offset_junk_drops_that_row_not_the_build(tmp_path, capsys):
    root = tmp_path / "hannover"
    for i in range(4):
        _png(root / "png" / f"aaaa000{i}.png", i)
    offsets = ["-2", "n/a", "inf", "3"]
    rows = ["patient_id,image_id,sex,admission_offset,projection"]
    rows += [f"p{i},aaaa000{i},m,{offsets[i]},pa" for i in range(4)]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    code, err = _build(capsys, root, tmp_path / "o", "hannover")
    assert code == 0, err
    d = _dropped(tmp_path / "o").set_index("source_record")
    assert d["reason"].to_dict() == {"data.csv#1": "bad_value", "data.csv#2": "bad_value"}
    assert "admission_offset 'n/a' is not a number" in d.loc["data.csv#1", "detail"]
    assert d.loc["data.csv#1", "path"] == "hannover/png/aaaa0001.png"
    m = read_manifest(tmp_path / "o/manifest.parquet").set_index("source_record")
    assert m["label"].to_dict() == {"data.csv#0": "covid19", "data.csv#3": "unknown"}


# -- cache trust ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit", ["pixel_sha256", "width", "resigned", "garbage"])
def test_an_edited_fingerprint_cache_is_not_trusted(tmp_path, capsys, edit):
    folder, manifest = _small_manifest(capsys, tmp_path)
    before = read_manifest(manifest).set_index("image_id")
    cache = tmp_path / "o/.fingerprints.jsonl"
    lines = [json.loads(x) for x in cache.read_text().splitlines()]
    victim = next(e for e in lines if e["file"].endswith("901.png"))
    if edit == "pixel_sha256":  # make 901 a "copy" of 900
        victim["fp"]["pixel_sha256"] = next(e for e in lines if e["file"].endswith("900.png"))["fp"]["pixel_sha256"]
    elif edit == "width":
        victim["fp"]["width"] = 4096
    elif edit == "resigned":  # a signature made with a key that is not this user's
        victim["fp"]["phash"] = 0
        body = {k: v for k, v in victim.items() if k != "mac"}
        victim["mac"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    else:
        victim["fp"] = {"width": "x"}
    cache.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert _build(capsys, folder, tmp_path / "o")[0] == 0
    after = read_manifest(manifest).set_index("image_id")
    cols = ["width", "height", "pixel_sha256", "phash", "file_sha256"]
    pd.testing.assert_frame_equal(after[cols], before[cols])


def test_a_fifo_as_the_fingerprint_cache_is_refused_naming_it(tmp_path, capsys):
    _png(tmp_path / "covid-cxnet/images/900.png", 1)
    (tmp_path / "o").mkdir()
    os.mkfifo(tmp_path / "o/.fingerprints.jsonl")
    code, err = _build(capsys, tmp_path / "covid-cxnet", tmp_path / "o")
    assert code == 1 and ".fingerprints.jsonl: the fingerprint cache is not a regular file; delete it" in err


def test_an_untouched_cache_is_reused(tmp_path, capsys, monkeypatch):
    import cxrcurate.build as build

    folder, manifest = _small_manifest(capsys, tmp_path)
    monkeypatch.setattr(build, "fingerprint_decoded", lambda *a, **k: pytest.fail("decoded again"))
    assert _build(capsys, folder, tmp_path / "o")[0] == 0


# -- downloads --------------------------------------------------------------------------------------------------------
def _chunked(total: int, status: int = 200, content_type: str = "text/html", head: bytes = b""):
    """A handler streaming ``total`` bytes chunked (no Content-Length); ``sent`` counts what the client took."""
    sent = {"bytes": 0}

    def handler(h):
        h.protocol_version = "HTTP/1.1"
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        block = b"<!-- padding -->" * 4096
        try:
            data = head
            while sent["bytes"] < total:
                data = data or block
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                sent["bytes"] += len(data)
                data = b""
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up: what it refused to read was never sent
        h.close_connection = True

    return handler, sent


def _sirm(capsys, web, out):
    """``cxrcurate fetch --source sirm`` against the local site: ``(exit code, stdout + stderr)``."""
    code = main(["fetch", "--source", "sirm", "--out", str(out), "--base-url", web.url, "--delay", "0", "-q"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


def test_a_chunked_error_page_is_read_only_up_to_its_cap(web, tmp_path, capsys):
    web.add("/robots.txt", "")
    handler, sent = _chunked(200 * 2**20, status=403)
    web.handler("/category/senza-categoria/covid-19/", handler)
    code, said = _sirm(capsys, web, tmp_path / "s")
    assert code == 1 and "HTTP 403" in said
    assert sent["bytes"] < 40 * 2**20, f"{sent['bytes']:,} bytes of a 200 MiB error page were read"


def test_a_huge_chunked_robots_txt_is_read_only_up_to_its_cap_and_still_obeyed(web, tmp_path, capsys):
    handler, sent = _chunked(200 * 2**20, content_type="text/plain",
                             head=b"User-agent: *\nDisallow: /category/\n")
    web.handler("/robots.txt", handler)
    code, said = _sirm(capsys, web, tmp_path / "s")
    assert code == 1 and "robots.txt" in said
    assert not web.requests_to("/category/")
    assert sent["bytes"] < 40 * 2**20, f"{sent['bytes']:,} bytes of a 200 MiB robots.txt were read"


def _kermany(root, normal: int, pneumonia: int, archive: bytes):
    for n in range(normal):
        f = root / "chest_xray/train/NORMAL" / f"IM-{n:04d}-0001.jpeg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    for n in range(pneumonia):
        f = root / "chest_xray/train/PNEUMONIA" / f"person{n}_bacteria_1.jpeg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    (root / "ChestXRay2017.zip").write_bytes(archive)


def test_an_incomplete_first_download_does_not_pin_its_digest(tmp_path, capsys):
    root = tmp_path / "kermany"
    # published counts 1,583 normal + 4,273 pneumonia (Kermany et al., Mendeley v2; sources/kermany.py)
    _kermany(root, 1_000, 2_000, b"PK truncated")
    code = main(["fetch", "--source", "kermany", "--check", str(root)])
    out = capsys.readouterr().out
    assert code == 3 and "INCOMPLETE" in out and "not recorded" in out  # 3: a check that failed
    _kermany(root, 1_583, 4_273, b"PK the complete archive")
    code = main(["fetch", "--source", "kermany", "--check", str(root)])
    assert code == 0 and "OK: complete" in capsys.readouterr().out
    pinned = json.loads((root / ".cxrcurate-source.json").read_text())["archives"]["ChestXRay2017.zip"]
    assert pinned["sha256"] == hashlib.sha256(b"PK the complete archive").hexdigest()


@pytest.mark.parametrize("commit", ["zz;rm -rf /", "../../etc/passwd", "main", "6a42423", "g" * 40])
def test_a_commit_that_is_not_a_full_id_is_refused_before_any_request(tmp_path, capsys, commit):
    with pytest.raises(SystemExit) as exit_:
        _run(capsys, "fetch", "--source", "hannover", "--out", tmp_path / "h", "--commit", commit)
    assert exit_.value.code == 2 and "not a full commit id" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_a_recorded_commit_that_is_not_an_id_never_reaches_a_path(tmp_path, capsys):
    root = tmp_path / "hannover"
    _png(root / "png/aaaa0001.png", 1)
    (root / "data.csv").write_text("patient_id,image_id,sex,admission_offset,projection\np1,aaaa0001,m,0,pa\n")
    (root / ".cxrcurate-source.json").write_text(json.dumps({"commit": "../../../../x"}))
    code = main(["fetch", "--source", "hannover", "--check", str(root)])
    assert code == 3 and "not a full commit id" in capsys.readouterr().out
