"""A Croissant description of a release (``croissant.json``): the machine-readable dataset card.

Croissant (MLCommons, format 1.0) is JSON-LD on schema.org's ``Dataset``: what the dataset is, its license, its
files (``distribution``, each with its sha256) and the columns of each table (``recordSet``, one field per Parquet
column with its type and meaning). The Hugging Face Hub, Kaggle and dataset search engines read it, and
``mlcroissant`` loads the records from it. Everything here is read from the release's own files, so the
description cannot drift from them, and the output is deterministic (``release build`` writes the same bytes twice).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..manifest import SCHEMA
from ..tables import table_info

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
# The JSON-LD context of Croissant 1.0 (the terms this file uses map to schema.org, Croissant and Dublin Core).
CONTEXT: dict[str, Any] = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty", "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "samplingRate": "cr:samplingRate", "sc": "https://schema.org/",
    "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField", "transform": "cr:transform",
}
# What each table of a release holds (its record set's description); a file not listed here is not described.
TABLES = {
    "open": "one row per image of the five open collections at pinned commits: identity of the original file, "
            "labels, patients, pediatric flags, duplicate groups, the standard split and quality flags",
    "nih-cxr14": "ChestX-ray14 metadata (no files): labels, patients, ages and its split by patient",
    "open.pairs": "accepted duplicate pairs between images of open, with the evidence (kind, Hamming distance, "
                  "keypoint inliers, score)",
    "open.conflicts": "duplicate groups whose copies disagree on a field (label conflicts keep no row)",
    "open.dropped": "every file or metadata row of the sources left out of open, with the reason",
}
# Columns of the release tables that the manifest schema does not describe.
COLUMN_NOTES = {
    "repository": "GitHub repository (owner/name) the original file is published in",
    "commit": "the repository commit the original file is taken from",
    "repo_path": "the file's path inside the repository; path = <source>/<repo_path>",
    "file_bytes": "size of the original file in bytes",
    "mode": "Pillow image mode of the original file (L, RGB, RGBA, P, I;16)",
    "unit": "what must stay on one side of a split: a patient with aliases and every picture linked to it",
    "flag_inverted": "quality flag: negative (inverted) radiograph; never used to drop a row",
    "flag_lateral": "quality flag: lateral view filed as frontal; never used to drop a row",
    "flag_low_information": "quality flag: nearly blank or flat image; never used to drop a row",
    "flag_figure": "quality flag: a figure or text panel rather than a radiograph; never used to drop a row",
    "flag_small": "quality flag: original shorter side under 300 px; never used to drop a row",
    "quality": "the measurements the quality flags threshold (JSON)",
    "file_name": "ChestX-ray14 image file name (join key with your copy of the images)",
    "follow_up": "ChestX-ray14 follow-up number of the patient's image",
    "image_a": "image_id of one image of the pair", "image_b": "image_id of the other image",
    "kind": "the evidence that accepted the pair (file, pixel, name, phash, ann)",
    "hamming": "pHash Hamming distance of the pair", "inliers": "keypoint inliers of the verification",
    "score": "verification score", "field": "the column the copies disagree on",
    "values": "the values the copies carry", "images": "the image_ids of the copies",
    "sources": "the sources of the copies", "reason": "why the file or row is not in open",
    "detail": "the file or row and the cause",
}


def _data_type(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "sc:Boolean"
    if pa.types.is_integer(t):
        return "sc:Integer"
    if pa.types.is_floating(t):
        return "sc:Float"
    return "sc:Text"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_set(name: str, file: str, schema: pa.Schema) -> dict[str, Any]:
    manifest = {f.name: (f.metadata or {}).get(b"description", b"").decode() for f in SCHEMA}
    fields = []
    for f in schema:
        about = COLUMN_NOTES.get(f.name) or manifest.get(f.name) or f.name
        fields.append({"@type": "cr:Field", "@id": f"{name}/{f.name}", "name": f.name, "description": about,
                       "dataType": _data_type(f.type),
                       "source": {"fileObject": {"@id": file}, "extract": {"column": f.name}}})
    return {"@type": "cr:RecordSet", "@id": name, "name": name, "description": TABLES[name], "field": fields}


def croissant(folder: str | Path) -> dict[str, Any]:
    """The Croissant description of the release in ``folder`` (a JSON-LD object), read from its files."""
    folder = Path(folder)
    meta = table_info(folder / "open.parquet")
    version = str(meta["release"])
    table = pq.read_table(folder / "open.parquet", columns=["source", "repository", "license"]).to_pandas()
    licenses = sorted({str(x) for x in table["license"].dropna()})
    repos = table.drop_duplicates("source").sort_values("source")
    files, record_sets = [], []
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            continue
        files.append({"@type": "cr:FileObject", "@id": path.name, "name": path.name,
                      "description": TABLES[name], "contentUrl": path.name, "contentSize": f"{path.stat().st_size} B",
                      "encodingFormat": "application/x-parquet", "sha256": _sha256(path)})
        record_sets.append(_record_set(name, path.name, pq.read_schema(path)))
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": f"cxrcurate-release-{version}",
        "description": f"cxrcurate release {version}: chest X-ray images of open COVID-19 collections"
                       + f" ({', '.join(repos['source'])})"
                       + " at pinned commits, deduplicated across collections, with patients, pediatric flags, "
                         "quality flags and a patient- and duplicate-aware train/val/test split; plus ChestX-ray14 "
                         "metadata. The tables describe the original published files (sha256, size, dimensions); "
                         "the images themselves are fetched from their repositories (`cxrcurate fetch --release`). "
                         "See README.md, the dataset card.",
        "license": licenses + ["nih-cxr14: public domain (NIH Clinical Center; cite Wang et al. 2017)"],
        "version": f"{version.lstrip('v')}.0.0",
        "citeAs": "Cite the source collections, as each asks (README.md, 'Sources and licenses'): "
                  + "; ".join(f"{s} https://github.com/{r}" for s, r in zip(repos["source"], repos["repository"],
                                                                            strict=True))
                  + "; ChestX-ray14: Wang et al. 2017.",
        "keywords": ["chest X-ray", "COVID-19", "medical imaging", "deduplicated", "image classification"],
        "creator": {"@type": "sc:Organization", "name": "cxrcurate"},
        "isLiveDataset": False,
        "distribution": files,
        "recordSet": record_sets,
    }


def write_croissant(folder: str | Path) -> Path:
    """Write ``folder/croissant.json`` (deterministic) and return its path."""
    path = Path(folder) / "croissant.json"
    path.write_text(json.dumps(croissant(folder), indent=1, ensure_ascii=False) + "\n")
    return path
