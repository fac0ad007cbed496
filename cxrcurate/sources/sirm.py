"""SIRM COVID-19 case-series posts fetched by ``cxrcurate fetch --source sirm``.

The folder layout, the accounting and the label rule are those of ``casejson.CaseFolderSource``. Every post of
the series is one case; its title ("COVID-19: caso 12") is the diagnosis, so the images are ``covid19``. Age and
sex come from the Italian text ("Uomo, 65 anni", "Donna di 45 anni"); modality and view from the Italian
captions ("RX torace in proiezione AP" is an AP X-ray, "TC" is CT and is left out as ``not_xray``). SIRM states
no open license for the posts; the records say so.
"""

from __future__ import annotations

from . import register
from .base import Scraped
from .casejson import CaseFolderSource


@register
class Sirm(CaseFolderSource):
    """The SIRM COVID-19 case series, one case file per post."""

    name = "sirm"
    title = "SIRM COVID-19 case series (scraped by cxrcurate fetch)"
    homepage = "https://www.sirm.org/category/senza-categoria/covid-19/"
    license = "not stated by SIRM (check reuse terms with SIRM)"
    fetch = Scraped("sirm:Sirm", delay=2.0, terms_url="https://www.sirm.org/")
