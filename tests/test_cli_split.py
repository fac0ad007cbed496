"""`cxrcurate split` and `cxrcurate leakage` end to end on the shipped sample (after dedup)."""

import pandas as pd

from cxrcurate.cli import main
from cxrcurate.manifest import read_info, read_manifest


def test_split_then_leakage(sample_build, tmp_path, capsys):
    deduped = tmp_path / "m.parquet"
    assert main(["dedup", str(sample_build.manifest), "--out", str(deduped), "-q", "--workers", "1"]) == 0
    capsys.readouterr()
    split = tmp_path / "split.parquet"
    assert main(["split", str(deduped), "--test", "0.2", "--val", "0.1", "--seed", "3", "--out", str(split)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "OK: nothing crosses sides" in out
    m = read_manifest(split)
    assert set(m["split"]) == {"train", "val", "test"}
    assert m.groupby("dup_group")["split"].nunique().eq(1).all()
    assert read_info(split)["split"]["seed"] == 3 and "dedup" in read_info(split)
    pairs = deduped.with_name("m.pairs.parquet")
    assert main(["leakage", str(split), "--pairs", str(pairs)]) == 0
    # a per-image split of the same rows leaks the copies the sample holds
    leaky = m.copy()
    leaky["split"] = ["test" if i % 3 == 0 else "train" for i in range(len(leaky))]
    leaky_path = tmp_path / "leaky.parquet"
    from cxrcurate.manifest import write_manifest

    write_manifest(leaky, leaky_path, read_info(split))
    capsys.readouterr()
    assert main(["leakage", str(leaky_path), "--pairs", str(pairs), "--format", "json"]) == 3  # check failed
    assert '"ok": false' in capsys.readouterr().out
    assert isinstance(pd.read_parquet(split), pd.DataFrame)
