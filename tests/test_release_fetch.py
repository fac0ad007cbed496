"""`cxrcurate fetch --release FOLDER --out ROOT`: every repository a release names, at the commit it names, into the
layout it names, then checked against the release; served from 127.0.0.1 at the recorded commits' codeload URLs."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from fakerelease import write_release

from cxrcurate.cli import main
from cxrcurate.errors import CxrcurateError, UnknownNameError
from cxrcurate.release.fetch import fetch_release, release_repositories

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "manifests" / "v1"
SAMPLE = ROOT / "cxrcurate" / "sample"
# The pins of release v1 as its card states them (manifests/v1/README.md, "Sources and licenses"): Cohen's rows come
# from the fork s-mostafa-a/covid-chestxray-dataset, not from ieee8023/covid-chestxray-dataset that
# `fetch --source cohen` pins.
V1 = {"actualmed": ("agchung/Actualmed-COVID-chestxray-dataset", "27240dd8dec9454bc97f9f3c0c432ef434de2517"),
      "cohen": ("s-mostafa-a/covid-chestxray-dataset", "173779df5bb2ab06fa1dc7f84ee9a212c759464b"),
      "covid-cxnet": ("armiro/COVID-CXNet", "3ade488b3828705706fc5f58c0667421d8b04a01"),
      "figure1": ("agchung/Figure1-COVID-chestxray-dataset", "95bb569e55f4110d3b734c0f355340e04e16989a"),
      "hannover": ("ml-workgroup/covid-19-image-repository", "ad7ab099b425f16e06bba22322336b7d6a732965")}


@pytest.fixture(autouse=True)
def _no_shipped_digest_lists(monkeypatch):
    """The archives below hold the package's sample (resized copies), which the digest lists of the original files
    would rightly reject; here the release's own file_sha256 is the check."""
    import cxrcurate.fetch.github as github

    monkeypatch.setattr(github, "load_digest_list", lambda source, commit: None)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _archive(source: str, top: str, changed: str | None = None) -> bytes:
    """A codeload-style zip (one ``<repo>-<commit>/`` top folder) of the sample's copy of ``source``, which is laid
    out as the repository (cxrcurate/sample/README.md)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted((SAMPLE / source).rglob("*")):
            if f.is_file():
                rel = f.relative_to(SAMPLE / source).as_posix()
                zf.writestr(f"{top}/{rel}", f.read_bytes() + (b"x" if rel == changed else b""))
    return buf.getvalue()


def _small_release(tmp_path: Path) -> Path:
    """Release v1's own rows for the files the sample holds (real repositories, commits and paths), their
    file_sha256 set to the sample files' (which stand for the originals here)."""
    df = pd.read_parquet(RELEASE / "open.parquet")
    df = df[df["source"].isin(["cohen", "hannover"])]
    df = df[[(SAMPLE / p).is_file() for p in df["path"]]].copy()
    df["file_sha256"] = [_sha(SAMPLE / p) for p in df["path"]]
    return write_release(tmp_path / "release", df)


def _serve(web, changed: str | None = None) -> None:
    for source in ("cohen", "hannover"):
        repo, commit = V1[source]
        web.add(f"/{repo}/zip/{commit}", _archive(source, f"{repo.split('/')[1]}-{commit}", changed),
                content_type="application/zip")


def test_the_release_names_its_repositories_and_commits():
    pins = {r.source: (r.repository, r.commit) for r in release_repositories(RELEASE)}
    assert pins == V1
    card = (RELEASE / "README.md").read_text()
    for source, (repo, commit) in V1.items():
        assert f"| {source} | {repo} | {commit} |" in card


def test_fetch_release_fills_the_release_layout_at_its_commits(web, tmp_path, capsys):
    release = _small_release(tmp_path)
    _serve(web)
    root = tmp_path / "raw"
    code = main(["fetch", "--release", str(release), "--out", str(root), "--base-url", web.url, "--delay", "0",
                 "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = pd.read_parquet(release / "open.parquet")
    assert all((root / p).is_file() for p in rows["path"])
    assert "OK" in out and f"materialise --release {release} --root {root}" in out
    cohen = json.loads((root / "cohen" / ".cxrcurate-source.json").read_text())
    assert cohen["url"].endswith(V1["cohen"][0]) and cohen["commit"] == V1["cohen"][1]  # the fork, not ieee8023
    assert {h.path for h in web.hits} - {"/robots.txt"} == {f"/{repo}/zip/{commit}" for repo, commit in
                                          (V1["cohen"], V1["hannover"])}
    before = len(web.hits)
    assert main(["fetch", "--release", str(release), "--out", str(root), "--base-url", web.url, "-q"]) == 0
    assert len(web.hits) == before  # already at the commits: nothing fetched again


def test_a_file_that_is_not_the_releases_fails_the_fetch(web, tmp_path, capsys):
    release = _small_release(tmp_path)
    _serve(web, changed="images/19abe1f3.jpg")
    result = fetch_release(release, tmp_path / "raw", base_url=web.url, progress=False)
    assert not result.ok and result.verify.changed == ["cohen/images/19abe1f3.jpg"]


def test_a_folder_holding_another_commit_is_not_mixed(web, tmp_path):
    release = _small_release(tmp_path)
    _serve(web)
    other = tmp_path / "raw" / "cohen"
    other.mkdir(parents=True)
    (other / ".cxrcurate-source.json").write_text(json.dumps({
        "source": "cohen", "url": "https://github.com/ieee8023/covid-chestxray-dataset",
        "commit": "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8"}))
    result = fetch_release(release, tmp_path / "raw", sources=["cohen"], base_url=web.url, progress=False)
    assert not result.ok
    (what, why), = result.reports[0].failed
    assert "ieee8023/covid-chestxray-dataset at 6a4242344473" in why and "s-mostafa-a" in why and "move" in why
    assert not [h for h in web.hits if "/zip/" in h.path]


def test_one_source_of_a_release_and_its_typos(web, tmp_path):
    release = _small_release(tmp_path)
    _serve(web)
    result = fetch_release(release, tmp_path / "raw", sources=["hannover"], base_url=web.url, progress=False)
    assert result.ok and result.verify.checked == 8 and not (tmp_path / "raw" / "cohen").exists()
    with pytest.raises(UnknownNameError, match="Did you mean 'hannover'"):
        fetch_release(release, tmp_path / "raw", sources=["hanover"], base_url=web.url)


def test_a_release_that_does_not_name_its_repositories_is_refused(tmp_path, capsys):
    folder = tmp_path / "rel"
    folder.mkdir()
    pd.read_parquet(RELEASE / "open.parquet").drop(columns=["commit"]).head(3).to_parquet(folder / "open.parquet")
    with pytest.raises(CxrcurateError, match=r"no column\(s\) \['commit'\]"):
        release_repositories(folder)
    assert main(["fetch", "--release", str(tmp_path / "nowhere"), "--out", str(tmp_path / "raw")]) == 1
    assert "holds open.parquet" in capsys.readouterr().err and not (tmp_path / "raw").exists()


def test_fetch_needs_a_source_or_a_release(tmp_path, capsys):
    assert main(["fetch", "--out", str(tmp_path / "raw")]) == 2
    assert "--source NAME" in capsys.readouterr().err and not (tmp_path / "raw").exists()
    assert main(["fetch", "--release", str(RELEASE), "--out", str(tmp_path / "raw"), "--commit", "a" * 40]) == 2
    assert "does not apply with --release" in capsys.readouterr().err
