"""Fake copies of the scraped sites on 127.0.0.1, page for page in the markup of the reconstructed fixtures.

The markup follows tests/fixtures/fetch/*.html, whose headers name the public evidence for each element (other
scrapers of these sites, stored pages, the theme's source). Each ``*_site`` function adds a small site to a
``FakeWeb`` (listing pages with pagination, COVID-19 cases with X-ray and CT images) and returns what the tests
expect.
"""

from __future__ import annotations

import io
import json
import zipfile

from fakeweb import FakeWeb, image_bytes

PAGE = """<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<script>window.dataLayer = [];</script></head><body>{main}</body></html>"""


def page(main: str, title: str = "page", lang: str = "en") -> str:
    return PAGE.format(main=main, title=title, lang=lang)


# -- Radiopaedia ----------------------------------------------------------------------------------------------
def radiopaedia_search(cases: list[tuple[str, str, str | None]], next_href: str | None) -> str:
    """Results as ``a.search-result.search-result-case`` anywhere on the page, ``span.published``, ``a.next_page``."""
    items = "".join(
        f'<a class="search-result search-result-case" href="/cases/{slug}?lang=us">'
        f'<h4 class="search-result-title-text">{title}</h4><div class="search-result-author"><span>Dr A. Author'
        f'</span></div>' + (f'<span class="published">Published {when}</span>' if when else "") + "</a>"
        for slug, title, when in cases)
    nav = (f'<div role="navigation" aria-label="Pagination" class="pagination clear"><em class="current">1</em>'
           f'<a class="next_page" aria-label="Next page" rel="next" href="{next_href}">Next &#8594;</a></div>'
           if next_href else "")
    return page(f'<div id="main">{items}{nav}</div>', "Search results")


def radiopaedia_case(title: str, age: str | None, gender: str | None, study_ids: list[int], published: str | None,
                     layout: str = "2024", case_number: int = 77) -> str:
    """A case page in the 2024 (``view-fullscreen-link``), 2023 (``main-study-desc``) or 2020 (``data-study-id``)
    layout."""
    data = "".join(f'<div class="data-item"><strong class="data-item-label">{k}:</strong> {v}</div>'
                   for k, v in (("Age", age), ("Gender", gender)) if v)
    studies = ""
    for sid in study_ids:
        marker = {"2024": f'<a class="view-fullscreen-link" href="/cases/{case_number}/studies/{sid}?lang=us">'
                          f'View</a>',
                  "2023": f'<div class="main-study-desc" id="study-desc-{sid}"></div>', "2020": ""}[layout]
        attr = f' data-study-id="{sid}"' if layout == "2020" else ""
        studies += (f'<div class="case-section case-study"{attr}>{marker}<div class="sub-section study-findings '
                    f'body"><p>Bilateral peripheral opacities (study {sid}).</p></div></div>')
    header = (f'<div id="content-header"><h1 class="header-title">{title}</h1>'
              + (f'<div class="row"><div class="col-sm-3"><strong>Case published:</strong></div>'
                 f'<div class="col-sm-8">{published}</div></div>' if published else "") + "</div>")
    main = (f'<div id="main">{header}<div class="user-generated-content"><div id="case-patient-presentation">'
            f'<p>Fever and cough for a week.</p></div><div id="case-patient-data">{data}</div>{studies}</div></div>')
    return page(main, title)


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
                         "aux_modality": aux, "position": n, "content_type": "image/png"})
        out.append({"id": study_id * 10 + len(out), "modality": modality, "images": imgs})
    return json.dumps(out)


def radiopaedia_site(web: FakeWeb) -> dict:
    """Three cases over two search pages, one per page layout; case 3 holds only CT."""
    base = web.url
    web.add("/robots.txt", "User-agent: *\nDisallow: /users/\n", content_type="text/plain")
    web.add("/search?lang=us&q=covid-19&scope=cases", radiopaedia_search(
        [("covid-19-pneumonia-1", "COVID-19 pneumonia", "20 Mar 2020"),
         ("covid-19-pneumonia-2", "COVID-19 pneumonia", "2 Apr 2020")],
        "/search?lang=us&page=2&q=covid-19&scope=cases"))
    web.add("/search?lang=us&page=2&q=covid-19&scope=cases",
            radiopaedia_search([("covid-19-ct-only-3", "COVID-19 pneumonia (CT)", "10 Apr 2020")], None))
    web.add("/cases/covid-19-pneumonia-1", radiopaedia_case("COVID-19 pneumonia", "65 years", "Male", [101],
                                                            "20 Mar 2020", "2024"))
    web.add("/cases/covid-19-pneumonia-2", radiopaedia_case("COVID-19 pneumonia", "45 years", "Female", [201, 202],
                                                            None, "2020"))
    web.add("/cases/covid-19-ct-only-3", radiopaedia_case("COVID-19 pneumonia (CT)", None, None, [301],
                                                          "10 Apr 2020", "2023"))
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
        web.add(f"/images/{iid}/abc{iid}.png", image_bytes("PNG", shade=n * 30), content_type="image/png",
                ranges=True)
    return {"cases": 3, "xray_images": 3, "ct_images": 3, "image_prefix": "/images/"}


