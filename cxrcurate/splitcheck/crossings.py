"""Every crossing of a split, as a pair of rows: which two images, on which sides, from which sources and patients,
and what links them (the same file, the same pixels, one dup group, an accepted near-copy pair, one patient, or
only a chain of links through other rows: one unit). ``leakage_report`` counts leaks; this lists each one so a
user can look at them (``montage`` draws the pairs).

Links come from ``splits.split_groups`` (the one union-find of the project); a crossing is reported once, under
its strongest link, between the first image (smallest id) of the earliest side and each image on another side
(an image already paired through a stronger link is not paired again).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..imageio import decode_image
from ..manifest import safe_path
from ..splits import SIDES, split_groups

LINKS = ("file_sha256", "pixel_sha256", "dup_group", "pair", "patient", "unit")
CROSSING_COLUMNS = ("link", "side_a", "image_a", "source_a", "patient_a", "side_b", "image_b", "source_b",
                    "patient_b")


def _rank(side: str) -> tuple[int, str]:
    return (SIDES.index(side) if side in SIDES else len(SIDES), side)


def _group_pairs(keys: pd.Series, side: pd.Series, ids: pd.Series) -> list[tuple[int, int]]:
    """(row a, row b) positions for every key on several sides: the earliest side's first row vs each other."""
    sub = pd.DataFrame({"key": keys.to_numpy(), "side": side.to_numpy(), "id": ids.to_numpy(),
                        "pos": np.arange(len(keys))}).dropna(subset=["key", "side"])
    multi = sub.groupby("key")["side"].transform("nunique") > 1
    out = []
    for _, g in sub[multi].groupby("key", sort=False):
        g = g.assign(r=[_rank(s) for s in g["side"]]).sort_values(["r", "id"])
        first = g.iloc[0]
        out += [(int(first["pos"]), int(p)) for p, s in zip(g["pos"], g["side"], strict=True) if s != first["side"]]
    return out


def crossings(df: pd.DataFrame, side: pd.Series, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per crossing pair (``CROSSING_COLUMNS``), strongest link first, then by image ids.

    Args:
        df: the FULL manifest (links through rows without a side count).
        side: each row's side (aligned with ``df.index``; None takes no part).
        pairs: dedup's pairs table (its accepted pairs link rows).
    """
    side = pd.Series([None if pd.isna(v) else str(v) for v in side], index=df.index, dtype=object)
    ids = df["image_id"].astype(str)
    keys: dict[str, pd.Series] = {c: df[c] for c in ("file_sha256", "pixel_sha256", "dup_group") if c in df.columns}
    people = [c for c in ("image_id", "patient_id", "extra") if c in df.columns]
    if "patient_id" in df.columns:
        has = df["patient_id"].notna() | df.get("extra", pd.Series(None, index=df.index)).astype(str).str.contains(
            "alias_patient_ids", regex=False)
        keys["patient"] = split_groups(df[people]).where(has)
    keys["unit"] = split_groups(df, pairs)
    found: dict[tuple[int, int], str] = {}
    covered: set[int] = set()
    for link in LINKS:
        if link == "pair":
            if pairs is None or not len(pairs):
                continue
            pos = {iid: i for i, iid in enumerate(ids)}
            acc = pairs[pairs["accepted"].astype("boolean").fillna(False).to_numpy(bool)]
            todo = []
            for a, b in zip(acc["image_a"].astype(str), acc["image_b"].astype(str), strict=True):
                i, j = pos.get(a), pos.get(b)
                if i is not None and j is not None and side.iat[i] is not None and side.iat[j] is not None \
                        and side.iat[i] != side.iat[j]:
                    todo.append((i, j) if _rank(side.iat[i]) <= _rank(side.iat[j]) else (j, i))
        elif link in keys:
            todo = _group_pairs(keys[link], side, ids)
        else:
            continue
        for i, j in todo:  # a row already paired through a stronger link is not paired again
            if (i, j) not in found and (j, i) not in found and j not in covered:
                found[(i, j)] = link
                covered.add(j)

    def val(col: str, i: int) -> Any:
        v = df[col].iat[i] if col in df.columns else None
        return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v

    rows = [{"link": link, "side_a": side.iat[i], "image_a": ids.iat[i], "source_a": val("source", i),
             "patient_a": val("patient_id", i), "side_b": side.iat[j], "image_b": ids.iat[j],
             "source_b": val("source", j), "patient_b": val("patient_id", j)} for (i, j), link in found.items()]
    out = pd.DataFrame(rows, columns=list(CROSSING_COLUMNS))
    if len(out):
        out["_l"] = out["link"].map({k: n for n, k in enumerate(LINKS)})
        out = out.sort_values(["_l", "image_a", "image_b"]).drop(columns="_l").reset_index(drop=True)
    return out.astype(object).where(out.notna(), None)  # None (JSON null), not NaN, for an unknown patient


def montage(pairs: pd.DataFrame, df: pd.DataFrame, root: str | os.PathLike, out: str | os.PathLike, n: int = 12,
            height: int = 200) -> Path:
    """A PNG of the first ``n`` crossing pairs, side by side, each captioned with side, image id, patient and link.

    Raises:
        CxrcurateError: an image cannot be read under ``root`` (the manifest's data root).
    """
    from PIL import Image, ImageDraw

    paths = dict(zip(df["image_id"].astype(str), df["path"].astype(str), strict=True))
    tiles = []
    for rec in pairs.head(n).to_dict("records"):
        row = []
        for k in ("a", "b"):
            pix = decode_image(safe_path(root, paths[rec[f"image_{k}"]], rec[f"image_{k}"])).pixels
            im = Image.fromarray(pix).convert("L")
            im = im.resize((max(1, round(im.width * height / im.height)), height))
            row.append((im, f"{rec[f'side_{k}']}: {rec[f'image_{k}'][:44]}", f"patient {rec[f'patient_{k}']}"))
        tiles.append((row, rec["link"]))
    width = max([sum(max(im.width, 340) + 10 for im, _, _ in r) for r, _ in tiles] + [700])
    canvas = Image.new("RGB", (width, max(1, len(tiles)) * (height + 44)), "white")
    draw = ImageDraw.Draw(canvas)
    for t, (row, link) in enumerate(tiles):
        y, x = t * (height + 44), 0
        for im, cap, pat in row:
            canvas.paste(im.convert("RGB"), (x, y))
            draw.text((x + 2, y + height + 2), cap, fill="black")
            draw.text((x + 2, y + height + 14), pat, fill="black")
            x += max(im.width, 340) + 10
        draw.text((2, y + height + 28), f"link: {link}", fill="firebrick")
    out = Path(out)
    canvas.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(out, optimize=True)  # grey + one ink
    return out
