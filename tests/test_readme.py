"""The README's Python examples run as written, with the honest defaults, on the shipped sample built, deduplicated
and split by the README's own commands."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cxrcurate.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_examples():
    assert _python_blocks()


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs_as_written(index, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch", reason="the [bench] extra installs torch")
    pytest.importorskip("datasets", reason="the [hf] extra installs datasets")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").symlink_to(ROOT / "manifests")  # the README runs in a clone of the repository
    from cxrcurate.sample import sample_sources

    specs = []
    for name, folder in sample_sources():  # the README's layout: one folder per source under raw/
        shutil.copytree(folder, tmp_path / "raw" / name)
        specs += ["--source", f"{name}=raw/{name}"]
    assert main(["build-manifest", *specs, "--out", "out/m", "--quiet"]) == 0
    assert main(["dedup", "out/m/manifest.parquet", "--data-root", "raw", "--in-place", "--quiet"]) == 0
    assert main(["split", "out/m/manifest.parquet", "--test", "0.2", "--val", "0.1", "--seed", "0",
                 "--out", "out/m/split.parquet"]) == 0
    capsys.readouterr()
    namespace: dict = {}
    exec(compile(_python_blocks()[index], f"README.md python block {index}", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    if "to_hf_dataset" in _python_blocks()[index]:
        dd, df = namespace["dd"], namespace["df"]
        assert set(dd) == {"train", "val", "test"}
        kept = df[df["keep"].fillna(True).astype(bool)]
        assert sum(d.num_rows for d in dd.values()) == len(kept) < len(df)  # one copy per picture
        assert "ClassLabel" in out
        assert namespace["images"].shape[1:] == (1, 224, 224)
        assert out.strip().splitlines()[-1].startswith("v1 ")


def test_load_release_says_what_a_release_folder_is_and_carries_its_provenance(tmp_path):
    import cxrcurate
    from cxrcurate.errors import CxrcurateError

    release = cxrcurate.load_release(ROOT / "manifests" / "v1")
    info = release.attrs["cxrcurate"]
    assert info["release"] == "v1" and info["table"] == "release" and info["file"] == "open.parquet"
    assert set(info["sources"]) >= {"cohen", "hannover"}
    for bad, why in ((tmp_path / "nowhere", "does not exist"), (ROOT / "README.md", "is a file"),
                     (tmp_path, "has no open.parquet")):
        with pytest.raises(CxrcurateError) as exc:
            cxrcurate.load_release(bad)
        message = str(exc.value)
        assert why in message and "holds open.parquet" in message and "is a release folder" not in message
