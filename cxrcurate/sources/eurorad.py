"""Eurorad cases fetched by ``cxrcurate fetch --source eurorad``.

The folder layout, the accounting and the label rule are those of ``casejson.CaseFolderSource``. The diagnosis
is the case's "Final Diagnosis" section; age and sex come from "Patient: 65 years, male"; modality and view from
each figure's caption ("Chest X-ray, PA view"). Eurorad cases are CC BY-NC-SA 4.0.
"""

from __future__ import annotations

from . import register
from .base import Scraped
from .casejson import CaseFolderSource


@register
class Eurorad(CaseFolderSource):
    """Eurorad case pages and their figures, one case file per case."""

    name = "eurorad"
    title = "Eurorad cases (scraped by cxrcurate fetch)"
    homepage = "https://www.eurorad.org"
    license = "CC BY-NC-SA 4.0"
    fetch = Scraped("eurorad:Eurorad", delay=5.0, terms_url="https://www.eurorad.org/")
