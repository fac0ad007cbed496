"""Map the entries of a split made elsewhere (``splitcheck.files``) onto manifest rows, and say why the rest do not map.

An entry matches, in this order: by sha256 (the manifest's ``file_sha256``, or the ORIGINAL file's sha256 from an
``ORIGINALS.csv``-style table or a release table, which survives a different folder layout or a resized copy), by
path (the manifest path or a trailing part of it, so ``data/covid-chestxray-dataset/images/x.jpg`` finds
``cohen/images/x.jpg``), then by file name within its source (COVIDx tags ``fig1``/``actmed`` name the
``figure1``/``actualmed`` collections). An entry that does not match is kept with its reason: the source is not in
the manifest, the file was dropped by the build (with the dropped table's reason), the name is ambiguous, the
line was unreadable, or it is simply not in the manifest. A file named on two sides is itself a leak and is listed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from ..splits import SIDES

# COVIDx source tags -> cxrcurate source names (lindawangg/COVID-Net create_COVIDx notebooks and label files).
SOURCE_TAGS = {"fig1": "figure1", "actmed": "actualmed", "figure1": "figure1", "actualmed": "actualmed",
               "cohen": "cohen", "covid-chestxray-dataset": "cohen"}
NO_TAG = "(no tag)"
_FILE_IN_TEXT = re.compile(r"[^\s'\"()]+\.(?:png|jpe?g|jfif|webp|bmp|gif|tiff?|dcm)\b", re.IGNORECASE)


def _norm(path: str) -> str:
    return str(PurePosixPath(path.replace("\\", "/").lstrip("./").lstrip("/")))


def _suffixes(path: str) -> list[str]:
    """Trailing parts of a path with at least two segments (``a/b/c.png`` -> ``a/b/c.png``, ``b/c.png``)."""
    parts = _norm(path).split("/")
    return ["/".join(parts[i:]) for i in range(0, len(parts) - 1)]


@dataclass
class MatchResult:
    """Entries with ``image_id`` (or None), ``matched_by`` and ``reason``; the side of each manifest row."""

    entries: pd.DataFrame
    side: pd.Series
    listed_twice: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unmatched(self) -> pd.DataFrame:
        return self.entries[self.entries["image_id"].isna()]

    def per_source(self) -> pd.DataFrame:
        """Entries per source tag: matched, and unmatched per reason kind."""
        reason = self.entries["reason"].fillna("matched")
        dropped = reason.str.extract(r"^dropped by the build: (\S+)", expand=False)
        e = self.entries.assign(tag=self.entries["source"].fillna(NO_TAG),
                                outcome=("dropped: " + dropped).fillna(reason.str.split(":").str[0]))
        table = pd.crosstab(e["tag"], e["outcome"])
        cols = (["matched"] if "matched" in table.columns else []) + [c for c in table.columns if c != "matched"]
        return table[cols]

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: entries, matched (by how), rows given a side, unmatched per source and reason."""
        e = self.entries
        return {"entries": int(len(e)), "matched": int(e["image_id"].notna().sum()),
                "matched_by": {str(k): int(v) for k, v in e["matched_by"].value_counts().items()},
                "rows_with_side": {str(k): int(v) for k, v in self.side.value_counts().items()},
                "unmatched": int(e["image_id"].isna().sum()),
                "per_source": {str(k): {str(c): int(v) for c, v in row.items() if v}
                               for k, row in self.per_source().iterrows()},
                "matched_per_side": {str(k): [int(g["image_id"].notna().sum()), int(len(g))]
                                     for k, g in e.groupby(e["side"].fillna("(none)"), sort=False)},
                "named_on_two_sides": len(self.listed_twice)}

    def to_text(self, examples: int = 10) -> str:
        s = self.summary()
        lines = [f"split files: {s['entries']:,} entries, {s['matched']:,} matched to manifest rows "
                 f"({', '.join(f'{k} {v:,}' for k, v in s['matched_by'].items()) or 'none'}), {s['unmatched']:,} "
                 "not", "matched per side: " + ", ".join(f"{k} {a:,} of {n:,}" for k, (a, n) in
                                                         s["matched_per_side"].items()),
                 "entries per source tag (matched, and why the others are not):"]
        empty = [k for k, (a, _) in s["matched_per_side"].items() if a == 0]
        if empty:
            lines.insert(2, f"  NOTE: no entry of side(s) {', '.join(empty)} matches a manifest row: nothing on that "
                            "side can be checked against this manifest")
        lines += ["  " + line for line in self.per_source().to_string().splitlines()]
        for _, group in self.unmatched.groupby(self.unmatched["reason"].str.split(":").str[0], sort=True):
            for rec in group.head(min(examples, 3)).to_dict("records"):
                lines.append(f"  e.g. {rec['origin']} {rec['name']!r}: {rec['reason']}")
        if self.listed_twice:
            lines.append(f"LEAK: {len(self.listed_twice):,} file(s) are named on two sides, e.g. "
                         + "; ".join(f"{r['image_id']} ({', '.join(r['sides'])})" for r in self.listed_twice[:3]))
        return "\n".join(lines)