# -- SIRM -----------------------------------------------------------------------------------------------------
def sirm_listing(posts: list[tuple[str, str, str | None]], next_href: str | None) -> str:
    """tagDiv ``div.td_module_19`` entries and a ``div.page-nav`` whose next arrow is a bare ``<a>``."""
    mods = "".join(
        f'<div class="td_module_19 td_module_wrap td-animation-stack td-meta-info-hide"><div class="meta-info-'
        f'container"><div class="td-module-image"><div class="td-module-thumb"><a href="{href}" rel="bookmark">'
        f'<img class="entry-thumb" src="data:image/png;base64,iVBORw0KGgo=" data-img-url="/thumb.jpg"/></a></div>'
        f'</div><div class="td-item-details"><div class="td-module-meta-info"><h3 class="entry-title td-module-'
        f'title"><a href="{href}" rel="bookmark" title="{title}">{title}</a></h3>'
        + (f'<span class="td-post-date"><time class="entry-date updated td-module-date" datetime="{when}T10:00:00'
           f'+01:00">{when}</time></span>' if when else "")
        + '</div></div></div></div>' for href, title, when in posts)
    nav = ('<div class="page-nav td-pb-padding-side"><span class="current">1</span>'
           + (f'<a href="{next_href}" class="page" title="2">2</a><a href="{next_href}" class="last" title="2">2</a>'
              f'<a href="{next_href}"><i class="td-icon-menu-right"></i></a>' if next_href else "")
           + '<span class="pages">Pagina 1 di 2</span></div>')
    return page(f'<div class="td-ss-main-content">{mods}{nav}</div>', "COVID-19 Archivi - SIRM", "it")


def sirm_post(title: str, when: str, text: str, figures: list[tuple[str, str | None]]) -> str:
    """A tagDiv single post: ``h1.entry-title``, ``time.entry-date``, the text and images in ``div.td-post-content``."""
    figs = "".join(
        (f'<figure class="wp-block-image"><a href="{src}"><img src="{src[:-4]}-300x240{src[-4:]}" alt=""/></a>'
         f'<figcaption>{cap}</figcaption></figure>' if cap is not None else
         f'<p><img class="aligncenter" src="{src}" alt=""/></p>') for src, cap in figures)
    main = (f'<article class="post"><div class="td-post-header"><header class="td-post-title"><h1 class="entry-'
            f'title">{title}</h1><div class="td-module-meta-info"><span class="td-post-date"><time class="entry-'
            f'date updated td-module-date" datetime="{when}T09:30:00+01:00">{when}</time></span></div></header>'
            f'</div><div class="td-post-content"><p>{text}</p>{figs}<p>Diagnosi: polmonite interstiziale da '
            f'COVID-19.</p></div></article>')
    return page(main, title, "it")


def sirm_site(web: FakeWeb) -> dict:
    """Three posts over two listing pages; post 1 mixes RX and TC, post 3 is older than 2020-03-01 (its date only in
    the URL, as td-meta-info-hide listings may show none)."""
    web.add("/robots.txt", "User-agent: *\nDisallow: /wp-admin/\n", content_type="text/plain")
    base = "/category/senza-categoria/covid-19/"
    web.add(base, sirm_listing([("/2020/03/20/covid-19-caso-1/", "COVID-19: caso 1", "2020-03-20"),
                                ("/2020/03/18/covid-19-caso-2/", "COVID-19: caso 2", "2020-03-18")],
                               f"{base}page/2/"))
    web.add(f"{base}page/2/", sirm_listing([("/2020/02/25/covid-19-caso-3/", "COVID-19: caso 3", None)], None))
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
def eurorad_sitemap(numbers: list[int]) -> str:
    urls = "".join(f"<url><loc>https://www.eurorad.org/case/{n}</loc></url>" for n in numbers)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'


