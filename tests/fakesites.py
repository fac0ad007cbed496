"""Fake copies of the scraped sites, page for page in each site's structure, served by ``FakeWeb``.

Each ``*_site`` function adds a small site to a ``FakeWeb``: two listing pages (pagination), COVID-19 cases with
X-ray and CT images, and returns the expectations the tests check.
"""

from __future__ import annotations

import json

from fakeweb import FakeWeb, image_bytes

PAGE = """<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<script>window.dataLayer = [];</script></head><body><nav class="navbar"><a href="/">Home</a></nav>
<main>{main}</main><footer>{footer}</footer></body></html>"""


def page(main: str, title: str = "page", lang: str = "en", footer: str = "") -> str:
    return PAGE.format(main=main, title=title, lang=lang, footer=footer)


# -- Radiopaedia ----------------------------------------------------------------------------------------------
def radiopaedia_search(cases: list[tuple[str, str]], next_href: str | None) -> str:
    items = "".join(
        f'<a class="search-result search-result-case" href="/cases/{slug}?lang=us">'
        f'<div class="search-result-body"><h4 class="search-result-title-text">{title}</h4>'
        f'<div class="search-result-author">Dr A. Author</div></div></a>' for slug, title in cases)
    nav = (f'<div class="pagination" role="navigation"><span class="current">1</span>'
           f'<a class="next_page" rel="next" href="{next_href}">Next &rsaquo;</a></div>' if next_href else "")
    return page(f'<div class="search-results">{items}</div>{nav}', "Search")


def radiopaedia_case(title: str, age: str | None, gender: str | None, study_ids: list[int], published: str,
                     license_href: str | None = "https://creativecommons.org/licenses/by-nc-sa/3.0/") -> str:
    data = "".join(f'<div class="data-item"><strong class="data-item-label">{k}:</strong> {v}</div>'
                   for k, v in (("Age", age), ("Gender", gender)) if v)
    studies = "".join(
        f'<div class="case-section case-study" data-study-id="{sid}" data-case-id="77">'
        f'<div class="study-desc">Study {sid}</div>'
        f'<div class="sub-section study-findings"><p>Bilateral peripheral opacities (study {sid}).</p></div></div>'
        for sid in study_ids)
    lic = (f'<div class="license"><a rel="license" href="{license_href}">CC-BY-NC-SA 3.0</a></div>'
           if license_href else "")
    main = (f'<h1 class="header-title">{title}</h1><div class="meta-item">Published '
            f'<time datetime="{published}">{published}</time></div>'
            f'<div class="case-section case-patient-data">{data}</div>'
            f'<div class="case-section case-presentation"><p>Fever and cough for a week.</p></div>'
            f'{studies}<div class="case-section case-discussion"><p>Typical COVID-19 pattern.</p></div>')
    return page(main, title, footer=lic)


def radiopaedia_stacks(base: str, study_id: int, stacks: list[tuple[str, list[tuple[str | None, str | None]]]]
                       ) -> str:
    out = []
    n = 0
    for modality, images in stacks:
        imgs = []
        for plane, aux in images:
            n += 1
            iid = study_id * 100 + n
            imgs.append({"id": iid, "fullscreen_filename": f"{base}/images/{iid}/abc{iid}_big_gallery.jpeg",
                         "public_filename": f"{base}/images/{iid}/abc{iid}.png", "plane_projection": plane,
                         "aux_modality": aux, "position": n, "content_type": "image/jpeg"})
        out.append({"id": study_id * 10 + len(out), "modality": modality, "images": imgs})
    return json.dumps(out)


