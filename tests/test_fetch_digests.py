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
    assert cli("--source", "kermany", "--check", str(root)) == 3
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if str(archive) in line)
    assert first in line and hashlib.sha256(archive.read_bytes()).hexdigest() in line
    assert "https://data.mendeley.com/datasets/rscbjbr9sj/2" in line and "download it again" in line


def test_a_check_without_the_archives_says_so_and_still_passes(tmp_path):
    root = _kermany_copy(tmp_path / "k")
    result = check_download("kermany", root)
    assert result.ok and any("ChestXRay2017.zip" in line and "not hashed" in line for line in result.lines)
    assert not (root / ".cxrcurate-source.json").exists()


# -- repository sources: per-file digest lists ----------------------------------------------------------------
def _figure1_site(web):
    from test_fetch_archives import figure1_zip

    from cxrcurate.fetch.github import repositories

    repo = repositories()["figure1"]
    web.add(f"/{repo.repo}/zip/{repo.commit}", figure1_zip(f"Figure1-COVID-chestxray-dataset-{repo.commit}"),
            content_type="application/zip")
    return repo


def _lists_in(monkeypatch, folder: Path) -> None:
    """Digest lists come from ``folder`` instead of the ones shipped with cxrcurate."""
    import cxrcurate.fetch.github as github
    from cxrcurate.fetch.digests import load_digest_list

    monkeypatch.setattr(github, "load_digest_list", lambda source, commit: load_digest_list(source, commit, folder))


def test_files_that_differ_from_the_digest_list_are_rejected_and_a_rerun_fetches_again(web, tmp_path, monkeypatch):
    from fakeweb import image_bytes
    from test_fetch_archives import FAST

    from cxrcurate.fetch import fetch_source
    from cxrcurate.fetch.digests import DigestList, digest_list_name, write_digest_list
    from cxrcurate.sources import get_source

    repo = _figure1_site(web)
    right = hashlib.sha256(image_bytes()).hexdigest()  # images/COVID-00001.jpg as the fake archive holds it
    lists = tmp_path / "lists"
    write_digest_list(lists / digest_list_name("figure1", repo.commit), DigestList(
        "figure1", repo.repo, repo.commit, "test", {"images/COVID-00001.jpg": right,
                                                    "images/COVID-00002.png": "0" * 64,
                                                    "images/COVID-00003.jpg": "1" * 64}))
    _lists_in(monkeypatch, lists)
    out = tmp_path / "figure1"
    report = fetch_source("figure1", out, base_url=web.url, config=FAST, progress=False)
    failed = dict(report.failed)
    assert len(failed) == 2, report.summary()
    bad = failed[str(out / "images/COVID-00002.png")]
    assert "0" * 64 in bad and hashlib.sha256(image_bytes("PNG", shade=7)).hexdigest() in bad
    assert "not fetched" in failed[str(out / "images/COVID-00003.jpg")]
    assert (out / ".cxrcurate-rejected/images/COVID-00002.png").exists()
    assert not (out / "images/COVID-00002.png").exists()
    assert "1 of 3 image files match" in report.summary()
    dropped = [i for i in get_source("figure1")(out).parse() if type(i).__name__ == "Dropped"]
    assert [d.reason for d in dropped if "COVID-00002" in (d.detail or "")] == ["row_without_file"]
    assert json.loads((out / ".cxrcurate-source.json").read_text())["files_failed"] == 2
    before = len(web.hits)
    again = fetch_source("figure1", out, base_url=web.url, config=FAST, progress=False)
    assert len(web.hits) > before and "already at commit" not in again.summary()  # not taken as complete


def test_write_digests_then_a_fetch_of_that_commit_is_verified(web, tmp_path, monkeypatch, capsys):
    from test_fetch_archives import FAST
    from test_fetch_sites import cli

    from cxrcurate.fetch import fetch_source
    from cxrcurate.fetch.digests import digest_list_name, load_digest_list

    repo = _figure1_site(web)
    lists = tmp_path / "lists"
    _lists_in(monkeypatch, lists)
    first = fetch_source("figure1", tmp_path / "a", base_url=web.url, config=FAST, progress=False)
    assert first.ok and "no digest list for figure1" in first.summary()
    dest = lists / digest_list_name("figure1", repo.commit)
    assert cli("--source", "figure1", "--write-digests", str(tmp_path / "a"), "--out", str(dest)) == 0
    assert "2 image files" in capsys.readouterr().out
    listed = load_digest_list("figure1", repo.commit, lists)
    assert set(listed.files) == {"images/COVID-00001.jpg", "images/COVID-00002.png"} and listed.repo == repo.repo
    second = fetch_source("figure1", tmp_path / "b", base_url=web.url, config=FAST, progress=False)
    assert second.ok and "2 of 2 image files match" in second.summary()
    (tmp_path / "b/images/COVID-00001.jpg").write_bytes(b"changed after the fetch")
    monkeypatch.setattr("cxrcurate.fetch.manual.load_digest_list", lambda s, c: load_digest_list(s, c, lists))
    result = check_download("figure1", tmp_path / "b")
    assert not result.ok and any("COVID-00001.jpg" in line and listed.files["images/COVID-00001.jpg"] in line
                                 for line in result.lines)


def test_write_digests_needs_a_known_commit(tmp_path, capsys):
    from test_fetch_sites import cli

    (tmp_path / "images").mkdir()
    (tmp_path / "images/a.png").write_bytes(b"x")
    assert cli("--source", "figure1", "--write-digests", str(tmp_path)) == 2
    assert "--commit SHA" in capsys.readouterr().out


def test_shipped_lists_name_each_source_s_pinned_commit_and_none_is_guessed():
    from importlib.resources import files

    from cxrcurate.fetch.digests import load_digest_list
    from cxrcurate.fetch.github import repositories

    shipped = sorted(p.name for p in files("cxrcurate.sources").joinpath("digests").iterdir()
                     if p.name.endswith(".csv.gz"))
    assert shipped, "digest lists are shipped"
    for name in shipped:
        source = name.rsplit("-", 1)[0]
        digests = load_digest_list(source, repositories()[source].commit)
        assert digests is not None and digests.repo == repositories()[source].repo and digests.files, name
    # the shared Cohen copy is from another fork and commit than the one fetched: no list for it
    assert load_digest_list("cohen", repositories()["cohen"].commit) is None


def test_shipped_lists_agree_with_the_untouched_originals(shared_data):
    """``originals/`` holds a few files as published; each one a list names must have that list's digest."""
    import csv

    from cxrcurate.fetch.digests import load_digest_list
    from cxrcurate.fetch.download import file_digests
    from cxrcurate.fetch.github import repositories

    rows = {r["path"]: r for r in csv.DictReader(open(shared_data / "ORIGINALS.csv"))}
    checked = 0
    for original in sorted((shared_data / "originals").rglob("*")):
        matches = [r for r in rows.values() if original.is_file() and r["repo_path"].endswith("/" + original.name)
                   and r["repo"].endswith("/" + original.parent.name)]
        for r in matches:
            source = next((s for s, rec in repositories().items() if rec.repo == r["repo"]), None)
            digests = load_digest_list(source, r["commit"]) if source else None
            if digests is not None:
                assert digests.files[r["repo_path"]] == file_digests(original)["sha256"], original
                checked += 1
    assert checked >= 3
