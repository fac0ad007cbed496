"""``cxrcurate stats``: label x source counts, patients, pediatric share and age median of a manifest."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from .dedup import cross_source_table
from .labels import LABELS


def label_source_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, label) plus per-source and overall totals.

    Columns: ``images``, ``patients`` (distinct known patient ids), ``patients_unknown`` (images without a
    patient id), ``pediatric`` (images of children), ``pediatric_unknown`` (images with unknown age and no other
    pediatric evidence), ``pediatric_share`` (of images whose status is known), ``age_median``.
    """
    def summarize(g: pd.DataFrame) -> dict[str, Any]:
        ped = g["pediatric"]
        known = ped.notna().sum()
        n_ped = int((ped == True).sum())  # noqa: E712 - nullable booleans
        return {
            "images": len(g), "patients": int(g["patient_id"].nunique()),
            "patients_unknown": int(g["patient_id"].isna().sum()), "pediatric": n_ped,
            "pediatric_unknown": int(len(g) - known),
            "pediatric_share": round(n_ped / known, 3) if known else None,
            "age_median": float(g["age_years"].median()) if g["age_years"].notna().any() else None,
        }

    rows = []
    for source, g in df.groupby("source", sort=True):
        for label in LABELS:
            sub = g[g["label"] == label]
            if len(sub):
                rows.append({"source": source, "label": label, **summarize(sub)})
        rows.append({"source": source, "label": "(all)", **summarize(g)})
    for label in LABELS:
        sub = df[df["label"] == label]
        if len(sub):
            rows.append({"source": "(all)", "label": label, **summarize(sub)})
    rows.append({"source": "(all)", "label": "(all)", **summarize(df)})
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in table.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None or v != v else str(v) for v in rec) + " |")
    return "\n".join(lines)


def render(table: pd.DataFrame, fmt: str = "text") -> str:
    """The table as ``text``, ``markdown`` or ``json``."""
    if fmt == "json":
        return json.dumps(table.astype(object).where(table.notna(), None).to_dict("records"), indent=2)
    if fmt == "markdown":
        return _markdown(table)
    if fmt == "text":
        return table.to_string(index=False, na_rep="-")
    raise ValueError(f"unknown format {fmt!r}; choose text, markdown or json")


def dropped_summary(dropped: pd.DataFrame) -> pd.DataFrame:
    """Counts of dropped files/rows by source and reason."""
    return (dropped.groupby(["source", "reason"]).size().rename("count").reset_index()
            .sort_values(["source", "count"], ascending=[True, False]))


def duplicates_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per source pair: duplicate groups holding pictures of both, and rows not kept per source."""
    table = cross_source_table(df)
    not_kept = df[~df["keep"].fillna(True).astype(bool)].groupby("source").size()
    table["rows_not_kept_a"] = table["source_a"].map(not_kept).fillna(0).astype(int)
    return table