def radiopaedia_site(web: FakeWeb) -> dict:
    """Three cases over two search pages; case 3 holds only CT."""
    base = web.url
    web.add("/robots.txt", "User-agent: *\nDisallow: /users/\n", content_type="text/plain")
    web.add("/search?lang=us&q=covid-19&scope=cases", radiopaedia_search(
        [("covid-19-pneumonia-1", "COVID-19 pneumonia"), ("covid-19-pneumonia-2", "COVID-19 pneumonia")],
        "/search?lang=us&page=2&q=covid-19&scope=cases"))
    web.add("/search?lang=us&page=2&q=covid-19&scope=cases",
            radiopaedia_search([("covid-19-ct-only-3", "COVID-19 pneumonia (CT)")], None))
    web.add("/cases/covid-19-pneumonia-1", radiopaedia_case("COVID-19 pneumonia", "65 years", "Male", [101],
                                                            "2020-03-20"))
    web.add("/cases/covid-19-pneumonia-2", radiopaedia_case("COVID-19 pneumonia", "45 years", "Female", [201, 202],
                                                            "2020-04-02", license_href=None))
    web.add("/cases/covid-19-ct-only-3", radiopaedia_case("COVID-19 pneumonia (CT)", None, None, [301],
                                                          "2020-04-10"))
    web.add("/studies/101/stacks", radiopaedia_stacks(base, 101, [("X-ray", [("Frontal", "PA"),
                                                                              ("Lateral", None)])]),
            content_type="application/json")
    web.add("/studies/201/stacks", radiopaedia_stacks(base, 201, [("X-ray", [("Frontal", "AP")])]),
            content_type="application/json")
    web.add("/studies/202/stacks", radiopaedia_stacks(base, 202, [("CT", [("Axial", None), ("Axial", None)])]),
            content_type="application/json")
    web.add("/studies/301/stacks", radiopaedia_stacks(base, 301, [("CT", [("Axial", None)])]),
            content_type="application/json")
    for n, iid in enumerate((10101, 10102, 20101, 20201, 20202, 30101)):
        web.add(f"/images/{iid}/abc{iid}_big_gallery.jpeg", image_bytes(shade=n * 30), ranges=True)
    return {"cases": 3, "xray_images": 3, "ct_images": 3, "image_prefix": "/images/"}


# -- SIRM -----------------------------------------------------------------------------------------------------
def sirm_listing(posts: list[tuple[str, str, str]], next_href: str | None) -> str:
    arts = "".join(
        f'<article class="post type-post status-publish format-standard hentry category-covid-19">'
        f'<header class="entry-header"><h2 class="entry-title"><a href="{href}" rel="bookmark">{title}</a></h2>'
        f'<div class="entry-meta"><time class="entry-date published" datetime="{when}T10:00:00+01:00">{when}'
        f'</time></div></header><div class="entry-summary"><p>Caso clinico&hellip;</p></div></article>'
        for href, title, when in posts)
    nav = (f'<nav class="navigation pagination"><div class="nav-links"><span class="page-numbers current">1</span>'
           f'<a class="next page-numbers" href="{next_href}">Successivo</a></div></nav>' if next_href else "")
    return page(f'<div id="primary" class="content-area">{arts}{nav}</div>', "COVID-19 Archivi", "it")


def sirm_post(title: str, when: str, text: str, figures: list[tuple[str, str | None]]) -> str:
    figs = "".join(
        (f'<figure class="wp-block-image size-large"><a href="{src}"><img src="{src[:-4]}-300x240{src[-4:]}" '
         f'alt=""/></a><figcaption>{cap}</figcaption></figure>' if cap is not None else
         f'<p><img class="aligncenter" src="{src}" alt=""/></p>') for src, cap in figures)
    main = (f'<article class="post"><header class="entry-header"><h1 class="entry-title">{title}</h1>'
            f'<time class="entry-date published" datetime="{when}T09:30:00+01:00">{when}</time></header>'
            f'<div class="entry-content"><p>{text}</p>{figs}<p>Diagnosi: polmonite interstiziale da COVID-19.</p>'
            f'</div></article>')
    return page(main, title, "it")


def sirm_site(web: FakeWeb) -> dict:
    """Three posts over two listing pages; post 1 mixes RX and TC, post 3 is older than 2020-03-01."""
    web.add("/robots.txt", "User-agent: *\nDisallow: /wp-admin/\n", content_type="text/plain")
    base = "/category/senza-categoria/covid-19/"
    web.add(base, sirm_listing([("/2020/03/20/covid-19-caso-1/", "COVID-19: caso 1", "2020-03-20"),
                                ("/2020/03/18/covid-19-caso-2/", "COVID-19: caso 2", "2020-03-18")],
                               f"{base}page/2/"))
    web.add(f"{base}page/2/", sirm_listing([("/2020/02/25/covid-19-caso-3/", "COVID-19: caso 3", "2020-02-25")],
                                           None))
    web.add("/2020/03/20/covid-19-caso-1/", sirm_post(
        "COVID-19: caso 1", "2020-03-20", "Uomo, 65 anni. Febbre e tosse da 5 giorni, tampone positivo.",
        [("/wp-content/uploads/2020/03/caso1-1.jpg", "RX torace eseguito a letto in proiezione AP: "
                                                     "opacità bilaterali."),
         ("/wp-content/uploads/2020/03/caso1-2.jpg", "TC del torace: opacità a vetro smerigliato."),
         ("/wp-content/uploads/2020/03/caso1-3.png", None)]))
    web.add("/2020/03/18/covid-19-caso-2/", sirm_post(
        "COVID-19: caso 2", "2020-03-18", "Donna di 45 anni, dispnea ingravescente.",
        [("/wp-content/uploads/2020/03/caso2-1.jpg", "Radiografia del torace in proiezione postero-anteriore.")]))
    web.add("/2020/02/25/covid-19-caso-3/", sirm_post(
        "COVID-19: caso 3", "2020-02-25", "Paziente maschio di 70 anni.",
        [("/wp-content/uploads/2020/02/caso3-1.jpg", "RX torace PA.")]))
    for n, name in enumerate(("2020/03/caso1-1.jpg", "2020/03/caso1-2.jpg", "2020/03/caso2-1.jpg",
                              "2020/02/caso3-1.jpg")):
        web.add(f"/wp-content/uploads/{name}", image_bytes(shade=n * 40), ranges=True)
    web.add("/wp-content/uploads/2020/03/caso1-3.png", image_bytes("PNG", shade=200), content_type="image/png")
    return {"cases": 3, "xray_images": 3, "image_prefix": "/wp-content/uploads/"}


