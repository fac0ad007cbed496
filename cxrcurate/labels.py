"""The closed label vocabulary and the normalisers every source shares (labels, views, ages, sexes).

Findings are matched by whole tokens, never by substring: ``"Spinal Tuberculosis"`` does not contain the
token ``tuberculosis`` as a finding of the lungs, and ``"COVID-19, ARDS"`` is COVID-19 with a complication.
"""

from __future__ import annotations

import logging
import math
import re

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("normal", "covid19", "pneumonia", "other", "unknown")
VIEWS: tuple[str, ...] = ("PA", "AP", "AP_supine", "L", "unknown")
FRONTAL_VIEWS = frozenset({"PA", "AP", "AP_supine"})
PEDIATRIC_AGE = 18.0

# Tokens are lower-cased, whitespace-collapsed parts of a finding split on "/", "," ";" and "|".
_COVID = {"covid-19", "covid19", "covid 19", "sars-cov-2", "covid"}
_NORMAL = {"no finding", "normal", "no findings", "negative"}
_UNKNOWN = {"todo", "unknown", "inconclusive", "n/a", ""}
# Non-infectious pneumonitis and other named findings that are not the paper's pneumonia class.
_OTHER = {
    "lipoid", "aspiration", "ards", "tuberculosis", "tb", "cardiomegaly", "effusion", "atelectasis",
    "edema", "emphysema", "fibrosis", "hernia", "mass", "nodule", "pleural_thickening", "pneumothorax",
    "consolidation", "infiltration", "chronic eosinophilic pneumonia", "eosinophilic", "cancer",
}
# Infectious pneumonia: the class names and organisms the public collections use.
_PNEUMONIA = {
    "pneumonia", "bacterial", "viral", "fungal", "bacteria", "virus", "sars", "mers", "mers-cov",
    "influenza", "h1n1", "varicella", "herpes", "streptococcus", "klebsiella", "legionella", "e.coli",
    "e. coli", "escherichia coli", "staphylococcus", "staphylococcus aureus", "mrsa", "chlamydophila",
    "mycoplasma", "mycoplasma bacterial pneumonia", "nocardia", "pneumocystis", "aspergillosis",
    "candida", "mycobacterium", "community-acquired pneumonia", "cap", "bacterial pneumonia",
    "viral pneumonia", "fungal pneumonia", "pseudomonas",
}
_SPLIT = re.compile(r"[/,;|]")


def finding_tokens(finding: str | None) -> list[str]:
    """Split a raw finding into lower-cased whole tokens (``"Pneumonia/Viral/COVID-19"`` -> 3 tokens)."""
    if finding is None or (isinstance(finding, float) and math.isnan(finding)):
        return []
    return [" ".join(t.split()).lower() for t in _SPLIT.split(str(finding)) if t.strip()]


def label_from_finding(finding: str | None) -> str:
    """Map a raw finding (either Cohen schema, NIH-style, or a plain class name) to the label vocabulary.

    Precedence: any COVID-19 token wins; then a non-infectious token (``lipoid`` in
    ``Pneumonia/Lipoid``) makes it ``other``; then any infectious token makes it ``pneumonia``;
    ``No Finding`` alone is ``normal``; ``todo``/empty is ``unknown``. A token nobody listed yet is
    ``unknown`` (logged), never guessed.
    """
    tokens = finding_tokens(finding)
    if not tokens or all(t in _UNKNOWN for t in tokens):
        return "unknown"
    if any(t in _COVID for t in tokens):
        return "covid19"
    known = _NORMAL | _UNKNOWN | _OTHER | _PNEUMONIA
    unmapped = [t for t in tokens if t not in known]
    if unmapped:
        log.warning("finding %r has tokens with no label mapping %s: labelled 'unknown'", finding, unmapped)
        return "unknown"
    if any(t in _OTHER for t in tokens):
        return "other"
    if any(t in _PNEUMONIA for t in tokens):
        return "pneumonia"
    if any(t in _NORMAL for t in tokens):
        return "normal"
    return "unknown"


