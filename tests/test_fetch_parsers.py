"""The site parsers on saved page text (tests/fixtures/fetch/): pure functions, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrcurate.errors import ParseError
from cxrcurate.fetch.sites import eurorad, radiopaedia, sirm
from cxrcurate.fetch.sites.parsing import age_sex_from_text, modality_from_text, view_from_text
from cxrcurate.sources.casejson import label_from_diagnosis

FIXTURES = Path(__file__).parent / "fixtures" / "fetch"


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# -- Radiopaedia ----------------------------------------------------------------------------------------------
def test_radiopaedia_search_lists_cases_dates_and_the_next_page():
    refs, nxt = radiopaedia.parse_search(saved("radiopaedia_search.html"), "https://radiopaedia.org/search?q=covid")
    assert [r.case_id for r in refs] == ["covid-19-pneumonia-12", "covid-19-pneumonia-bilateral", "75186"]
    assert refs[0].url == "https://radiopaedia.org/cases/covid-19-pneumonia-12"
    assert [str(r.published) for r in refs] == ["2020-03-24", "2015-10-15", "None"]  # span.published
    assert nxt == "https://radiopaedia.org/search?lang=us&page=2&q=covid-19&scope=cases"


def test_radiopaedia_search_needs_no_results_container_but_some_case_link():
    html = saved("radiopaedia_search.html").replace('class="search-result search-result-case"', 'class="x"')
    refs, _ = radiopaedia.parse_search(html, "https://radiopaedia.org/search?q=covid")  # the titled-link fallback
    assert [r.case_id for r in refs] == ["covid-19-pneumonia-12", "covid-19-pneumonia-bilateral", "75186"]
    with pytest.raises(ParseError, match="search-result-case"):
        radiopaedia.parse_search(html.replace("search-result-title-text", "t"), "https://radiopaedia.org/search?q=c")
    assert radiopaedia.parse_search("<html><body><p>No results found.</p></body></html>", "https://r/s") == ([], None)


def test_radiopaedia_case_page_2023_layout():
    url = "https://radiopaedia.org/cases/covid-19-pneumonia-12"
    case, studies = radiopaedia.parse_case(saved("radiopaedia_case.html"), url)
    assert studies == ["72631", "72632"] and case.extra["layout"].startswith("a.view-fullscreen-link")
    assert (case.case_id, case.title, case.age_years, case.sex) == ("covid-19-pneumonia-12", "COVID-19 pneumonia",
                                                                   70.0, "F")
    assert case.license == "CC BY-NC-SA 3.0" and case.published == "2020-03-24"  # the "Case published" row
    assert case.diagnosis == "COVID-19 pneumonia" and "lower zone" in case.findings
    assert case.extra["presentation"].startswith("Presentation Fever")
    assert "RT-PCR positive" in case.extra["discussion"]


def test_radiopaedia_study_ids_from_main_study_desc_when_the_fullscreen_links_are_gone():
    html = saved("radiopaedia_case.html").replace("view-fullscreen-link", "other-link")
    case, studies = radiopaedia.parse_case(html, "https://radiopaedia.org/cases/x")
    assert studies == ["72631", "72632"] and case.extra["layout"].startswith("div.main-study-desc")


def test_radiopaedia_case_page_2020_layout():
    case, studies = radiopaedia.parse_case(saved("radiopaedia_case_2020.html"), "https://radiopaedia.org/cases/c")
    assert studies == ["71601"] and case.extra["layout"].startswith("[data-study-id]")
    assert (case.age_years, case.sex, case.published) == (58.0, "M", None)
    assert "Lombardy" in case.extra["presentation"] and "consolidation" in case.findings


def test_radiopaedia_stacks_keep_order_modality_view_and_take_the_original():
    url = "https://radiopaedia.org/studies/72631/stacks?lang=us"
    images = radiopaedia.parse_stacks(json.loads(saved("radiopaedia_stacks.json")), url, "72631")
    got = [(i.modality, i.view, i.position) for i in images]
    assert got == [("xray", "AP", 1), ("xray", "L", 2), ("ct", "unknown", 1)]
    assert images[0].url == "https://prod-images-static.radiopaedia.org/images/34/a1.png"  # public_filename
    assert images[0].extra["fullscreen_filename"].endswith("a1_big_gallery.jpeg")
    assert images[2].url == "https://radiopaedia.org/images/40/c_big_gallery.jpeg"  # relative -> absolute


def test_radiopaedia_study_page_links_are_kept_for_the_stackedimages_fallback():
    case, studies = radiopaedia.parse_case(saved("radiopaedia_case.html"), "https://radiopaedia.org/cases/c")
    assert case.extra["study_pages"] == {s: f"https://radiopaedia.org/cases/75186/studies/{s}?lang=us"
                                         for s in studies} and studies


def test_radiopaedia_stacked_images_inline_in_the_study_page():
    url = "https://radiopaedia.org/cases/75186/studies/72631?lang=us"
    images = radiopaedia.parse_stacked_images(saved("radiopaedia_study_page.html"), url, "72631")
    got = [(i.modality, i.view, i.position) for i in images]
    assert got == [("xray", "PA", 1), ("xray", "L", 2), ("ct", "unknown", 1)]  # by position within each stack
    assert images[0].url == "https://prod-images-static.radiopaedia.org/images/51000001/aa11.png"
    assert images[1].extra["fullscreen_filename"].endswith("bb22_big_gallery.jpeg")
    with pytest.raises(ParseError, match="studies/72631.*stackedImages"):
        radiopaedia.parse_stacked_images(saved("radiopaedia_study_page.html").replace("stackedImages", "other"),
                                         url, "72631")


@pytest.mark.parametrize("bad", [{"stacks": []}, [{"images": []}], [{"modality": "X-ray", "images": [{"id": 1}]}]])
def test_radiopaedia_stacks_json_that_changed_is_a_parse_error(bad):
    with pytest.raises(ParseError, match="studies/9/stacks"):
        radiopaedia.parse_stacks(bad, "https://radiopaedia.org/studies/9/stacks", "9")


def test_radiopaedia_no_known_layout_names_url_and_every_selector_tried():
    html = (saved("radiopaedia_case.html").replace("view-fullscreen-link", "x")
            .replace("main-study-desc", "y"))
    with pytest.raises(ParseError) as err:
        radiopaedia.parse_case(html, "https://radiopaedia.org/cases/x")
    msg = str(err.value)
    assert "https://radiopaedia.org/cases/x" in msg and "study ids" in msg
    assert all(s in msg for s in ("view-fullscreen-link", "main-study-desc", "data-study-id"))


# -- SIRM -----------------------------------------------------------------------------------------------------
def test_sirm_listing_tagdiv_modules_and_the_bare_next_arrow():
    url = "https://www.sirm.org/category/senza-categoria/covid-19/"
    refs, nxt = sirm.parse_listing(saved("sirm_listing.html"), url)
    assert [(r.case_id, str(r.published)) for r in refs] == [("covid-19-caso-58", "2020-03-21"),
                                                            ("covid-19-caso-57", "2020-03-20")]  # time, else URL
    assert nxt == "https://www.sirm.org/category/senza-categoria/covid-19/page/2/"


def test_sirm_listing_last_page_has_no_next_and_plain_wordpress_still_parses():
    html = saved("sirm_listing.html").replace('<i class="td-icon-menu-right"></i>', "")
    html = html.replace('<a href="https://www.sirm.org/category/senza-categoria/covid-19/page/2/"></a>', "")
    html = html.replace('<span class="current">1</span>', "").replace('class="page"', 'class="page"')
    refs, nxt = sirm.parse_listing(html.replace("td_module_19", "td_module_x").replace("td_module_wrap", "w")
                                   .replace('<div class="td-ss-main-content">', '<div><article>')
                                   , "https://www.sirm.org/c/")
    assert len(refs) == 1 and nxt is None  # the fallback <article> holds the first entry's title link
    wp = ('<html><body><article><h2 class="entry-title"><a href="/2020/03/03/covid19-caso-2/">COVID-19: caso 2</a>'
          '</h2></article><a class="next page-numbers" href="/c/page/2/">Successivo</a></body></html>')
    refs, nxt = sirm.parse_listing(wp, "https://www.sirm.org/c/")
    assert [(r.case_id, str(r.published)) for r in refs] == [("covid19-caso-2", "2020-03-03")]
    assert nxt == "https://www.sirm.org/c/page/2/"


def test_sirm_post_age_sex_and_italian_captions():
    case = sirm.parse_post(saved("sirm_post.html"), "https://www.sirm.org/2020/03/21/covid-19-caso-58/")
    assert (case.case_id, case.age_years, case.sex, case.published) == ("covid-19-caso-58", 45.0, "F", "2020-03-21")
    assert case.diagnosis == "COVID-19: caso 58" and "SARS-CoV-2" in case.findings
    assert case.extra["layout"].startswith("div.td-post-content")
    got = [(i.url.rsplit("/", 1)[-1], i.modality, i.view) for i in case.images]
    assert got == [("caso58-1.jpg", "xray", "PA"), ("caso58-2.jpg", "ct", "unknown"),  # featured copy merged
                   ("caso58-3-orig.jpg", "xray", "AP_supine"), ("caso58-4.jpg", "xray", "L")]
    assert "RX torace" not in case.findings  # captions are not the case text


def test_sirm_changed_layout():
    html = saved("sirm_post.html").replace("td-post-content", "post-body")
    with pytest.raises(ParseError, match="caso-58.*td-post-content.*entry-content"):
        sirm.parse_post(html, "https://www.sirm.org/2020/03/21/covid-19-caso-58/")
    with pytest.raises(ParseError, match="td_module_19"):
        sirm.parse_listing("<html><body><div class='posts'></div></body></html>", "https://www.sirm.org/c/")


# -- Eurorad --------------------------------------------------------------------------------------------------
def test_eurorad_sitemap_lists_case_numbers():
    nested, ids = eurorad.parse_sitemap(saved("eurorad_sitemap.xml"), "https://www.eurorad.org/sitemap.xml")
    assert nested == [] and ids == [16630, 16631]
    index = ('<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>/sitemap.xml?page=2'
             '</loc></sitemap></sitemapindex>')
    assert eurorad.parse_sitemap(index, "https://www.eurorad.org/sitemap.xml")[0] == [
        "https://www.eurorad.org/sitemap.xml?page=2"]
    with pytest.raises(ParseError, match="sitemap"):
        eurorad.parse_sitemap("<html></html>", "https://www.eurorad.org/sitemap.xml")


def test_eurorad_case_rows_patient_line_and_full_size_figures():
    case = eurorad.parse_case(saved("eurorad_case.html"), "https://www.eurorad.org/case/16711")
    assert (case.case_id, case.age_years, case.sex, case.published) == ("16711", 58.0, "M", "2020-03-20")
    assert case.diagnosis == "COVID-19 pneumonia" and case.license == "CC BY-NC-SA 4.0"
    assert "SARS-CoV-2" in case.extra["history"] and "lower zones" in case.findings
    assert [(i.modality, i.view) for i in case.images] == [("xray", "PA"), ("ct", "unknown")]
    assert case.images[0].url == ("https://www.eurorad.org/sites/default/files/styles/figure_image/public/figures/"
                                  "2020-03/fig1.jpg?itok=Ab12Cd34")  # _teaser_large dropped, data-src not src
    assert case.images[0].caption.startswith("Figure 1a: Chest X-ray")
    assert "influenza" in case.extra["differential"]


def test_eurorad_changed_layout():
    html = saved("eurorad_case.html").replace("col-md-3", "col-md-4")
    with pytest.raises(ParseError, match="case/16711.*col-md-3"):
        eurorad.parse_case(html, "https://www.eurorad.org/case/16711")


# -- shared text rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, age, sex", [
    ("Uomo, 65 anni. Febbre.", 65.0, "M"), ("Donna di 45 anni, dispnea.", 45.0, "F"),
    ("Paziente maschio di 70 anni.", 70.0, "M"), ("A 58-year-old man with fever.", 58.0, "M"),
    ("Ragazza di 16 anni", 16.0, "F"), ("Febbre da 5 giorni.", None, None), ("65 years, female", 65.0, "F"),
])
def test_age_sex_from_text(text, age, sex):
    assert age_sex_from_text(text)[:2] == (age, sex)


@pytest.mark.parametrize("caption, modality, view", [
    ("RX torace in proiezione AP", "xray", "AP"), ("Chest X-ray, PA view", "xray", "PA"),
    ("TC del torace", "ct", "unknown"), ("Radiografia in posizione supina", "xray", "AP_supine"),
    ("Lateral chest radiograph", "xray", "L"), ("RX e TC a confronto", None, "unknown"), (None, None, "unknown"),
    ("Ecografia polmonare", "us", "unknown"), ("Figura 1", None, "unknown"),
])
def test_caption_rules(caption, modality, view):
    assert modality_from_text(caption) == modality
    assert view_from_text(caption) == view


@pytest.mark.parametrize("diagnosis, label", [
    ("COVID-19 pneumonia", "covid19"), ("COVID-19: caso 12", "covid19"), ("SARS-CoV-2 infection", "covid19"),
    ("Pneumonia", "pneumonia"), ("COVID-19 excluded; lobar pneumonia", "unknown"),
    ("negativo per SARS-CoV-2", "unknown"), (None, "unknown"), ("Lipoid pneumonia", "unknown"),
])
def test_label_from_diagnosis(diagnosis, label):
    assert label_from_diagnosis(diagnosis) == label


def test_sirm_diagnosis_from_the_text_when_the_title_does_not_say():
    html = saved("sirm_post.html").replace("COVID-19: caso 58", "Caso 58")
    case = sirm.parse_post(html, "https://sirm.org/2020/03/21/caso-58/")
    assert case.diagnosis == "Tampone positivo per SARS-CoV-2."
    assert label_from_diagnosis(case.diagnosis) == "covid19"