# -- Eurorad --------------------------------------------------------------------------------------------------
def eurorad_search(cases: list[int], next_href: str | None) -> str:
    items = "".join(f'<div class="case-item views-row"><a href="/case/{n}"><h3>COVID-19 pneumonia, case {n}</h3>'
                    f'</a><span class="date">20.03.2020</span></div>' for n in cases)
    nav = (f'<nav class="pager"><ul class="pager__items"><li class="pager__item pager__item--next">'
           f'<a href="{next_href}" rel="next">Next</a></li></ul></nav>' if next_href else "")
    return page(f'<div class="view-content search-results">{items}</div>{nav}', "Advanced search")


def eurorad_case(number: int, patient: str, published: str, diagnosis: str,
                 figures: list[tuple[str, str]]) -> str:
    figs = "".join(f'<div class="figure"><h4 class="figure-title">Figure {i}</h4><a href="{src}">'
                   f'<img src="{src}?itok=thumb" alt="Figure {i}"></a><div class="figure-description">'
                   f'<p>Description: {cap}</p><p>Origin: Department of Radiology</p></div></div>'
                   for i, (src, cap) in enumerate(figures, 1))
    main = (f'<h1 class="case-title">COVID-19 pneumonia, case {number}</h1><div class="case-info">'
            f'<p>Published on {published}</p><p>DOI: 10.35100/eurorad/case.{number}</p><p>Section: Chest imaging</p>'
            f'<p>Patient: {patient}</p></div>'
            f'<div class="case-body"><h2>Clinical History</h2><p>Fever, cough and dyspnoea.</p>'
            f'<h2>Imaging Findings</h2><p>Bilateral ground-glass opacities.</p><div class="figures">{figs}</div>'
            f'<h2>Discussion</h2><p>COVID-19 is caused by SARS-CoV-2.</p>'
            f'<h2>Final Diagnosis</h2><p>{diagnosis}</p></div>')
    return page(main, f"Case {number}", footer="<p>Licensed under CC BY-NC-SA 4.0</p>")


def eurorad_site(web: FakeWeb) -> dict:
    """Three cases over two search pages; case 16712 has an X-ray and a CT."""
    web.add("/robots.txt", "User-agent: *\nDisallow: /user/\n", content_type="text/plain")
    web.add("/advanced-search?search=COVID-19", eurorad_search([16711, 16712], "?search=COVID-19&page=1"))
    web.add("/advanced-search?search=COVID-19&page=1", eurorad_search([16713], None))
    web.add("/case/16711", eurorad_case(16711, "65 years, male", "20.03.2020", "COVID-19 pneumonia",
                                        [("/sites/default/files/images/16711-1.jpg", "Chest X-ray, PA view.")]))
    web.add("/case/16712", eurorad_case(16712, "52 years, female", "25.03.2020", "COVID-19 pneumonia",
                                        [("/sites/default/files/images/16712-1.jpg", "Chest radiograph, AP supine."),
                                         ("/sites/default/files/images/16712-2.jpg", "Axial CT of the chest.")]))
    web.add("/case/16713", eurorad_case(16713, "30 years, female", "02.04.2020", "COVID-19 pneumonia",
                                        [("/sites/default/files/images/16713-1.jpg", "Lateral chest X-ray.")]))
    for n, name in enumerate(("16711-1", "16712-1", "16713-1")):
        web.add(f"/sites/default/files/images/{name}.jpg", image_bytes(shade=n * 50 + 10), ranges=True)
    return {"cases": 3, "xray_images": 3, "image_prefix": "/sites/default/files/images/"}
