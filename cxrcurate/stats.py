"""``cxrcurate stats``: first the answer to "how many unique images per label and split?" (kept copies and units),
then label x source counts, patients, pediatric share and age median; every column explained in ``LEGEND``."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from .dedup import cross_source_table
from .labels import LABELS
from .labels import STATS_LEGEND as LEGEND

# What every column of every `cxrcurate stats` table means (printed under the tables and in `stats --help`).


def kept_mask(df: pd.DataFrame) -> pd.Series:
    """Rows counted once per picture: ``keep`` True, or null (dedup has not run)."""
    import pandas as pd

    if "keep" not in df.columns:
        return pd.Series(True, index=df.index)
    return df["keep"].fillna(True).astype(bool)


def split_summary(df: pd.DataFrame, units: pd.Series | None = None) -> pd.DataFrame:
    """Kept images and units per label and split: the first answer ``cxrcurate stats`` gives.

    One row per label present plus ``(all)``; per split side (``train``, ``val``, ``test``, or ``all`` when the
    manifest has no split) the columns ``<side>_kept`` and ``<side>_units``, then ``kept``, ``units``, ``rows``
    and ``copies_not_kept`` over the whole manifest (see ``LEGEND``).

    Args:
        df: a manifest or release table.
        units: the unit of each row (``splits.split_groups`` on the FULL manifest), aligned with ``df``; default:
            the table's ``unit`` column (a release), else every kept row is its own unit.
    """
    import pandas as pd

    if units is None:
        units = df["unit"] if "unit" in df.columns else pd.Series(df["image_id"].to_numpy(), index=df.index)
    kept = kept_mask(df)
    has_split = "split" in df.columns and df["split"].notna().any()
    sides = [s for s in ("train", "val", "test") if has_split and (df["split"] == s).any()]
    if has_split and df["split"].isna().any():
        sides.append("none")
    side = df["split"].fillna("none") if has_split else pd.Series("all", index=df.index)
    rows = []
    for label in [*[lab for lab in LABELS if (df["label"] == lab).any()], "(all)"]:
        sel = df["label"] == label if label != "(all)" else pd.Series(True, index=df.index)
        rec: dict[str, Any] = {"label": label}
        for s in sides or ["all"]:
            here = sel & kept & (side == s)
            rec[f"{s}_kept"], rec[f"{s}_units"] = int(here.sum()), int(units[here].nunique())
        if sides:
            rec["kept"], rec["units"] = int((sel & kept).sum()), int(units[sel & kept].nunique())
        rec["rows"], rec["copies_not_kept"] = int(sel.sum()), int((sel & ~kept).sum())
        rows.append(rec)
    return pd.DataFrame(rows)


def legend(columns: list[str]) -> str:
    """The ``LEGEND`` lines for ``columns`` (side-prefixed columns explained once), as text."""
    keys = []
    for c in columns:
        key = c.rsplit("_", 1)[1] if c.endswith(("_kept", "_units")) else c
        key = "flag_*" if key.startswith("flag_") else key
        key = "source_a, source_b" if key in ("source_a", "source_b", "groups", "rows_not_kept_a") else key
        if key in LEGEND and key not in keys:
            keys.append(key)
    return "\n".join(textwrap.fill(f"{k}: {LEGEND[k]}", width=118, initial_indent="  ", subsequent_indent="    ")
                     for k in keys)


def label_source_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, label) plus per-source and overall totals.

    Columns (see ``LEGEND``): ``images`` (every row), ``kept`` (one per picture), ``patients``,
    ``patients_unknown``, ``pediatric``, ``pediatric_unknown``, ``pediatric_share``, ``age_median``.
    """
    import pandas as pd

    def summarize(g: pd.DataFrame) -> dict[str, Any]:
        ped = g["pediatric"]
        known = ped.notna().sum()
        n_ped = int((ped == True).sum())  # noqa: E712 - nullable booleans
        return {
            "images": len(g), "kept": int(kept_mask(g).sum()), "patients": int(g["patient_id"].nunique()),
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

