"""``cxrcurate fetch`` of the scraped sites against fake copies on 127.0.0.1, then ``build_manifest`` on the result."""

from __future__ import annotations

import argparse
import datetime as dt
import json

import pandas as pd
import pytest
from fakesites import eurorad_site, radiopaedia_case, radiopaedia_site, sirm_post, sirm_site
from fakeweb import image_bytes

from cxrcurate.build import build_manifest
from cxrcurate.cli.fetch import register
from cxrcurate.errors import CxrcurateError
from cxrcurate.fetch import fetch_source
from cxrcurate.fetch.base import case_id_from
from cxrcurate.fetch.http import HttpConfig
from cxrcurate.sources import get_source

SITES = {"radiopaedia": radiopaedia_site, "sirm": sirm_site, "eurorad": eurorad_site}
FAST = HttpConfig(delay=0.01, backoff=0.01, retries=1, timeout=5.0)
ACK = {"radiopaedia": ("--accept-terms", "radiopaedia")}  # its terms restrict automated download: opt-in
RP = {"accept_terms": ("radiopaedia",)}


def cli(*argv: str) -> int:
    """``cxrcurate fetch ...`` as the CLI runs it (cli.py adds the subcommand with ``register``)."""
    parser = argparse.ArgumentParser(prog="cxrcurate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fetch", *argv])
    try:
        return args.func(args)
    except CxrcurateError as exc:
        print(f"error: {exc}")
        return 2


def build(name, out, tmp_path):
    result = build_manifest([(name, out)], tmp_path / f"manifest-{name}", workers=1, progress=False)
    return pd.read_parquet(result.manifest), pd.read_parquet(result.dropped)


@pytest.mark.parametrize("name", sorted(SITES))
def test_fetch_builds_a_manifest_and_a_rerun_downloads_nothing(name, web, tmp_path, capsys):
    expected = SITES[name](web)
    out = tmp_path / name
    assert cli("--source", name, "--out", str(out), "--base-url", web.url, "--delay", "0.01", "-q", *ACK.get(name, ())
               ) == 0
    assert f"{name}: fetched {expected['cases']} case(s)" in capsys.readouterr().out
    m, d = build(name, out, tmp_path)
    frontal = m[m.source == name]
    assert len(frontal) + (d.reason == "view_excluded").sum() == expected["xray_images"]
    assert frontal["url"].str.startswith(web.url).all() and frontal["license"].notna().all()
    assert (frontal["label"] == "covid19").all()
    assert frontal["patient_id"].str.startswith(f"{name}:").all() and frontal["age_years"].notna().all()
    assert "not_xray" in set(d.reason)  # the CT images are accounted for, not lost
    assert json.loads((out / ".cxrcurate-source.json").read_text())["source"] == name
    assert "fetched_utc" in get_source(name)(out).version()
    log = [json.loads(line) for line in (out / "fetch-log.jsonl").read_text().splitlines()]
    assert {e["outcome"] for e in log} >= {"ok", "downloaded"}

    before = len(web.hits)
    assert cli("--source", name, "--out", str(out), "--base-url", web.url, "--delay", "0.01", "-q", *ACK.get(name, ())
               ) == 0
    assert web.hits[before:] == []  # images complete, pages replayed from the cache
    assert "already complete" in capsys.readouterr().out


def test_a_case_with_only_ct_is_recorded_and_dropped_as_not_xray(web, tmp_path):
    radiopaedia_site(web)
    out = tmp_path / "rp"
    report = fetch_source("radiopaedia", out, base_url=web.url, config=FAST, progress=False, **RP)
    assert report.ok and report.cases == 3
    case = json.loads((out / "cases" / "covid-19-ct-only-3.json").read_text())
    assert [i["status"] for i in case["images"]] == ["not_downloaded"]
    assert web.requests_to("/images/30101") == []
    _, d = build("radiopaedia", out, tmp_path)
    ct = d[d.source_record.str.startswith("cases/covid-19-ct-only-3.json", na=False)]
    assert list(ct.reason) == ["not_xray"] and "modality ct" in ct.detail.iloc[0]


def test_dry_run_limit_and_since(web, tmp_path):
    sirm_site(web)
    dry = fetch_source("sirm", tmp_path / "dry", base_url=web.url, config=FAST, progress=False, dry_run=True)
    assert dry.dry_run and dry.cases == 3 and dry.images == 4
    assert not (tmp_path / "dry" / "cases").exists() and web.requests_to("/wp-content") == []
    limited = fetch_source("sirm", tmp_path / "lim", base_url=web.url, config=FAST, progress=False, limit=1)
    assert limited.cases == 1 and len(list((tmp_path / "lim" / "cases").iterdir())) == 1
    recent = fetch_source("sirm", tmp_path / "since", base_url=web.url, config=FAST, progress=False,
                          since=dt.date(2020, 3, 1))
    assert recent.cases == 2 and sum(recent.skipped[k] for k in recent.skipped if "before" in k) == 1
    assert not (tmp_path / "since" / "cases" / "covid-19-caso-3.json").exists()


