"""The dataset card of a release (``README.md``): a Hugging Face-style YAML header and tables measured from the
release's own files, so the card cannot drift from the data it describes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..dedup import cross_source_table
from ..imageio import decode_image
from .quality import FLAGS, Thresholds, flags, measure

INTRO = """# cxrcurate release v1: five open COVID-19 chest X-ray collections, deduplicated, flagged, split

One row per image of covid-cxnet, cohen, hannover, figure1 and actualmed at pinned commits (`open.parquet`), plus
ChestX-ray14 metadata (`nih-cxr14.parquet`). Every number below is measured from these files by the command that
wrote them (`cxrcurate release build --data DATA --out manifests/v1`, DATA holding the five collections and
`ORIGINALS.csv`; deterministic: same bytes twice).

**Version scheme.** `manifests/v<N>/`: N grows when rows, labels, splits or identities change; a release folder is
never edited in place. Each table says its kind (`table`: release, pairs, conflicts, dropped, nih-cxr14) and the
release version in its Parquet metadata (`cxrcurate` key); `release.json` lists the sha256 of every other file.

**Identity.** `repository`, `commit`, `repo_path`, `file_sha256`, `file_bytes`, `width`, `height`, `mode` and
`bit_depth` are those of the ORIGINAL published file (from `ORIGINALS.csv`), not of the resized copies the release
was computed from. `pixel_sha256` and `phash` need the original pixels and are null here; `cxrcurate materialise`
fills them from your files. `mask_paths` is not carried. Labels, duplicate groups, splits and quality flags were
computed on copies resized to at most 448 px (byte-identical originals stay byte-identical copies).

**Use.** `path` is relative to a data root holding one folder per source, each the repository at the commit
below (`cxrcurate fetch --release manifests/v1 --out ROOT` fetches them all so, and checks them). Check your files
with `cxrcurate verify --release manifests/v1 --root ROOT` (the release's own digests first, then missing, changed,
extra, and why; exit 3 on a mismatch), then
`cxrcurate materialise --release manifests/v1 --root ROOT --out ROOT/v1.parquet` for the full manifest
`cxrcurate bench --split-policy manifest` trains on (in ROOT, it finds its images without `--data-root`), or
`cxrcurate.load_release("manifests/v1", root=ROOT)` in Python. `open.parquet` is a manifest (kind `release`):
`cxrcurate leakage`, `stats`, `split` and `bench --split-policy manifest` read it directly, with the pairs table
beside it. Plain `pandas.read_parquet`, duckdb and `datasets.load_dataset("parquet", ...)` read every file without
cxrcurate.

Columns beyond the manifest's: `unit` (what must stay on one side of a split), `file_bytes`, `mode`, the five
`flag_*` booleans (never used to drop a row) and `quality` (the measurements they threshold, JSON).

**Machine-readable description.** [`croissant.json`](croissant.json) describes these files in Croissant 1.0
(MLCommons; read by the Hugging Face Hub and dataset search engines): each Parquet file with its sha256, each
column with its type and meaning. `mlcroissant` loads the records from it."""

LIMITS = """## Known limits

- Quality flags are simple thresholds (`cxrcurate/release/quality.py`), set and scored on the same small truth set:
  expect lower precision/recall on new data. The lateral and figure/text rules are weak (see the table); use them
  to look, not to filter blindly.
- No negative (inverted) radiograph was found by eye in these collections; that flag's recall is measured on
  synthetically inverted images only.
- CT slices and figures with a CT panel remain in covid-cxnet (its images are all filed as COVID-19 radiographs);
  the truth set marks 63 such images (`not_radiograph`), and no flag targets them yet.
- Cohen's images come from the fork `s-mostafa-a/covid-chestxray-dataset` at the commit shown (June 2020 state),
  which `cxrcurate fetch --release` fetches; `cxrcurate fetch --source cohen` fetches the publisher's
  `ieee8023/covid-chestxray-dataset` at another commit, which `verify` reports as changed/missing/extra files
  (docs/sources.md, "The Cohen record").
- Views: PA, AP, AP supine and unknown are kept (lateral-filed images are in `open.dropped.parquet` as
  `view_excluded`); most web-sourced images state no view.
