"""Hash checks: manual archives (``fetch --check``) and the per-file digest lists of repository sources."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from cxrcurate.fetch.manual import check_archives, check_download, manual_sources

NIH_BOX = "https://nihcc.app.box.com/v/ChestXray-NIHCC"


def _kermany_copy(root: Path) -> Path:
    """A complete Kermany copy by names and counts (1,583 normal + 4,273 pneumonia; pixels are not read)."""
    for n in range(1_583):
        f = root / "chest_xray" / "train" / "NORMAL" / f"IM-{n:04d}-0001.jpeg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    for n in range(4_273):
        f = root / "chest_xray" / "train" / "PNEUMONIA" / f"person{n}_bacteria_1.jpeg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    return root


def test_nih_archive_with_another_md5_is_an_error_naming_file_digests_and_fix(tmp_path):
    archive = tmp_path / "images_001.tar.gz"
    archive.write_bytes(b"an HTML error page saved as the archive")
    ok, lines = check_archives("nih-cxr14", tmp_path, manual_sources()["nih-cxr14"])
    assert not ok
    bad = [line for line in lines if str(archive) in line]
    assert len(bad) == 1
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    assert "fe8ed0a6961412fddcbb3603c11b3698" in bad[0] and actual in bad[0] and NIH_BOX in bad[0]
    assert "images_012.tar.gz" in lines[-1] and "not hashed" in lines[-1]  # the others are absent, not failures
    assert not (tmp_path / ".cxrcurate-source.json").exists()  # a wrong file is never pinned


def test_an_archive_matching_its_published_digest_is_verified_and_pinned(tmp_path):
    data = b"the real archive, as far as this test knows"
    (tmp_path / "images_001.tar.gz").write_bytes(data)
    spec = dataclasses.replace(manual_sources()["nih-cxr14"],
                               archives={"images_001.tar.gz": f"md5:{hashlib.md5(data).hexdigest()}"})
    ok, lines = check_archives("nih-cxr14", tmp_path, spec)
    assert ok and "matches the published digest" in lines[0]
    pinned = json.loads((tmp_path / ".cxrcurate-source.json").read_text())["archives"]["images_001.tar.gz"]
    assert pinned["sha256"] == hashlib.sha256(data).hexdigest() and pinned["verified"] == "md5 (published)"


def test_kermany_check_pins_the_first_archive_and_reports_a_changed_one(tmp_path, capsys):
    from test_fetch_sites import cli

    root = _kermany_copy(tmp_path / "kermany")
    archive = root / "ChestXRay2017.zip"
    archive.write_bytes(b"PK first copy")
    first = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert cli("--source", "kermany", "--check", str(root)) == 0
    out = capsys.readouterr().out
    assert first in out and "recorded in .cxrcurate-source.json" in out and "OK: complete" in out
    assert json.loads((root / ".cxrcurate-source.json").read_text())["archives"]["ChestXRay2017.zip"]["sha256"] == first

    assert cli("--source", "kermany", "--check", str(root)) == 0  # the same file again: matches its record
    assert "matches the sha256 recorded by the first check" in capsys.readouterr().out

    archive.write_bytes(b"PK a different copy")
    assert cli("--source", "kermany", "--check", str(root)) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if str(archive) in line)
    assert first in line and hashlib.sha256(archive.read_bytes()).hexdigest() in line
    assert "https://data.mendeley.com/datasets/rscbjbr9sj/2" in line and "download it again" in line


def test_a_check_without_the_archives_says_so_and_still_passes(tmp_path):
    root = _kermany_copy(tmp_path / "k")
    result = check_download("kermany", root)
    assert result.ok and any("ChestXRay2017.zip" in line and "not hashed" in line for line in result.lines)
    assert not (root / ".cxrcurate-source.json").exists()
