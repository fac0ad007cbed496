import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxrcurate.errors import SchemaError
from cxrcurate.manifest import COLUMNS, SCHEMA, SCHEMA_VERSION, read_info, read_manifest, to_table, write_manifest


def _row(i: int, **kw) -> dict:
    row = {"image_id": f"cohen:images/{i}.png", "source": "cohen", "source_record": f"metadata.csv#{i}",
           "patient_id": "cohen:311a", "path": f"cohen/images/{i}.png", "label": "covid19", "view": "PA",
           "frontal": True, "modality": "xray", "age_years": 7.0, "sex": "F", "pediatric": True,
           "pediatric_reason": "age<18", "width": 448, "height": 400, "bit_depth": 8, "file_sha256": "a" * 64,
           "pixel_sha256": "b" * 64, "phash": 2**64 - 1 - i, "mask_paths": ["cohen/lung-masks/1.png"],
           "extra": json.dumps({"offset": "3"})}
    row.update(kw)
    return row


def test_round_trip_keeps_types_and_provenance(tmp_path):
    path = write_manifest([_row(1), _row(2, patient_id=None, age_years=None, pediatric=None)], tmp_path / "m.parquet",
                          {"sources": {"cohen": {"commit": "abc"}}})
    df = read_manifest(path)
    assert list(df.columns) == list(COLUMNS)
    assert df.loc[0, "phash"] == 2**64 - 2  # full uint64 range survives
    assert df.loc[0, "patient_id"] == "cohen:311a" and pd.isna(df.loc[1, "patient_id"])
    info = read_info(path)
    assert info["schema_version"] == SCHEMA_VERSION and info["sources"]["cohen"]["commit"] == "abc"
    assert df.attrs["cxrcurate"]["cxrcurate_version"]
    assert pq.read_schema(path).field("phash").type == pa.uint64()


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = write_manifest([_row(1)], tmp_path / "m.parquet")
    with pytest.raises(SchemaError):
        write_manifest([_row(1, label="covid")], path)  # invalid: the old file must survive untouched
    assert len(read_manifest(path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]


@pytest.mark.parametrize("change,message", [
    (lambda t: t.drop(["pixel_sha256"]), "missing column(s) ['pixel_sha256']"),
    (lambda t: t.set_column(t.schema.get_field_index("width"), "width", pa.array(["448"])),
     "column 'width' has type string, expected int32"),
    (lambda t: t.set_column(t.schema.get_field_index("label"), "label", pa.array(["COVID-19"])),
     "column 'label' has value(s) ['COVID-19']"),
    (lambda t: t.set_column(t.schema.get_field_index("path"), "path", pa.array([None], pa.string())),
     "column 'path' has 1 null value(s)"),
    (lambda t: pa.concat_tables([t, t]), "image_id is not unique"),
])
def test_read_names_the_bad_column(tmp_path, change, message):
    good = to_table([_row(1)])
    bad = change(good)
    path = tmp_path / "bad.parquet"
    pq.write_table(bad.replace_schema_metadata({b"cxrcurate": json.dumps({"schema_version": "1.0"}).encode()}), path)
    with pytest.raises(SchemaError) as err:
        read_manifest(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_foreign_parquet_and_missing_file_are_explained(tmp_path):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    with pytest.raises(SchemaError, match="no cxrcurate metadata"):
        read_manifest(tmp_path / "x.parquet")
    with pytest.raises(FileNotFoundError, match="build-manifest"):
        read_manifest(tmp_path / "nope.parquet")


def test_newer_major_schema_version_is_refused(tmp_path):
    t = to_table([_row(1)]).replace_schema_metadata({b"cxrcurate": json.dumps({"schema_version": "2.0"}).encode()})
    pq.write_table(t, tmp_path / "m.parquet")
    with pytest.raises(SchemaError, match="schema version 2.0"):
        read_manifest(tmp_path / "m.parquet")


def test_schema_fields_are_documented():
    assert all(f.metadata and f.metadata[b"description"] for f in SCHEMA)


def test_opens_without_cxrcurate_in_pandas_duckdb_and_datasets(tmp_path):
    path = write_manifest([_row(1), _row(2, label="normal")], tmp_path / "m.parquet", {"sources": {"cohen": {}}})
    code = f"""
import json, sys
import duckdb, pandas as pd, pyarrow.parquet as pq, datasets
p = {str(path)!r}
df = pd.read_parquet(p)
assert sorted(df.label) == ["covid19", "normal"], df.label
assert duckdb.sql(f"select count(*) from read_parquet('{{p}}') where pediatric").fetchall()[0][0] == 2
ds = datasets.load_dataset("parquet", data_files=p, split="train")
assert ds.num_rows == 2 and ds.features["phash"].dtype == "uint64", ds.features
meta = json.loads(pq.read_schema(p).metadata[b"cxrcurate"])
assert meta["schema_version"] == "1.1" and "cohen" in meta["sources"]
assert not any(m.startswith("cxrcurate") for m in sys.modules), "cxrcurate was imported"
print("ok")
"""
    env_cache = {"HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, **env_cache}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