- Pediatric status is unknown where the source gives no age (Hannover redacts ages); a null is not "adult".
- ChestX-ray14 rows carry no file hashes (the images were not part of this build): match them by file name."""

# Truth columns of quality-truth.csv and the flag each one scores.
TRUTH = {"lateral": "flag_lateral", "low_information": "flag_low_information", "figure_text": "flag_figure"}


def _score(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
    return {"positives": int(truth.sum()), "flagged": int(pred.sum()), "tp": tp, "fp": fp, "fn": fn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None}


def flag_scores(release: pd.DataFrame, truth: pd.DataFrame, data: Path,
                thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Precision/recall of each flag on the eye-checked truth set (every image of ``truth``, decoded from ``data``).

    The lateral rule is scored as an image rule (every truth image treated as filed frontal). No negative radiograph
    was found by eye, so ``flag_inverted`` is scored on the truth set's radiographs (negatives, all real) plus the
    same radiographs inverted (255 - pixels; positives by construction). ``flag_small`` is a rule on the original
    dimensions, exact by definition; its count is reported.
    """
    t = thresholds or Thresholds()
    rows = []
    for path in truth["path"]:
        px = decode_image(data / path).pixels
        rows.append((flags(measure(px), None, None, "unknown", t), flags(measure(255 - px), None, None, "unknown", t)))
    got = pd.DataFrame([a for a, _ in rows])
    inv = pd.DataFrame([b for _, b in rows])
    scores = {flag: _score(got[flag].to_numpy(bool), truth[col].astype(bool).to_numpy())
              for col, flag in TRUTH.items()}
    radio = truth["not_radiograph"].astype(int).to_numpy() == 0
    pred = np.concatenate([got["flag_inverted"].to_numpy(bool)[radio], inv["flag_inverted"].to_numpy(bool)[radio]])
    scores["flag_inverted"] = {**_score(pred, np.r_[np.zeros(radio.sum(), bool), np.ones(radio.sum(), bool)]),
                               "real_flagged": int(got["flag_inverted"].to_numpy(bool)[radio].sum())}
    scores["flag_small"] = {"flagged_in_release": int(release["flag_small"].fillna(False).sum()),
                            "rule": f"original shorter side < {t.small_side} px"}
    scores["truth_images"] = len(truth)
    return scores


def _md(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None or (isinstance(v, float) and v != v) else str(v)
                                       for v in rec) + " |")
    return "\n".join(lines)


def _share(s: pd.Series) -> str:
    known = s.dropna()
    return f"{(known == True).mean():.1%}" if len(known) else "-"  # noqa: E712


def per_source(df: pd.DataFrame) -> pd.DataFrame:
    """Images, kept copies, patients, pediatric count/share and split sizes per source (and all)."""
    def row(name: str, g: pd.DataFrame) -> dict[str, Any]:
        return {"source": name, "images": len(g), "kept": int(g["keep"].sum()),
                "patients": int(g["patient_id"].nunique()), "no_patient_id": int(g["patient_id"].isna().sum()),
                "pediatric": int((g["pediatric"] == True).sum()),  # noqa: E712
                "pediatric_unknown": int(g["pediatric"].isna().sum()), "pediatric_share": _share(g["pediatric"]),
                **{s: int((g["split"] == s).sum()) for s in ("train", "val", "test")}}
    return pd.DataFrame([row(n, g) for n, g in df.groupby("source")] + [row("(all)", df)])


def per_label_split(df: pd.DataFrame) -> pd.DataFrame:
    """Images per label and split (all rows; kept copies in brackets)."""
    out = []
    for label, g in df.groupby("label"):
        rec = {"label": label}
        for s in ("train", "val", "test"):
            side = g[g["split"] == s]
            rec[s] = f"{len(side)} ({int(side['keep'].fillna(True).astype(bool).sum())})"
        rec["pediatric_share"] = _share(g["pediatric"])
        out.append(rec)
    return pd.DataFrame(out)


def flags_by_source(df: pd.DataFrame) -> pd.DataFrame:
    """How many images carry each quality flag, per source and label."""
    present = [f for f in FLAGS if f in df.columns]
    if not present:
        return pd.DataFrame()
    g = df.assign(**{f: df[f].fillna(False).astype(bool) for f in present}).groupby(["source", "label"])
    table = g[present].sum().astype(int).reset_index()
    table.insert(2, "images", g.size().to_numpy())
    total = {"source": "(all)", "label": "(all)", "images": len(df),
             **{f: int(df[f].fillna(False).astype(bool).sum()) for f in present}}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def _header(df: pd.DataFrame, nih: pd.DataFrame | None) -> str:
    licenses = sorted(set(df["license"].dropna()))
    lines = ["---", "pretty_name: cxrcurate chest X-ray release v1", "license: other",
             "license_name: per-source (see 'Sources and licenses')", "license_details:"]
    lines += [f"  - {json.dumps(x)}" for x in licenses]
    if nih is not None:
        lines.append('  - "nih-cxr14: public domain (NIH Clinical Center; cite Wang et al. 2017)"')
    lines += ["task_categories:", "  - image-classification", "tags:", "  - medical", "  - chest-x-ray",
              "  - covid-19", "  - deduplicated", "size_categories:", "  - 1K<n<10K"]
    if nih is not None:
        lines.append("  - 100K<n<1M")
    lines += ["configs:", "  - config_name: open", "    data_files: open.parquet"]
    if nih is not None:
        lines += ["  - config_name: nih-cxr14", "    data_files: nih-cxr14.parquet"]
    return "\n".join(lines + ["---", ""])


