"""One table format: kinds, the deterministic writer, the reader that dispatches by kind and accepts foreign tables."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxrcurate import tables
from cxrcurate.errors import MissingFileError, SchemaError
from cxrcurate.manifest import COLUMNS, SCHEMA_VERSION, read_manifest, to_table, write_manifest

KIND = tables.register(tables.TableKind(
    "test-scores", "1.0",
    pa.schema([pa.field("image_id", pa.string(), nullable=False), pa.field("score", pa.float64())]), decimals=4))


def _row(i: int) -> dict:
    return {"image_id": f"s:{i}.png", "source": "s", "path": f"s/{i}.png", "label": "normal", "view": "PA",
            "modality": "xray", "width": 10, "height": 10, "bit_depth": 8, "file_sha256": "a" * 64,
            "pixel_sha256": "b" * 64, "phash": i}


def test_writer_keeps_columns_it_does_not_own_and_marks_the_kind(tmp_path):
    df = to_table([_row(1), _row(2)]).to_pandas()
    df["flag_small"] = [True, False]
    df["unit"] = ["u1", "u2"]
    path = write_manifest(df, tmp_path / "m.parquet", {"data_root": "x"})
    back = read_manifest(path)
    assert list(back.columns) == [*COLUMNS, "flag_small", "unit"]
    assert back["flag_small"].tolist() == [True, False]
    meta = json.loads(pq.read_schema(path).metadata[b"cxrcurate"])
    assert meta["table"] == "manifest" and meta["table_version"] == SCHEMA_VERSION
    assert b"pandas" not in pq.read_schema(path).metadata


def test_floats_are_rounded_so_last_bit_noise_gives_the_same_bytes(tmp_path):
    x = 0.1 + 0.2  # 0.30000000000000004: the same sum in another order is 0.3
    a = tables.write_table(pd.DataFrame({"image_id": ["x"], "score": [x]}), tmp_path / "a.parquet", "test-scores")
    b = tables.write_table(pd.DataFrame({"image_id": ["x"], "score": [0.3]}), tmp_path / "b.parquet", "test-scores")
    assert a.read_bytes() == b.read_bytes()
    assert tables.read_table(a, "test-scores")["score"].tolist() == [0.3]


def test_reader_refuses_another_kind(tmp_path):
    path = tables.write_table(pd.DataFrame({"image_id": ["x"], "score": [1.0]}), tmp_path / "s.parquet",
                              "test-scores")
    with pytest.raises(SchemaError, match="is a test-scores table; this needs a manifest or release table"):
        read_manifest(path)


def test_plain_parquet_and_csv_with_required_columns_are_read_with_a_warning(tmp_path, caplog):
    df = to_table([_row(1), _row(2)]).to_pandas()[["image_id", "source", "path", "label", "view", "modality", "width",
                                                    "height", "bit_depth", "file_sha256", "pixel_sha256", "phash"]]
    df.to_parquet(tmp_path / "plain.parquet", index=False)  # as pandas writes it: int64 widths, no cxrcurate key
    df.to_csv(tmp_path / "plain.csv", index=False)
    for name in ("plain.parquet", "plain.csv"):
        with caplog.at_level(logging.WARNING):
            back = read_manifest(tmp_path / name)
        assert back.attrs["cxrcurate"]["provenance"] == "unknown"
        assert back["width"].dtype.name == "int32" and back["split"].isna().all()
        assert "provenance" in caplog.text and name in caplog.text
        caplog.clear()


def test_a_missing_required_column_is_named_with_the_fix(tmp_path):
    pd.DataFrame({"image_id": ["a"], "path": ["s/a.png"]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['source', 'label'"):
        read_manifest(tmp_path / "p.parquet")
    with pytest.raises(MissingFileError, match="build-manifest"):
        read_manifest(tmp_path / "absent.parquet")


def test_an_edited_type_in_a_cxrcurate_table_is_refused_not_cast(tmp_path):
    t = to_table([_row(1)])
    t = t.set_column(t.column_names.index("width"), "width", pa.array(["10"]))
    meta = {b"cxrcurate": json.dumps({"table": "manifest", "table_version": "1.0"}).encode()}
    pq.write_table(t.replace_schema_metadata(meta), tmp_path / "m.parquet")
    with pytest.raises(SchemaError, match="'width' has type string, expected int32"):
        read_manifest(tmp_path / "m.parquet")
