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
def test_radiopaedia_search_lists_cases_and_the_next_page():
    refs, nxt = radiopaedia.parse_search(saved("radiopaedia_search.html"), "https://radiopaedia.org/search?q=covid")
    assert [r.case_id for r in refs] == ["covid-19-pneumonia-12", "covid-19-pneumonia-bilateral", "75186"]
    assert refs[0].url == "https://radiopaedia.org/cases/covid-19-pneumonia-12"
    assert nxt == "https://radiopaedia.org/search?lang=us&page=2&q=covid-19&scope=cases"


def test_radiopaedia_case_page():
    url = "https://radiopaedia.org/cases/covid-19-pneumonia-12"
    case, studies = radiopaedia.parse_case(saved("radiopaedia_case.html"), url)
    assert studies == ["72631", "72632"]
    assert (case.case_id, case.title, case.age_years, case.sex) == ("covid-19-pneumonia-12", "COVID-19 pneumonia",
                                                                   70.0, "F")
    assert case.license == "CC BY-NC-SA 3.0" and case.published == "2020-03-24"
    assert case.diagnosis == "COVID-19 pneumonia" and "lower zone" in case.findings
    assert "RT-PCR positive" in case.extra["discussion"]


def test_radiopaedia_stacks_keep_order_modality_and_view():
    url = "https://radiopaedia.org/studies/72631/stacks?lang=us"
    images = radiopaedia.parse_stacks(json.loads(saved("radiopaedia_stacks.json")), url, "72631")
    got = [(i.modality, i.view, i.position) for i in images]
    assert got == [("xray", "AP", 1), ("xray", "L", 2), ("ct", "unknown", 1)]
    assert images[0].url == "https://prod-images-static.radiopaedia.org/images/34/a1_big_gallery.jpeg"
    assert images[2].url == "https://radiopaedia.org/images/40/c_big_gallery.jpeg"  # relative -> absolute
    assert images[0].extra["public_filename"].endswith("a1.png")


@pytest.mark.parametrize("bad", [{"stacks": []}, [{"images": []}], [{"modality": "X-ray", "images": [{"id": 1}]}]])
def test_radiopaedia_stacks_json_that_changed_is_a_parse_error(bad):
    with pytest.raises(ParseError, match="studies/9/stacks"):
        radiopaedia.parse_stacks(bad, "https://radiopaedia.org/studies/9/stacks", "9")


def test_radiopaedia_changed_layout_names_url_and_what_was_expected():
    html = saved("radiopaedia_case.html").replace("data-study-id", "data-x-study")
    with pytest.raises(ParseError) as err:
        radiopaedia.parse_case(html, "https://radiopaedia.org/cases/x")
    assert "https://radiopaedia.org/cases/x" in str(err.value) and "data-study-id" in str(err.value)
    with pytest.raises(ParseError, match="search-results"):
        radiopaedia.parse_search("<html><body><div class='results-v2'></div></body></html>", "https://r/search")


# -- SIRM -----------------------------------------------------------------------------------------------------
def test_sirm_listing():
    refs, nxt = sirm.parse_listing(saved("sirm_listing.html"), "https://sirm.org/category/senza-categoria/covid-19/")
    assert [(r.case_id, str(r.published)) for r in refs] == [("covid-19-caso-58", "2020-03-21"),
                                                            ("covid-19-caso-57", "2020-03-20")]
    assert nxt == "https://sirm.org/category/senza-categoria/covid-19/page/2/"


def test_sirm_post_age_sex_and_italian_captions():
    case = sirm.parse_post(saved("sirm_post.html"), "https://sirm.org/2020/03/21/covid-19-caso-58/")
    assert (case.case_id, case.age_years, case.sex, case.published) == ("covid-19-caso-58", 45.0, "F", "2020-03-21")
    assert case.diagnosis == "COVID-19: caso 58" and "SARS-CoV-2" in case.findings
    got = [(i.url.rsplit("/", 1)[-1], i.modality, i.view) for i in case.images]
    assert got == [("caso58-1.jpg", "xray", "PA"), ("caso58-2.jpg", "ct", "unknown"),
                   ("caso58-3-orig.jpg", "xray", "AP_supine"), ("caso58-4.jpg", "xray", "L")]
    assert case.images[0].caption.startswith("RX torace")
    assert "RX torace" not in case.findings  # captions are not the case text


def test_sirm_changed_layout():
    html = saved("sirm_post.html").replace("entry-content", "post-body")
    with pytest.raises(ParseError, match="caso-58.*entry-content"):
        sirm.parse_post(html, "https://sirm.org/2020/03/21/covid-19-caso-58/")
    with pytest.raises(ParseError, match="<article>"):
        sirm.parse_listing("<html><body><div class='posts'></div></body></html>", "https://sirm.org/c/")


# -- Eurorad --------------------------------------------------------------------------------------------------
def test_eurorad_search():
    refs, nxt = eurorad.parse_search(saved("eurorad_search.html"), "https://www.eurorad.org/advanced-search?search=x")
    assert [r.case_id for r in refs] == ["16711", "16720", "16720"]  # the run loop drops repeats
    assert refs[1].url == "https://www.eurorad.org/case/16720"
    assert nxt == "https://www.eurorad.org/advanced-search?search=COVID-19&page=1"


def test_eurorad_case():
    case = eurorad.parse_case(saved("eurorad_case.html"), "https://www.eurorad.org/case/16711")
    assert (case.case_id, case.age_years, case.sex, case.published) == ("16711", 58.0, "M", "2020-03-20")
    assert case.diagnosis == "COVID-19 pneumonia" and case.license == "CC BY-NC-SA 4.0"
    assert [(i.modality, i.view) for i in case.images] == [("xray", "PA"), ("ct", "unknown")]
    assert case.images[0].url.endswith("/figures/2020-03/fig1.jpg")
    assert "influenza" in case.extra["differential"]


def test_eurorad_changed_layout():
    html = saved("eurorad_case.html").replace("<h2>", "<div class='h'>").replace("</h2>", "</div>")
    with pytest.raises(ParseError, match="case/16711.*Final Diagnosis"):
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
