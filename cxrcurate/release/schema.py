"""The tables of a release, as table kinds: ``release`` (``open.parquet``) and ``nih-cxr14``, and the release's files.

``open.parquet`` is a manifest (every manifest column, ``manifest.SCHEMA``) plus the declared columns below, so every
command that reads a manifest reads it (``leakage``, ``stats``, ``split``, ``dedup``, ``bench``, ``to_hf_dataset``).
Its pixel fingerprints are null: they need the original pixels (``cxrcurate materialise`` fills them).
``nih-cxr14.parquet`` holds ChestX-ray14 metadata only (no files), so it has its own kind.
"""

from __future__ import annotations

import pyarrow as pa

from ..errors import SchemaError
from ..manifest import MANIFEST_KIND, SCHEMA, validate_table
from ..tables import TableKind, register
from .quality import FLAGS

_FLAG_DOC = {
    "flag_inverted": "looks like a negative radiograph (bones dark)",
    "flag_lateral": "looks lateral or oblique although filed frontal or unknown",
    "flag_low_information": "near-blank or washed out",
    "flag_figure": "figure crop with panels or heavy burnt-in text",
    "flag_small": "the original's shorter side is under 300 px",
}
EXTRA_FIELDS = [
    pa.field("repository", pa.string(), metadata={"description": "public repository of the original (owner/name)"}),
    pa.field("commit", pa.string(), metadata={"description": "commit of the repository the original is pinned at"}),
    pa.field("repo_path", pa.string(), metadata={"description": "the original's path inside the repository"}),
    pa.field("file_bytes", pa.int64(), metadata={"description": "size of the original file in bytes"}),
    pa.field("mode", pa.string(), metadata={"description": "PIL mode of the original (L, RGB, ...)"}),
    pa.field("unit", pa.string(), metadata={"description": "what the split kept on one side (split_groups)"}),
    *[pa.field(f, pa.bool_(), metadata={"description": _FLAG_DOC[f] + "; never used to drop a row"}) for f in FLAGS],
    pa.field("quality", pa.string(), metadata={"description": "the measurements the flags threshold (JSON)"}),
]
RELEASE_SCHEMA = pa.schema([*SCHEMA, *EXTRA_FIELDS])
RELEASE_KIND = register(TableKind("release", "1.0", RELEASE_SCHEMA, required=MANIFEST_KIND.needed,
                                  validate=validate_table))

NIH_SCHEMA = pa.schema([
    pa.field("image_id", pa.string(), nullable=False, metadata={"description": "nih-cxr14:<Image Index>"}),
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_record", pa.string(), metadata={"description": "row of Data_Entry_2017_v2020.csv"}),
    pa.field("patient_id", pa.string()),
    pa.field("file_name", pa.string(), metadata={"description": "the file name to join your own NIH images on"}),
    pa.field("label", pa.string(), nullable=False),
    pa.field("finding_raw", pa.string()),
    pa.field("view", pa.string()),
    pa.field("age_years", pa.float64()),
    pa.field("sex", pa.string()),
    pa.field("pediatric", pa.bool_()),
    pa.field("pediatric_reason", pa.string()),
    pa.field("follow_up", pa.int64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("split", pa.string()),
])


def _validate_nih(table: pa.Table, origin: str) -> None:
    ids = table.column("image_id")
    if len(set(ids.to_pylist())) != len(ids):
        raise SchemaError(f"{origin}: image_id is not unique; write it again with `cxrcurate release build`")


NIH_KIND = register(TableKind("nih-cxr14", "1.0", NIH_SCHEMA, validate=_validate_nih))

# The release folder: tables by role, and the files whose sha256 ``release.json`` lists (``files``).
TABLE_FILES = {"open": "open.parquet", "pairs": "open.pairs.parquet", "conflicts": "open.conflicts.parquet",
               "dropped": "open.dropped.parquet", "nih-cxr14": "nih-cxr14.parquet"}
FACTS = "release.json"
