"""Release folders for tests, written as ``cxrcurate release build`` writes one: the ``release`` table kind with the
metadata of the published v1, and a ``release.json`` listing every file's sha256 (which ``verify`` checks first)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrcurate.release.build import file_hashes
from cxrcurate.tables import table_info, write_table

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "manifests" / "v1"


def write_release(folder: Path, rows: pd.DataFrame, release: str = "v1", pairs: bool = False) -> Path:
    """``rows`` as ``folder/open.parquet`` (kind ``release``, v1's provenance metadata), an empty pairs table when
    asked, and ``release.json`` with the digests of every file."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {k: v for k, v in table_info(RELEASE / "open.parquet").items() if k not in ("table", "table_version")}
    write_table(rows, folder / "open.parquet", "release", {**info, "release": release})
    if pairs:
        write_table(pd.DataFrame(columns=["image_a", "image_b", "accepted"]), folder / "open.pairs.parquet", "pairs")
    (folder / "release.json").write_text(json.dumps({"release": release, "files": file_hashes(folder)}))
    return folder


def png(path: Path, seed: int) -> None:
    """A 48x40 8-bit noise PNG (a stand-in image whose bytes depend on ``seed``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 48), dtype=np.uint8)).save(path)


def fake_release(tmp_path: Path, release: str = "v1", pairs: bool = False) -> tuple[Path, Path]:
    """A three-image release (one image per side) over files generated in ``tmp_path/root``: ``(release, root)``."""
    root, rel = tmp_path / "root", tmp_path / "rel"
    rows = []
    for i, split in enumerate(("train", "val", "test")):
        path = f"hannover/png/{i}.png"
        png(root / path, i)
        rows.append({"image_id": f"hannover:png/{i}.png", "source": "hannover", "source_record": f"data.csv#{i}",
                     "patient_id": f"hannover:{i}", "path": path, "url": None, "license": "CC BY 3.0",
                     "label": "covid19", "finding_raw": "COVID-19", "view": "AP", "frontal": True, "modality": "xray",
                     "age_years": None, "sex": "M", "pediatric": None, "pediatric_reason": None,
                     "file_sha256": hashlib.sha256((root / path).read_bytes()).hexdigest(), "width": 48, "height": 40,
                     "bit_depth": 8, "pixel_sha256": None, "phash": None, "extra": None, "dup_group": f"g{i}",
                     "keep": True, "unit": f"unit:{i}", "split": split, "flag_inverted": False, "flag_small": True,
                     "repository": "o/r", "commit": "c"})
    return write_release(rel, pd.DataFrame(rows), release, pairs), root