def render_card(folder: str | Path) -> str:
    """The card of the release in ``folder``, every number read from its files."""
    folder = Path(folder)
    df = pd.read_parquet(folder / "open.parquet")
    conflicts = pd.read_parquet(folder / "open.conflicts.parquet")
    facts = json.loads((folder / "release.json").read_text())
    nih = pd.read_parquet(folder / "nih-cxr14.parquet") if (folder / "nih-cxr14.parquet").exists() else None
    srcs = df.groupby("source").agg(repository=("repository", "first"), commit=("commit", "first"),
                                    licenses=("license", lambda s: "; ".join(sorted(set(s.dropna()))))).reset_index()
    split = facts["open"]["split"]
    leak = facts["open"]["leakage"]
    found = ", ".join(f"{k}: {v['total']}" for k, v in leak["findings"].items())
    label_conf = conflicts[conflicts["field"] == "label"][["dup_group", "values", "sources"]]
    parts = [_header(df, nih), INTRO, "",
             "## Sources and licenses (pinned commits)", "", _md(srcs), "",
             "## Images per source", "", "All rows; `kept` = one copy per duplicate group (label-conflicting groups "
             "keep none).", "", _md(per_source(df)), "",
             "## Images per label and split", "", "`n (kept)`.", "", _md(per_label_split(df)), "",
             "## The standard split", "",
             f"`cxrcurate.make_split(test={split['test']}, val={split['val']}, seed={split['seed']}, "
             f"stratify={split['stratify']!r})` over {split['units']} units (patients with aliases, duplicate "
             f"groups, identical files or pixels); method: {json.dumps(split['method'])}. Leakage report with the "
             f"accepted duplicate pairs: **{'OK, nothing crosses sides' if leak['ok'] else 'LEAKS'}** "
             f"({found}).", "",
             "## Duplicates found per source pair", "", "Duplicate groups holding pictures of both sources "
             "(a source paired with itself: groups with two of its files).", "",
             _md(cross_source_table(df)), "",
             f"## Label conflicts ({len(label_conf)} groups)", "", "Copies of one picture whose sources disagree "
             "on the label; none of their rows is kept.", "", _md(label_conf) if len(label_conf) else "(none)", "",
             "## Quality flags per source and label", "", _md(flags_by_source(df)), ""]
    scores = facts.get("flag_scores")
    if scores:
        keys = ("positives", "flagged", "tp", "fp", "fn", "precision", "recall")
        rows = [{"flag": f, **{k: s[k] for k in keys}} for f, s in scores.items() if isinstance(s, dict) and "tp" in s]
        parts += ["### Flag precision and recall on the eye-checked truth set", "",
                  f"{scores['truth_images']} images (`quality-truth.csv`, decided as `QUALITY-TRUTH.md` says). "
                  f"`flag_inverted`: real images as negatives ({scores['flag_inverted']['real_flagged']} flagged) and "
                  "the same images inverted as positives (no negative radiograph exists in the shared data). "
                  f"`flag_small` ({scores['flag_small']['rule']}) is exact by definition: "
                  f"{scores['flag_small']['flagged_in_release']} images in the release.", "", _md(pd.DataFrame(rows)),
                  ""]
    if nih is not None:
        nsplit = facts["nih-cxr14"]["split"]
        table = (nih.groupby(["label", "split"]).size().unstack(fill_value=0).reindex(
            columns=["train", "val", "test"], fill_value=0).reset_index())
        table["pediatric_share"] = [_share(nih.loc[nih["label"] == lab, "pediatric"]) for lab in table["label"]]
        parts += ["## ChestX-ray14 (metadata only)", "",
                  f"`nih-cxr14.parquet`: {len(nih):,} rows, {nih['patient_id'].nunique():,} patients, "
                  f"{int((nih['pediatric'] == True).sum()):,} images of patients under 18 "  # noqa: E712
                  f"({int(nih['pediatric'].isna().sum())} with an impossible age, unknown). Split by patient "
                  f"({nsplit['units']:,} units, seed {nsplit['seed']}); leakage report: "
                  f"{'OK' if facts['nih-cxr14']['leakage']['ok'] else 'LEAKS'}. Join on `file_name` with your "
                  "own build of the NIH images.", "", _md(table), ""]
    parts += [LIMITS, ""]
    return "\n".join(parts)