def eurorad_case(number: int, title: str, patient: str, published: str, diagnosis: str,
                 figures: list[tuple[str, str]]) -> str:
    """``div.row`` sections (label ``col-md-3``, text ``col-md-9``), ``p.color-grey``, lazy teaser figures."""
    figs = "".join(f'<div class="figure-gallery__item"><a href="#"><img typeof="foaf:Image" src="data:image/gif;'
                   f'base64,R0lGODlhAQABAAAAACw=" data-src="/sites/default/files/styles/figure_image_teaser_large/'
                   f'public/figures/{name}?itok=x{i}"></a><div class="figure-gallery__item__label"><span class="mb-1 '
                   f'd-block">Figure {i}: {cap}</span></div></div>' for i, (name, cap) in enumerate(figures, 1))

    def row(label: str, body: str) -> str:
        return (f'<div class="row"><div class="col-12 col-md-3">{label}</div>'
                f'<div class="col-12 col-md-9">{body}</div></div>')

    main = (f'<span class="d-block font-size-1 text-center">Published on {published}</span>'
            f'<h1 class="color-color mb-3">{title}</h1><p>Patient</p><p class="color-grey">{patient}</p>'
            f'<div class="block__content node-contents">'
            + row("CLINICAL HISTORY", "<p>Fever, cough and dyspnoea.</p>")
            + row("IMAGING FINDINGS", f'<p>Bilateral ground-glass opacities.</p><div class="figure-gallery">{figs}'
                                      f'</div>')
            + row("DISCUSSION", "<p>Discussion of the case.</p>") + row("FINAL DIAGNOSIS", diagnosis) + "</div>")
    return page(main, "Eurorad.org")


def eurorad_site(web: FakeWeb) -> dict:
    """Four numbers in the sitemap: three COVID-19 cases (16712 has an X-ray and a CT) and one on another topic."""
    web.add("/robots.txt", "User-agent: *\nDisallow: /user/\n", content_type="text/plain")
    web.add("/sitemap.xml", eurorad_sitemap([16711, 16712, 16713, 16714]), content_type="application/xml")
    web.add("/case/16711", eurorad_case(16711, "COVID-19 pneumonia", "65 years, male", "20.03.2020",
                                        "COVID-19 pneumonia", [("2020-03/16711-1.jpg", "Chest X-ray, PA view.")]))
    web.add("/case/16712", eurorad_case(16712, "Viral pneumonia in 2020", "52 years, female", "25.03.2020",
                                        "COVID-19 pneumonia", [("2020-03/16712-1.jpg", "Chest radiograph, AP supine."),
                                                               ("2020-03/16712-2.jpg", "Axial CT of the chest.")]))
    web.add("/case/16713", eurorad_case(16713, "COVID-19 pneumonia", "30 years, female", "02.04.2020",
                                        "SARS-CoV-2 pneumonia", [("2020-04/16713-1.jpg", "Lateral chest X-ray.")]))
    web.add("/case/16714", eurorad_case(16714, "Lobar pneumonia", "40 years, male", "03.04.2020",
                                        "Streptococcal pneumonia", [("2020-04/16714-1.jpg", "Chest X-ray, PA.")]))
    for n, name in enumerate(("2020-03/16711-1", "2020-03/16712-1", "2020-04/16713-1")):
        web.add(f"/sites/default/files/styles/figure_image/public/figures/{name}.jpg",
                image_bytes(shade=n * 50 + 10), ranges=True)
    return {"cases": 3, "xray_images": 3, "image_prefix": "/sites/default/files/", "skipped_topic": 1}


# -- NLM TB (direct download) ---------------------------------------------------------------------------------
def montgomery_zip(normal: int = 2, tb: int = 1) -> bytes:
    """A small zip in the NLM archive's layout (``MontgomerySet/CXR_png``, ``ClinicalReadings``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(1, normal + tb + 1):
            stem = f"MCUCXR_{i:04d}_{0 if i <= normal else 1}"
            zf.writestr(f"MontgomerySet/CXR_png/{stem}.png", image_bytes("PNG", shade=i * 20))
            zf.writestr(f"MontgomerySet/ClinicalReadings/{stem}.txt",
                        "Patient's Sex: F\nPatient's Age: 052Y\nnormal\n")
    return buf.getvalue()