def test_every_failure_is_reported_and_the_rest_is_fetched(web, tmp_path, capsys):
    radiopaedia_site(web)
    web.add("/robots.txt", "User-agent: *\nDisallow: /cases/covid-19-ct-only-3\n", content_type="text/plain")
    web.add("/images/10101/abc10101.png", b"<html>login required</html>", content_type="image/png")
    del web.routes["/images/20101/abc20101.png"]  # 404
    out = tmp_path / "rp"
    code = cli("--source", "radiopaedia", "--out", str(out), "--base-url", web.url, "--delay", "0.01", "-q",
               *ACK["radiopaedia"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "FAILED 3" in printed and "not an image" in printed and "HTTP 404" in printed and "robots.txt" in printed
    assert web.requests_to("/cases/covid-19-ct-only-3") == []
    m, d = build("radiopaedia", out, tmp_path)
    failed = d[d.reason == "row_without_file"]
    assert len(failed) == 2 and failed.detail.str.contains("not an image").any()
    assert len(m) == 0 and (d.reason == "view_excluded").sum() == 1  # the lateral one did download


def test_a_changed_case_page_is_a_parse_error_naming_url_and_element(web, tmp_path):
    radiopaedia_site(web)
    web.add("/cases/covid-19-pneumonia-2",
            radiopaedia_case("COVID-19 pneumonia", "45 years", "Female", [201], "2 Apr 2020", "2024")
            .replace("view-fullscreen-link", "view-link"))
    report = fetch_source("radiopaedia", tmp_path / "rp", base_url=web.url, config=FAST, progress=False, **RP)
    assert not report.ok and report.cases == 2
    (url, why), = report.failed
    assert url.endswith("/cases/covid-19-pneumonia-2") and "layout" in why
    assert all(s in why for s in ("view-fullscreen-link", "main-study-desc", "data-study-id"))


def test_a_changed_listing_page_is_reported_and_earlier_pages_kept(web, tmp_path):
    sirm_site(web)
    web.add("/category/senza-categoria/covid-19/page/2/", "<html><body><div class='results-v2'></div></body></html>")
    report = fetch_source("sirm", tmp_path / "s", base_url=web.url, config=FAST, progress=False)
    assert report.cases == 2 and len(report.failed) == 1
    assert "page/2" in report.failed[0][0] and "post entries" in report.failed[0][1]
    assert "td_module_19" in report.failed[0][1]


def test_dotdot_in_urls_and_slugs_never_leaves_the_output_folder(web, tmp_path):
    sirm_site(web)
    slug = "..%2F..%2F..%2Fescape"
    web.add("/category/senza-categoria/covid-19/",
            f'<html><body><article><h2 class="entry-title"><a href="/2020/03/02/{slug}/">y</a></h2>'
            f'</article></body></html>')
    web.add(f"/2020/03/02/{slug}/", sirm_post("COVID-19: caso 10", "2020-03-02", "Donna, 40 anni.",
                                              [("/img/..%2F..%2F..%2Fevil.jpg", "RX torace AP"),
                                               ("/img/ok.jpg", "RX torace PA")]))
    web.add("/img/..%2F..%2F..%2Fevil.jpg", image_bytes())
    web.add("/img/ok.jpg", image_bytes(shade=3))
    out = tmp_path / "deep" / "sirm"
    report = fetch_source("sirm", out, base_url=web.url, config=FAST, progress=False)
    assert report.ok and report.images == 2, report.summary()
    assert all(out in p.parents for p in tmp_path.rglob("*") if p.is_file())
    (case,) = (out / "cases").iterdir()
    assert "/" not in case.stem and not case.stem.startswith(".")
    images = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.jpg"))
    assert images == [f"{case.stem}/01.jpg", f"{case.stem}/02.jpg"]  # our names, not the URL's
    assert case_id_from("..").startswith("case-") and case_id_from("../../x") == "x"


def test_manual_sources_explain_where_to_go(tmp_path, capsys):
    assert cli("--source", "kermany", "--out", str(tmp_path / "k")) == 2
    msg = capsys.readouterr().out
    assert "https://data.mendeley.com/datasets/rscbjbr9sj/2" in msg and "train/NORMAL" in msg
    assert "--check" in msg
    assert cli("--source", "sirmm", "--out", str(tmp_path)) == 2
    assert "Did you mean 'sirm'" in capsys.readouterr().out


def test_an_image_replaced_on_the_site_is_fetched_again(web, tmp_path):
    sirm_site(web)
    out = tmp_path / "sirm"
    fetch_source("sirm", out, base_url=web.url, config=FAST, progress=False)
    old = (out / "images" / "covid-19-caso-2" / "01.jpg").read_bytes()
    web.add("/2020/03/18/covid-19-caso-2/", sirm_post("COVID-19: caso 2", "2020-03-18", "Donna di 45 anni.",
                                                      [("/wp-content/uploads/2020/03/caso2-new.jpg", "RX torace PA")]))
    web.add("/wp-content/uploads/2020/03/caso2-new.jpg", image_bytes(shade=123))
    cfg = HttpConfig(delay=0.01, backoff=0.01, retries=1, timeout=5.0, refresh=True)
    report = fetch_source("sirm", out, base_url=web.url, config=cfg, progress=False)
    assert report.ok and report.images == 1 and report.images_present == 3
    assert (out / "images" / "covid-19-caso-2" / "01.jpg").read_bytes() != old


def test_the_delay_between_requests_is_observed_over_a_whole_fetch(web, tmp_path):
    sirm_site(web)
    cfg = HttpConfig(delay=0.2, backoff=0.01, retries=1, timeout=5.0)
    report = fetch_source("sirm", tmp_path / "sirm", base_url=web.url, config=cfg, progress=False, limit=2)
    assert report.ok and report.images == 3
    times = [h.t for h in web.hits]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) >= 7 and min(gaps) >= 0.2, gaps  # robots, listing, 2 posts, 3 images: one host, one at a time


def test_an_unexpected_error_in_a_parser_is_reported_not_a_crash(web, tmp_path, monkeypatch):
    from cxrcurate.fetch.sites import sirm

    sirm_site(web)
    real = sirm.parse_post

    def buggy(html, url):
        if "caso-2" in url:
            raise AttributeError("'NoneType' object has no attribute 'text'")
        return real(html, url)

    monkeypatch.setattr(sirm, "parse_post", buggy)
    report = fetch_source("sirm", tmp_path / "sirm", base_url=web.url, config=FAST, progress=False)
    assert report.cases == 2 and len(report.failed) == 1 and "unexpected AttributeError" in report.failed[0][1]


def test_eurorad_numbers_that_are_no_case_are_not_requested_again(web, tmp_path):
    from fakesites import eurorad_sitemap

    eurorad_site(web)
    web.add("/sitemap.xml", eurorad_sitemap([16711, 16715, 16716]), content_type="application/xml")
    out = tmp_path / "eurorad"

    def missing_hits() -> int:
        return len([h for h in web.hits if h.path.split("?")[0] in ("/case/16715", "/case/16716")])

    first = fetch_source("eurorad", out, base_url=web.url, config=FAST, progress=False)
    assert first.ok and first.skipped["case number not on the site (HTTP 404)"] == 2 and missing_hits() == 2
    again = fetch_source("eurorad", out, base_url=web.url, config=FAST, progress=False)
    assert again.ok and again.skipped["case number not on the site (HTTP 404)"] == 2
    assert missing_hits() == 2  # remembered: the resumed walk asked the site nothing about them
    assert again.cases == 1 and again.images_present == 1
    refreshed = fetch_source("eurorad", out, base_url=web.url, progress=False,
                             config=HttpConfig(delay=0.01, backoff=0.01, retries=1, timeout=5.0, refresh=True))
    assert refreshed.ok and missing_hits() == 4  # --refresh asks again


def test_radiopaedia_study_without_the_stacks_json_falls_back_to_the_study_page(web, tmp_path):
    from fakesites import page, radiopaedia_stacks

    radiopaedia_site(web)
    web.add("/studies/101/stacks", "<html><body>Not found</body></html>", status=404)
    inline = radiopaedia_stacks(web.url, 101, [("X-ray", [("Frontal", "PA"), ("Lateral", None)])])
    web.add("/cases/77/studies/101", page(f"<h1>x</h1><script>var stackedImages = {inline};</script>"))
    out = tmp_path / "rp"
    report = fetch_source("radiopaedia", out, base_url=web.url, config=FAST, progress=False, **RP)
    assert report.ok, report.summary()
    case = json.loads((out / "cases" / "covid-19-pneumonia-1.json").read_text())
    assert [(i["view"], i["status"], i["extra"]["stacks_from"]) for i in case["images"]] == [
        ("PA", "ok", "study page (stackedImages)"), ("L", "ok", "study page (stackedImages)")]
    order = [p for h in web.hits if (p := h.path.split("?")[0]).endswith("/101/stacks") or p.endswith("/101")]
    assert order == ["/studies/101/stacks", "/cases/77/studies/101"]  # the JSON first, the page only after it failed

    web.add("/cases/77/studies/101", page("<h1>x</h1><script>var other = [];</script>"))
    again = fetch_source("radiopaedia", tmp_path / "rp2", base_url=web.url, config=FAST, progress=False, **RP)
    (url, why), = again.failed
    assert url.endswith("/cases/covid-19-pneumonia-1") and "/studies/101/stacks" in why and "stackedImages" in why

