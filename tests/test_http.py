"""The polite client against a real HTTP server on 127.0.0.1: manners, retries, refusals, cache, caps, log."""

from __future__ import annotations

import json

import pytest
from fakeweb import Reply

from cxrcurate import __version__
from cxrcurate.fetch.http import (
    FetchError,
    HttpClient,
    HttpConfig,
    HttpStatusError,
    ResponseTooLarge,
    RobotsDisallowed,
    retry_after_seconds,
)

FAST = {"delay": 0.0, "backoff": 0.01, "retries": 2, "timeout": 5.0}


def client(tmp_path, **kw) -> HttpClient:
    return HttpClient(HttpConfig(**{**FAST, "log_path": tmp_path / "log.jsonl", **kw}))


def log_lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]


def test_user_agent_names_cxrcurate_version_and_contact(web, tmp_path):
    web.add("/a", "<p>a</p>")
    with client(tmp_path) as c:
        c.get_page(f"{web.url}/a")
    ua = web.requests_to("/a")[0].headers["User-Agent"]
    assert f"cxrcurate/{__version__}" in ua and "https://github.com/cxrcurate/cxrcurate" in ua


def test_503_then_success_is_retried_and_logged(web, tmp_path):
    web.sequence("/flaky", Reply(b"busy", 503), Reply(b"<p>ok</p>"))
    with client(tmp_path) as c:
        page = c.get_page(f"{web.url}/flaky")
    assert page.text == "<p>ok</p>" and len(web.requests_to("/flaky")) == 2
    outcomes = [e["outcome"] for e in log_lines(tmp_path) if e["url"].endswith("/flaky")]
    assert outcomes == ["retry", "ok"]


def test_429_honours_retry_after(web, tmp_path):
    web.sequence("/limited", Reply(b"slow down", 429, headers={"Retry-After": "1"}), Reply(b"fine"))
    with client(tmp_path) as c:
        assert c.get_page(f"{web.url}/limited").text == "fine"
    first, second = web.requests_to("/limited")
    assert second.t - first.t >= 0.95


def test_retry_after_larger_than_max_wait_is_reported_not_slept(web, tmp_path):
    web.add("/later", "come back tomorrow", status=503, headers={"Retry-After": "86400"})
    with client(tmp_path) as c, pytest.raises(HttpStatusError, match=r"/later: HTTP 503.*Retry-After: 86400"):
        c.get_page(f"{web.url}/later")
    assert len(web.requests_to("/later")) == 1


def test_persistent_5xx_fails_after_the_retries(web, tmp_path):
    web.add("/down", "oops", status=500)
    with client(tmp_path) as c, pytest.raises(HttpStatusError) as err:
        c.get_page(f"{web.url}/down")
    assert err.value.status == 500 and len(web.requests_to("/down")) == 3


def test_delay_between_requests_to_one_host_is_observed(web, tmp_path):
    for p in ("/d1", "/d2", "/d3"):
        web.add(p, "x")
    with client(tmp_path, delay=0.2) as c:
        for p in ("/d1", "/d2", "/d3"):
            c.get_page(f"{web.url}{p}")
    times = [h.t for h in web.hits if h.path.startswith("/d")]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 2 and min(gaps) >= 0.2, gaps


def test_robots_txt_disallow_is_obeyed(web, tmp_path):
    web.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    web.add("/private/page", "secret")
    web.add("/public/page", "open")
    with client(tmp_path) as c:
        assert c.get_page(f"{web.url}/public/page").text == "open"
        with pytest.raises(RobotsDisallowed, match="/private/page"):
            c.get_page(f"{web.url}/private/page")
    assert web.requests_to("/private") == [] and len(web.requests_to("/robots.txt")) == 1
    assert any(e["outcome"] == "robots_disallowed" for e in log_lines(tmp_path))