class _Index:
    """Lookups of manifest rows by sha256, path suffix and (source, file name); dropped rows by name."""

    def __init__(self, df: pd.DataFrame, dropped: pd.DataFrame | None, originals: pd.DataFrame | None) -> None:
        self.ids = df["image_id"].astype(str).tolist()
        self.sources = set(df["source"].dropna().astype(str))
        self.sha: dict[str, list[int]] = defaultdict(list)
        self.path: dict[str, list[int]] = defaultdict(list)
        self.name: dict[tuple[str | None, str], list[int]] = defaultdict(list)
        paths = df["path"].astype(str).tolist() if "path" in df.columns else [i.split(":", 1)[-1] for i in self.ids]
        srcs = df["source"].astype(str).tolist()
        for i, (p, s) in enumerate(zip(paths, srcs, strict=True)):
            for suffix in _suffixes(p):
                self.path[suffix].append(i)
            base = PurePosixPath(_norm(p)).name
            self.name[(s, base)].append(i)
            self.name[(None, base)].append(i)
        for col in ("file_sha256", "original_sha256"):
            if col in df.columns:
                for i, v in enumerate(df[col]):
                    if isinstance(v, str):
                        self.sha[v.lower()].append(i)
        if originals is not None and {"path", "original_sha256"} <= set(originals.columns):
            where = {_norm(p): i for i, p in enumerate(paths)}
            for p, v in zip(originals["path"].astype(str), originals["original_sha256"].astype(str), strict=True):
                if _norm(p) in where:
                    self.sha[v.lower()].append(where[_norm(p)])
        self.dropped: dict[tuple[str | None, str], list[str]] = defaultdict(list)
        if dropped is not None and len(dropped):
            for rec in dropped.to_dict("records"):
                text = " ".join(str(rec.get(k) or "") for k in ("path", "detail"))
                why = f"{rec.get('reason')} ({rec.get('detail')})" if rec.get("detail") else str(rec.get("reason"))
                for name in {PurePosixPath(m).name for m in _FILE_IN_TEXT.findall(text)}:
                    for key in ((str(rec.get("source")), name), (None, name)):
                        self.dropped[key].append(why)
        for reasons in self.dropped.values():  # an image's own reason before that of its lung mask
            reasons.sort(key=lambda r: r.startswith("mask_without_image"))

    def scope(self, tag: str | None) -> tuple[str | None, str | None]:
        """(manifest source to search, reason when the tagged source is absent)."""
        if tag is None:
            return None, None
        source = SOURCE_TAGS.get(tag.lower(), tag)
        if source in self.sources:
            return source, None
        return None, f"source not in the manifest: {tag!r} (manifest sources: {', '.join(sorted(self.sources))})"


