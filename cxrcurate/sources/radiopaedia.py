"""Radiopaedia cases fetched by ``cxrcurate fetch --source radiopaedia`` (X-ray stacks of COVID-19 cases).

The folder layout, the accounting and the label rule are those of ``casejson.CaseFolderSource``. The diagnosis
is the case title (Radiopaedia titles a case by its diagnosis, e.g. "COVID-19 pneumonia"); age and sex come from
the case's patient data; the view from the image's projection (``aux_modality`` PA/AP, ``plane_projection``
Lateral). The license is the one the case page states, CC BY-NC-SA 3.0 by default.
"""

from __future__ import annotations

from . import register
from .base import Scraped
from .casejson import CaseFolderSource


@register
class Radiopaedia(CaseFolderSource):
    """Radiopaedia case pages and their X-ray stacks, one case file per case."""

    name = "radiopaedia"
    title = "Radiopaedia cases (scraped by cxrcurate fetch)"
    homepage = "https://radiopaedia.org"
    license = "CC BY-NC-SA 3.0 (unless the case states otherwise)"
    fetch = Scraped(
        "radiopaedia:Radiopaedia", delay=4.0, terms_url="https://radiopaedia.org/terms",
        terms="Radiopaedia's terms of use state that its content is not available for bulk download by an automated "
              "script or robot, and the site answers automated clients with bot challenges",
        requires_ack=True,
        alternative="the Cohen collection (cxrcurate fetch --source cohen) already redistributes the Radiopaedia "
                    "COVID-19 cases with their licenses")