def test_robots_crawl_delay_raises_the_delay(web, tmp_path):
    web.add("/robots.txt", "User-agent: cxrcurate\nCrawl-delay: 0.3\nDisallow:\n", content_type="text/plain")
    web.add("/p1", "1")
    web.add("/p2", "2")
    with client(tmp_path) as c:
        c.get_page(f"{web.url}/p1")
        c.get_page(f"{web.url}/p2")
    a, b = web.requests_to("/p1")[0].t, web.requests_to("/p2")[0].t
    assert b - a >= 0.3


def test_redirect_to_a_disallowed_path_is_refused(web, tmp_path):
    web.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    web.add("/go", "", status=302, headers={"Location": "/private/x"})
    with client(tmp_path) as c, pytest.raises(RobotsDisallowed):
        c.get_page(f"{web.url}/go")
    assert web.requests_to("/private") == []


def test_redirect_loop_ends_in_a_clear_error(web, tmp_path):
    web.add("/loop-a", "", status=302, headers={"Location": "/loop-b"})
    web.add("/loop-b", "", status=302, headers={"Location": "/loop-a"})
    with client(tmp_path, max_redirects=5) as c, pytest.raises(FetchError, match="redirects"):
        c.get_page(f"{web.url}/loop-a")
    assert len(web.requests_to("/loop-")) == 6


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "javascript:alert(1)", "/relative"])
def test_only_http_urls(url, tmp_path):
    with client(tmp_path) as c, pytest.raises(FetchError, match="http"):
        c.get_page(url)


def test_redirect_to_another_scheme_is_refused(web, tmp_path):
    web.add("/to-file", "", status=301, headers={"Location": "file:///etc/passwd"})
    with client(tmp_path) as c, pytest.raises(FetchError, match="http"):
        c.get_page(f"{web.url}/to-file")


def test_size_cap_declared_and_streamed(web, tmp_path):
    web.add("/big", "x" * 5000)

    def chunked(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.end_headers()  # no Content-Length: the body ends when the connection closes
        h.wfile.write(b"y" * 5000)

    web.handler("/big-unannounced", chunked)
    with client(tmp_path, max_bytes=1000) as c:
        with pytest.raises(ResponseTooLarge, match="/big: 5,000 bytes declared"):
            c.get_page(f"{web.url}/big")
        with pytest.raises(ResponseTooLarge, match="big-unannounced"):
            c.get_page(f"{web.url}/big-unannounced")


def test_cache_replays_pages_and_refresh_skips_it(web, tmp_path):
    web.add("/cached", "<p>v1</p>")
    cfg = {"cache_dir": tmp_path / "cache"}
    with client(tmp_path, **cfg) as c:
        assert c.get_page(f"{web.url}/cached").text == "<p>v1</p>"
    web.add("/cached", "<p>v2</p>")
    with client(tmp_path, **cfg) as c:
        page = c.get_page(f"{web.url}/cached")
        assert page.from_cache and page.text == "<p>v1</p>"
        assert c.get_page(f"{web.url}/cached", max_age=0).text == "<p>v2</p>"  # too old: asked again
    with client(tmp_path, refresh=True, **cfg) as c:
        assert c.get_page(f"{web.url}/cached").text == "<p>v2</p>"
    assert len(web.requests_to("/cached")) == 3
    assert "cache" in [e["outcome"] for e in log_lines(tmp_path)]


def test_http_errors_name_the_url_and_are_not_cached(web, tmp_path):
    with client(tmp_path, cache_dir=tmp_path / "cache") as c:
        for _ in range(2):
            with pytest.raises(HttpStatusError, match=r"/missing: HTTP 404"):
                c.get_page(f"{web.url}/missing")
    assert len(web.requests_to("/missing")) == 2


def test_connection_refused_is_retried_then_reported(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with client(tmp_path, obey_robots=False) as c, pytest.raises(FetchError, match="after 2 retries"):
        c.get_page(f"http://127.0.0.1:{port}/x")
    assert [e["outcome"] for e in log_lines(tmp_path)] == ["retry", "retry", "error"]


def test_retry_after_parsing():
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