def normalize_view(raw: str | None) -> str:
    """Map the many spellings of a projection (``AP Supine``, ``APS``, ``ap``, ``AP erect``) to ``VIEWS``."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return "unknown"
    v = " ".join(str(raw).replace("_", " ").split()).lower()
    if v in {"pa", "posteroanterior", "pa erect"}:
        return "PA"
    if v in {"ap supine", "aps", "supine", "ap liegend", "bettaufnahme"}:
        return "AP_supine"
    if v in {"ap", "ap erect", "ap upright", "anteroposterior", "ap semi erect", "ap semi-erect"}:
        return "AP"
    if v in {"l", "lateral", "ll", "rl", "lat"}:
        return "L"
    return "unknown"


def normalize_sex(raw: str | None) -> str | None:
    """``M``/``F`` from the spellings sources use (``male``, ``f``, ``w`` for German *weiblich*); else None."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    v = str(raw).strip().lower()
    if v in {"m", "male", "man", "uomo", "maschio"}:
        return "M"
    if v in {"f", "female", "w", "woman", "donna", "femmina"}:
        return "F"
    return None


_DECADE = re.compile(r"^(early|mid|late)?\s*(\d{1,2})0'?s$")
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)\s*(\+|y|yr|yrs|years?|yo|y/o)?$")
_MONTHS = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|mo|mos|months?)$")
MAX_AGE = 120.0


def parse_age(raw: object) -> float | None:
    """Age in years from what sources write: ``47``, ``047Y``, ``1.5``, ``50+`` (lower bound), ``early 40s``
    (42), ``mid 50s`` (55), ``late 60s`` (68), ``9 months``. Impossible ages (> 120) and text give None."""
    if raw is None:
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        v = " ".join(str(raw).strip().lower().split())
        if v.startswith("0") and v.endswith("y") and v[:-1].isdigit():
            v = v[:-1]
        if m := _NUMBER.match(v):
            value = float(m.group(1))
        elif m := _MONTHS.match(v):
            value = float(m.group(1)) / 12.0
        elif m := _DECADE.match(v):
            base = float(m.group(2)) * 10
            value = base + {"early": 2, "mid": 5, "late": 8, None: 5}[m.group(1)]
        else:
            return None
    if math.isnan(value) or value < 0 or value > MAX_AGE:
        return None
    return value


def pediatric_from_age(age: float | None) -> tuple[bool | None, str | None]:
    """``(True, 'age<18')``, ``(False, 'age>=18')`` or ``(None, None)`` when the age is unknown."""
    if age is None:
        return None, None
    return (True, "age<18") if age < PEDIATRIC_AGE else (False, "age>=18")


# What each column of `cxrcurate stats` means (here, beside the vocabulary, so `--help` shows it without pandas).
STATS_LEGEND: dict[str, str] = {
    "kept": "images counted once per picture: rows with keep=True (dedup's choice of one copy per duplicate group; "
            "label-conflicting groups keep none); before dedup every row counts",
    "units": "distinct units among the kept images: a unit is what a split keeps on one side (a patient, with "
             "aliases, and every picture linked to it by a duplicate group or identical pixels/file)",
    "rows": "every row of the manifest, extra copies included",
    "copies_not_kept": "rows with keep=False: extra copies of a picture already counted, or label-conflicting copies",
    "images": "rows of the manifest for this source and label, extra copies included",
    "patients": "distinct known patient ids",
    "patients_unknown": "images whose source gives no patient id (each may be a different patient)",
    "pediatric": "images of children (age < 18, a pediatric source, or a pediatric file name)",
    "pediatric_unknown": "images with no age and no other evidence of a child or an adult",
    "pediatric_share": "pediatric / images whose pediatric status is known",
    "age_median": "median age in years of the images with an age",
    "source_a, source_b": "two sources; groups: duplicate groups holding pictures of both; rows_not_kept_a: rows of "
                          "source_a not kept",
    "flag_*": "images with that quality flag (never used to drop a row)",
}
