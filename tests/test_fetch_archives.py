"""Repository sources (codeload zip at a recorded commit, or git) and manual sources (``--check``)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile

import pytest
from fakeweb import image_bytes

from cxrcurate.errors import ManualDownloadRequired
from cxrcurate.fetch import fetch_source
from cxrcurate.fetch.github import repositories
from cxrcurate.fetch.http import HttpConfig
from cxrcurate.fetch.manual import check_download, manual_sources
from cxrcurate.sources import get_source

FAST = HttpConfig(delay=0.0, backoff=0.01, retries=1, timeout=5.0)


@pytest.fixture(autouse=True)
def _no_shipped_digest_lists(monkeypatch):
    """The fake archives below stand in for the recorded commits but hold other files, which the digest lists
    shipped for those commits would rightly reject; these tests are about the archive, so they see no list
    (tests/test_fetch_digests.py covers the lists)."""
    import cxrcurate.fetch.github as github

    monkeypatch.setattr(github, "load_digest_list", lambda source, commit: None)
FIGURE1_CSV = "patientid,finding,view,sex,age\nCOVID-00001,COVID-19,PA,M,60\nCOVID-00002,No finding,AP,F,45\n"


def figure1_zip(top: str, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{top}/README.md", "Figure1 COVID-19 chest X-ray dataset")
        zf.writestr(f"{top}/metadata.csv", FIGURE1_CSV)
        zf.writestr(f"{top}/images/COVID-00001.jpg", image_bytes())
        zf.writestr(f"{top}/images/COVID-00002.png", image_bytes("PNG", shade=7))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_every_repository_source_records_a_full_commit():
    for name, repo in repositories().items():
        assert len(repo.commit) == 40 and int(repo.commit, 16) >= 0, name
        get_source(name)  # a loader reads what the fetch writes


def test_archive_at_the_recorded_commit_in_the_loader_layout(web, tmp_path):
    repo = repositories()["figure1"]
    path = f"/{repo.repo}/zip/{repo.commit}"
    web.add(path, figure1_zip(f"Figure1-COVID-chestxray-dataset-{repo.commit}"), content_type="application/zip")
    out = tmp_path / "figure1"
    report = fetch_source("figure1", out, base_url=web.url, config=FAST, progress=False)
    assert report.ok and report.images == 2, report.summary()
    assert (out / "metadata.csv").exists() and not (out / ".cxrcurate-download").exists()
    version = get_source("figure1")(out).version()
    assert version["commit"] == repo.commit and version["url"].endswith(repo.repo) and "fetched_utc" in version
    records = list(get_source("figure1")(out).parse())
    assert len([r for r in records if type(r).__name__ == "Record"]) == 2
    before = len(web.hits)
    again = fetch_source("figure1", out, base_url=web.url, config=FAST, progress=False)
    assert again.ok and web.hits[before:] == [] and "already at commit" in again.summary()


def test_archive_members_escaping_the_folder_are_refused_and_reported(web, tmp_path):
    repo = repositories()["figure1"]
    top = f"Figure1-COVID-chestxray-dataset-{repo.commit}"
    web.add(f"/{repo.repo}/zip/{repo.commit}",
            figure1_zip(top, {f"{top}/../../../evil.sh": b"rm -rf", "/etc/cron.d/evil": b"x"}),
            content_type="application/zip")
    out = tmp_path / "a" / "figure1"
    report = fetch_source("figure1", out, base_url=web.url, config=FAST, progress=False)
    assert len(report.failed) == 2 and all("refused" in why for _, why in report.failed)
    assert not list(tmp_path.rglob("evil*")) and (out / "images" / "COVID-00001.jpg").exists()


def test_archive_that_is_not_the_loader_layout_is_reported(web, tmp_path):
    repo = repositories()["hannover"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("covid-19-image-repository-x/README.md", "moved everything")
    web.add(f"/{repo.repo}/zip/{repo.commit}", buf.getvalue(), content_type="application/zip")
    report = fetch_source("hannover", tmp_path / "h", base_url=web.url, config=FAST, progress=False)
    assert not report.ok and "loader cannot read it" in report.failed[0][1]


def test_dry_run_names_url_and_commit(web, tmp_path):
    report = fetch_source("cohen", tmp_path / "c", base_url=web.url, config=FAST, progress=False, dry_run=True)
    assert repositories()["cohen"].commit in report.summary() and web.hits == []


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_method_checks_out_the_exact_commit(tmp_path):
    upstream = tmp_path / "upstream" / "agchung" / "Figure1-COVID-chestxray-dataset.git"
    work = tmp_path / "work"
    work.mkdir()
    with zipfile.ZipFile(io.BytesIO(figure1_zip("t"))) as zf:
        zf.extractall(work)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def git(*args, cwd):
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    git("init", "-q", cwd=work / "t")
    git("add", ".", cwd=work / "t")
    git("commit", "-q", "-m", "data", cwd=work / "t")
    sha = git("rev-parse", "HEAD", cwd=work / "t").strip()
    upstream.parent.mkdir(parents=True)
    git("clone", "-q", "--bare", str(work / "t"), str(upstream), cwd=tmp_path)
    out = tmp_path / "figure1"
    report = fetch_source("figure1", out, base_url=f"file://{tmp_path / 'upstream'}", method="git", commit=sha,
                          config=FAST, progress=False)
    assert report.ok, report.summary()
    version = get_source("figure1")(out).version()
    assert version["commit"] == sha and json.loads((out / ".cxrcurate-source.json").read_text())["method"] == "git"


# -- manual sources -------------------------------------------------------------------------------------------
def test_manual_sources_raise_with_url_and_layout(tmp_path):
    for name, info in manual_sources().items():
        with pytest.raises(ManualDownloadRequired) as err:
            fetch_source(name, tmp_path / name)
        assert info.url in str(err.value) and get_source(name).layout.strip().split()[0] in str(err.value)


def _montgomery(root, normal: int, tb: int) -> None:
    (root / "CXR_png").mkdir(parents=True)
    (root / "ClinicalReadings").mkdir()
    for i in range(1, normal + tb + 1):
        stem = f"MCUCXR_{i:04d}_{0 if i <= normal else 1}"
        (root / "CXR_png" / f"{stem}.png").write_bytes(b"")  # names and counts are checked, not pixels
        (root / "ClinicalReadings" / f"{stem}.txt").write_text("Patient's Sex: M\nPatient's Age: 047Y\nnormal\n")


def test_check_of_a_complete_manual_download(tmp_path):
    _montgomery(tmp_path / "MontgomerySet", 80, 58)
    result = check_download("montgomery", tmp_path / "MontgomerySet")
    assert result.ok and result.lines[-1].strip() == "OK: complete"


def test_check_says_what_is_missing(tmp_path, capsys):
    from test_fetch_sites import cli

    _montgomery(tmp_path / "m", 80, 50)
    (tmp_path / "m" / "CXR_png" / "notes.docx").write_bytes(b"x")
    assert cli("--source", "montgomery", "--check", str(tmp_path / "m")) == 3  # the check failed
    out = capsys.readouterr().out
    assert "expected 138 images, found 130 (8 missing)" in out and "other: expected 58, found 50" in out
    assert "not_image: 1" in out and "INCOMPLETE" in out
    assert cli("--source", "kermany", "--check", str(tmp_path / "nothing")) == 3
    assert "is not a folder" in capsys.readouterr().out
