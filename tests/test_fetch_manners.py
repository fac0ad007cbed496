"""Terms, bot challenges, robots.txt refusals, per-site delays, topic filters and hash-checked direct downloads,
against the fake sites on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pandas as pd
import pytest
from fakesites import eurorad_case, eurorad_site, montgomery_zip, radiopaedia_site, sirm_site
from fakeweb import Reply
from test_fetch_sites import ACK, FAST, RP, cli

from cxrcurate.build import build_manifest
from cxrcurate.errors import TermsNotAccepted
from cxrcurate.fetch import fetch_source, site_delay
from cxrcurate.fetch.base import FetchOptions, run_scraper
from cxrcurate.fetch.challenge import challenge_reason
from cxrcurate.fetch.http import HttpClient
from cxrcurate.fetch.sites.eurorad import Eurorad
from cxrcurate.sources import Scraped, fetch_records, get_source

CLOUDFLARE = ("<!DOCTYPE html><html><head><title>Just a moment...</title></head><body><div id='cf-challenge'>"
              "<script src='/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1'></script></div></body></html>")
CAPTCHA = ("<html><body><h1>Please verify you are a human</h1><form action='/verify' method='post'>"
           "<div class='g-recaptcha' data-sitekey='x'></div><button>Submit</button></form></body></html>")


def test_radiopaedia_needs_the_terms_acknowledged_and_names_them_and_the_alternative(web, tmp_path, capsys):
    radiopaedia_site(web)
    with pytest.raises(TermsNotAccepted) as err:
        fetch_source("radiopaedia", tmp_path / "rp", base_url=web.url, config=FAST, progress=False)
    msg = str(err.value)
    assert "bulk download" in msg and "https://radiopaedia.org/terms" in msg and "cohen" in msg.lower()
    assert "--accept-terms radiopaedia" in msg and "4 s" in msg
    assert web.hits == []  # nothing asked of the site
    assert cli("--source", "radiopaedia", "--out", str(tmp_path / "rp"), "--base-url", web.url,
               "--accept-terms", "sirm") == 2  # acknowledging another site's terms is not enough
    assert "--accept-terms radiopaedia" in capsys.readouterr().out


def test_site_minimum_delays_apply_to_real_sites_only():
    rp, sirm, er = (fetch_records(Scraped)[n] for n in ("radiopaedia", "sirm", "eurorad"))
    assert (rp.delay, sirm.delay, er.delay) == (4.0, 2.0, 5.0) and all(2 <= d.delay <= 10 for d in (rp, sirm, er))
    assert site_delay(rp, None, None) == 4.0 and site_delay(rp, 1.0, "https://radiopaedia.org") == 4.0
    assert site_delay(rp, 12.0, None) == 12.0  # --delay may raise it
    assert site_delay(rp, 0.01, "http://127.0.0.1:8000") == 0.01  # a local copy of the site


@pytest.mark.parametrize("status, body, headers", [
    (503, CLOUDFLARE, {}), (403, CLOUDFLARE, {}), (403, "<html></html>", {"cf-mitigated": "challenge"}),
    (200, CAPTCHA, {}),
])
def test_a_bot_challenge_is_reported_as_such_and_never_retried(web, tmp_path, status, body, headers):
    sirm_site(web)
    web.sequence("/2020/03/18/covid-19-caso-2/", Reply(body.encode(), status, headers=headers))
    cfg = dataclasses.replace(FAST, retries=3)
    report = fetch_source("sirm", tmp_path / "s", base_url=web.url, config=cfg, progress=False)
    assert report.cases == 2 and len(report.failed) == 1
    url, why = report.failed[0]
    assert url.endswith("covid-19-caso-2/") and ("challenge" in why or "captcha" in why) and "retry" in why
    assert len(web.requests_to("/2020/03/18/covid-19-caso-2/")) == 1  # asked once, not 4 times
    log = [json.loads(line) for line in (tmp_path / "s" / "fetch-log.jsonl").read_text().splitlines()]
    assert not (tmp_path / "s" / "cases" / "covid-19-caso-2.json").exists()
    assert any(e["outcome"] in ("challenge", "http_error") for e in log if "caso-2" in e["url"])


def test_challenge_detection_leaves_ordinary_pages_alone():
    page = "<html><body>" + "<p>Case text.</p>" * 400 + "<form><div class='g-recaptcha'></div></form></body></html>"
    assert challenge_reason({}, page) is None  # a long page with a comment captcha is not a challenge
    assert challenge_reason({}, "<html><title>COVID-19: caso 1</title></html>") is None
    assert "captcha" in challenge_reason({}, CAPTCHA) and "challenge" in challenge_reason({}, CLOUDFLARE)


@pytest.mark.parametrize("status", [401, 403])
def test_robots_txt_forbidden_means_do_not_crawl(web, tmp_path, status):
    sirm_site(web)
    web.add("/robots.txt", "forbidden", status=status, content_type="text/plain")
    report = fetch_source("sirm", tmp_path / "s", base_url=web.url, config=FAST, progress=False)
    assert not report.ok and report.cases == 0 and "robots.txt" in report.failed[0][1]
    assert [h.path for h in web.hits] == ["/robots.txt"]


def test_since_uses_the_search_result_date_without_fetching_the_case(web, tmp_path):
    radiopaedia_site(web)
    report = fetch_source("radiopaedia", tmp_path / "rp", base_url=web.url, config=FAST, progress=False,
                          since=dt.date(2020, 4, 1), **RP)
    assert report.cases == 2 and sum(report.skipped[k] for k in report.skipped if "before" in k) == 1
    assert web.requests_to("/cases/covid-19-pneumonia-1") == []  # "Published 20 Mar 2020" on the search page


def test_an_interrupted_fetch_resumes_with_what_is_missing(web, tmp_path):
    sirm_site(web)
    out = tmp_path / "s"
    first = fetch_source("sirm", out, base_url=web.url, config=FAST, progress=False, limit=1)
    assert first.cases == 1 and first.images == 2
    before = len(web.hits)
    second = fetch_source("sirm", out, base_url=web.url, config=FAST, progress=False)
    assert second.ok and second.cases == 3 and second.images_present == 2 and second.images == 2
    again = [h.path for h in web.hits[before:]]
    assert "/2020/03/20/covid-19-caso-1/" not in again and not any("caso1-" in p for p in again)


def test_eurorad_keeps_its_topic_skips_others_and_missing_numbers(web, tmp_path):
    eurorad_site(web)
    report = fetch_source("eurorad", tmp_path / "er", base_url=web.url, config=FAST, progress=False)
    assert report.ok and report.cases == 3 and report.images == 3, report.summary()
    assert sum(n for k, n in report.skipped.items() if "not on the topic" in k) == 1
    assert web.requests_to("/advanced-search") == [] and web.requests_to("/case/16600") == []  # sitemap narrows
    web.routes.pop("/sitemap.xml")  # no sitemap: every number of the range is tried, a 404 is skipped
    cfg = dataclasses.replace(FAST, cache_dir=tmp_path / "cache")
    with HttpClient(cfg) as client:
        rep = run_scraper(Eurorad(client, web.url, case_ids=range(16710, 16713)), tmp_path / "er2",
                          FetchOptions(progress=False))
    assert rep.ok and rep.cases == 2 and sum(n for k, n in rep.skipped.items() if "HTTP 404" in k) == 1


def test_eurorad_full_size_images_are_the_ones_downloaded(web, tmp_path):
    eurorad_site(web)
    web.add("/case/16713", eurorad_case(16713, "COVID-19 pneumonia", "30 years, female", "02.04.2020", "COVID-19",
                                        [("2020-04/16713-1.jpg", "Lateral chest X-ray.")]))
    fetch_source("eurorad", tmp_path / "er", base_url=web.url, config=FAST, progress=False)
    assert web.requests_to("/sites/default/files/styles/figure_image_teaser_large") == []
    assert len(web.requests_to("/sites/default/files/styles/figure_image/public/")) == 3


def test_montgomery_is_downloaded_hash_pinned_extracted_and_builds(web, tmp_path, monkeypatch):
    data = montgomery_zip()
    web.add("/imgs/collections/NLM-MontgomeryCXRSet.zip", data, content_type="application/zip", ranges=True)
    out = tmp_path / "montgomery"
    assert cli("--source", "montgomery", "--out", str(out), "--base-url", web.url, "--delay", "0.01", "-q") == 0
    record = json.loads((out / ".cxrcurate-source.json").read_text())
    import hashlib

    assert record["archive_sha256"] == hashlib.sha256(data).hexdigest() and record["sha256_verified"] is False
    assert (out / "MontgomerySet" / "CXR_png" / "MCUCXR_0003_1.png").exists()
    result = build_manifest([("montgomery", out)], tmp_path / "m", workers=1, progress=False)
    m = pd.read_parquet(result.manifest)
    assert sorted(m.label) == ["normal", "normal", "other"] and (m.sex == "F").all()
    before = len(web.hits)
    assert fetch_source("montgomery", out, base_url=web.url, config=FAST, progress=False).ok
    assert web.hits[before:] == []  # already complete at the recorded digest

    cls = get_source("montgomery")
    monkeypatch.setattr(cls, "fetch", dataclasses.replace(cls.fetch, sha256="0" * 64))
    bad = fetch_source("montgomery", tmp_path / "other", base_url=web.url, config=FAST, progress=False)
    assert not bad.ok and "sha256" in bad.failed[0][1] and "is not the expected" in bad.failed[0][1]
    assert not (tmp_path / "other" / "MontgomerySet").exists()  # nothing unverified is extracted


def test_every_download_with_a_stable_file_has_a_digest_field():
    from cxrcurate.sources import DirectDownload, Repository

    for name, spec in {**fetch_records(DirectDownload), **fetch_records(Repository)}.items():
        assert hasattr(spec, "sha256"), name
    for name, spec in fetch_records(DirectDownload).items():  # no published digest: said so, not invented
        assert spec.sha256 is None and "no sha256" in spec.sha256_note, name


def test_cli_names_the_acknowledgement_option_in_its_help(capsys):
    with pytest.raises(SystemExit):
        cli("--help")
    out = capsys.readouterr().out
    assert "--accept-terms" in out


def test_the_whole_radiopaedia_run_is_opt_in_from_the_cli(web, tmp_path, capsys):
    radiopaedia_site(web)
    assert cli("--source", "radiopaedia", "--out", str(tmp_path / "rp"), "--base-url", web.url, "--delay", "0.01",
               "-q", *ACK["radiopaedia"]) == 0
    assert "radiopaedia: fetched 3 case(s)" in capsys.readouterr().out