def _one(rows: list[int], ids: list[str]) -> int:
    """The row of a lookup that found several identical files (the smallest image id: they are one unit anyway)."""
    return min(set(rows), key=lambda r: ids[r])


def _match_entry(e: dict[str, Any], ix: _Index) -> tuple[int | None, str | None, str | None]:
    """(row, matched_by, reason) of one entry."""
    if isinstance(e.get("problem"), str):
        return None, None, e["problem"]
    sha = e.get("sha256")
    if isinstance(sha, str) and ix.sha.get(sha):
        return _one(ix.sha[sha], ix.ids), "sha256", None
    tag = e.get("source")
    source, absent = ix.scope(tag if isinstance(tag, str) else None)
    ambiguous = None
    for name in e.get("names") or []:
        norm = _norm(name)
        if "/" in norm:
            for suffix in _suffixes(norm):
                rows = set(ix.path.get(suffix, []))
                if source is not None:
                    rows = {r for r in rows if ix.ids[r].startswith(source + ":")}
                if len(rows) == 1:
                    return rows.pop(), "path", None
                if len(rows) > 1:
                    ambiguous = ambiguous or f"ambiguous: {len(rows)} manifest rows end with {suffix!r}"
                    break
        if absent:
            continue
        base = PurePosixPath(norm).name
        rows = sorted(set(ix.name.get((source, base), [])))
        if len(rows) == 1:
            return rows[0], "name", None
        if len(rows) > 1:
            ambiguous = ambiguous or (f"ambiguous: {len(rows)} manifest rows are named {base!r} "
                                      f"({', '.join(sorted({ix.ids[r].split(':')[0] for r in rows}))})")
    if ambiguous:
        return None, None, ambiguous
    if absent:
        return None, None, absent
    for name in e.get("names") or []:
        why = ix.dropped.get((source, PurePosixPath(_norm(name)).name))
        if why:
            return None, None, f"dropped by the build: {why[0]}"
    return None, None, "not in the manifest"


def match_entries(entries: pd.DataFrame, df: pd.DataFrame, dropped: pd.DataFrame | None = None,
                  originals: pd.DataFrame | None = None) -> MatchResult:
    """Match split-file entries to the rows of a FULL manifest ``df`` and give each row its side.

    Args:
        entries: from ``splitfiles.read_split_files``.
        df: the manifest (``image_id``, ``source``, ``path``; ``file_sha256`` and ``original_sha256`` if any).
        dropped: the manifest's dropped table, to explain entries the build left out.
        originals: an ``ORIGINALS.csv``-style table (``path``, ``original_sha256``) for sha matches on originals.

    Returns:
        A ``MatchResult``; ``side`` is aligned with ``df.index`` (None for rows no entry names). A row named on two
        sides keeps the first side in train, val, test order and is listed in ``listed_twice``.
    """
    ix = _Index(df, dropped, originals)
    recs = entries.to_dict("records")
    found = [_match_entry(e, ix) for e in recs]
    out = entries.copy()
    out["image_id"] = [ix.ids[r] if r is not None else None for r, _, _ in found]
    out["matched_by"] = [m for _, m, _ in found]
    out["reason"] = [why for _, _, why in found]
    sides_of: dict[int, list[str]] = defaultdict(list)
    for (row, _, _), e in zip(found, recs, strict=True):
        if row is not None and e["side"] not in sides_of[row]:
            sides_of[row].append(e["side"])
    order = {s: k for k, s in enumerate(SIDES)}
    side = [None] * len(df)
    twice = []
    for row, sides in sides_of.items():
        sides = sorted(sides, key=lambda s: (order.get(s, len(order)), s))
        side[row] = sides[0]
        if len(sides) > 1:
            twice.append({"image_id": ix.ids[row], "sides": sides,
                          "entries": out.loc[out["image_id"] == ix.ids[row], "origin"].tolist()})
    twice.sort(key=lambda r: r["image_id"])
    return MatchResult(out, pd.Series(side, index=df.index, dtype=object, name="split"), twice)
