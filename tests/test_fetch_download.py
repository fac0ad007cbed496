"""Downloads that cannot corrupt (resume, truncation, hash, content check), safe names and checked archives."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile

import pytest
from fakeweb import FakeWeb, Reply, image_bytes

from cxrcurate.fetch.download import (
    DownloadError,
    UnsafePath,
    download,
    extract_archive,
    safe_component,
    safe_join,
    sniff_image,
)
from cxrcurate.fetch.http import HttpClient, HttpConfig, HttpStatusError, ResponseTooLarge

FAST = {"delay": 0.0, "backoff": 0.01, "retries": 2, "timeout": 5.0}
BODY = image_bytes(size=200)  # a few kB, enough to cut in the middle


@pytest.fixture
def client(tmp_path):
    with HttpClient(HttpConfig(**FAST, log_path=tmp_path / "log.jsonl")) as c:
        yield c


def test_download_then_skip_without_a_request(web, client, tmp_path):
    web.add("/img.jpg", BODY)
    dest = tmp_path / "out" / "01.jpg"
    result = download(client, f"{web.url}/img.jpg", dest, check=sniff_image)
    assert result.transferred and dest.read_bytes() == BODY
    again = download(client, f"{web.url}/img.jpg", dest)
    assert not again.transferred and len(web.requests_to("/img.jpg")) == 1
    assert [p.name for p in dest.parent.iterdir()] == ["01.jpg"]  # no part file left behind


def test_connection_reset_mid_download_resumes_with_range(web, client, tmp_path):
    calls = []

    def flaky(h):
        calls.append(h.headers.get("Range"))
        if len(calls) == 1:
            FakeWeb.cut(h, BODY, len(BODY) // 2, reset=True)
        else:
            FakeWeb.send(h, Reply(BODY, content_type="image/jpeg", ranges=True))

    web.handler("/reset.jpg", flaky)
    dest = tmp_path / "01.jpg"
    result = download(client, f"{web.url}/reset.jpg", dest, check=sniff_image)
    assert dest.read_bytes() == BODY
    assert calls[0] is None and calls[1] == f"bytes={len(BODY) // 2}-"
    assert result.transferred


def test_interrupted_run_leaves_a_part_file_that_the_next_run_resumes(web, tmp_path):
    web.handler("/cut.jpg", lambda h: FakeWeb.cut(h, BODY, 1000, reset=False))
    dest = tmp_path / "01.jpg"
    with HttpClient(HttpConfig(**{**FAST, "retries": 0})) as c, pytest.raises(DownloadError, match="re-run resumes"):
        download(c, f"{web.url}/cut.jpg", dest)
    part = tmp_path / ".01.jpg.part"
    assert not dest.exists() and part.stat().st_size == 1000
    web.add("/cut.jpg", BODY, ranges=True)  # the server is fine again
    with HttpClient(HttpConfig(**FAST)) as c:
        result = download(c, f"{web.url}/cut.jpg", dest)
    assert dest.read_bytes() == BODY and result.resumed_from == 1000 and not part.exists()
    assert web.requests_to("/cut.jpg")[-1].headers["Range"] == "bytes=1000-"


def test_truncated_body_is_a_reported_failure_not_a_file(web, client, tmp_path):
    web.handler("/short.jpg", lambda h: FakeWeb.cut(h, BODY, 300, reset=False, ranges=False))
    dest = tmp_path / "01.jpg"
    with pytest.raises(DownloadError, match=r"short\.jpg: connection lost after .*3 attempt"):
        download(client, f"{web.url}/short.jpg", dest)
    assert not dest.exists()


def test_server_ignoring_range_restarts_the_file(web, client, tmp_path):
    dest = tmp_path / "01.jpg"
    (tmp_path / ".01.jpg.part").write_bytes(b"garbage that is not a prefix")
    web.add("/norange.jpg", BODY)  # answers 200 with the whole body to a Range request
    download(client, f"{web.url}/norange.jpg", dest, check=sniff_image)
    assert dest.read_bytes() == BODY


def test_hash_mismatch_discards_the_file(web, client, tmp_path):
    web.add("/h.jpg", BODY)
    dest = tmp_path / "01.jpg"
    with pytest.raises(DownloadError, match="sha256"):
        download(client, f"{web.url}/h.jpg", dest, sha256="0" * 64)
    assert not dest.exists() and not (tmp_path / ".01.jpg.part").exists()
    download(client, f"{web.url}/h.jpg", dest, sha256=hashlib.sha256(BODY).hexdigest())
    assert dest.exists()


def test_non_image_served_as_jpeg_is_refused(web, client, tmp_path):
    web.add("/fake.jpg", b"<html><body>Please log in</body></html>", content_type="image/jpeg")
    dest = tmp_path / "01.jpg"
    with pytest.raises(DownloadError, match="not an image"):
        download(client, f"{web.url}/fake.jpg", dest, check=sniff_image)
    assert not dest.exists()


def test_truncated_image_with_right_length_is_refused(web, client, tmp_path):
    web.add("/half.jpg", BODY[: len(BODY) // 2])
    with pytest.raises(DownloadError, match="does not decode"):
        download(client, f"{web.url}/half.jpg", tmp_path / "01.jpg", check=sniff_image)


def test_size_cap_and_http_errors(web, client, tmp_path):
    web.add("/big.jpg", BODY)
    with pytest.raises(ResponseTooLarge):
        download(client, f"{web.url}/big.jpg", tmp_path / "01.jpg", max_bytes=100)
    with pytest.raises(HttpStatusError, match="404"):
        download(client, f"{web.url}/nothing.jpg", tmp_path / "02.jpg")
    assert not any(p.name.endswith((".jpg", ".part")) for p in tmp_path.iterdir())


@pytest.mark.parametrize("name", ["..", "../..", "/", "", "..."])
def test_safe_component_refuses_names_with_nothing_safe(name):
    with pytest.raises(UnsafePath):
        safe_component(name)


def test_safe_component_keeps_ids_readable():
    assert safe_component("covid-19-pneumonia-12") == "covid-19-pneumonia-12"
    assert safe_component("../../etc/passwd") == "etc-passwd"
    assert safe_component("caso 1: RX/TC") == "caso-1-RX-TC"


@pytest.mark.parametrize("parts", [("../evil",), ("/etc/passwd",), ("a", "..", "..", "b"), ("C:\\x",),
                                   ("a\\..\\..\\b",)])
def test_safe_join_refuses_escapes(tmp_path, parts):
    with pytest.raises(UnsafePath):
        safe_join(tmp_path, *parts)


def test_safe_join_refuses_a_symlink_out(tmp_path):
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(UnsafePath):
        safe_join(tmp_path, "link", "x")
    assert safe_join(tmp_path, "a", "b.jpg") == (tmp_path / "a" / "b.jpg").resolve()


def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


def test_zip_members_with_dotdot_absolute_or_link_are_refused(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"repo-abc/metadata.csv": b"x", "repo-abc/images/1.jpg": BODY,
                              "repo-abc/../../evil.txt": b"evil", "/abs/evil.txt": b"evil"},
                             links={"repo-abc/images/link.jpg": "/etc/passwd"}))
    out = tmp_path / "out"
    result = extract_archive(archive, out, strip=1)
    assert sorted(p.relative_to(out).as_posix() for p in result.files) == ["images/1.jpg", "metadata.csv"]
    assert sorted(why for _, why in result.refused) == ["'..' in path", "a link or special file", "absolute path"]
    assert not (tmp_path / "evil.txt").exists() and not (out / "images" / "link.jpg").exists()
    assert not list(tmp_path.rglob("evil.txt"))


def test_tar_members_are_checked_too(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in (("top/ok.txt", b"ok"), ("top/../../evil.txt", b"evil")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("top/sneaky")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc"
        tf.addfile(link)
    result = extract_archive(archive, tmp_path / "out", strip=1)
    assert [p.name for p in result.files] == ["ok.txt"] and len(result.refused) == 2
    assert not os.path.lexists(tmp_path / "out" / "sneaky")
