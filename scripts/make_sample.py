"""Rebuild ``cxrcurate/sample/``: a small real sample of openly licensed files from a data root.

Usage: python scripts/make_sample.py /path/to/shared/data

Only CC BY / public-domain files are copied (Cohen rows licensed CC BY*, the Hannover repository (CC BY 3.0),
the COVID-CXNet collection (CC BY 4.0), two NIH ChestX-ray14 images (public domain)). The pick keeps real
quirks: the same pictures in three collections, a Cohen "No Finding" label on a Hannover COVID-19 patient,
child markers in file names, a metadata name that differs from its file in case only, rows without files.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import pandas as pd

COHEN = ["pneumocystis-pneumonia-1.jpg", "X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg", "b343e657.jpg",
         "cae2c0a9.jpg", "483f2ad8.jpg", "19abe1f3.jpg", "41182_2020_203_Fig3_HTML.jpg",
         "41182_2020_203_Fig4_HTML.jpg", "12941_2020_358_Fig1_HTML.jpg", "coronacases_org_001.nii.gz"]
HANNOVER = ["b343e657", "483f2ad8", "19abe1f3", "b0500187", "006f3a8a", "00870a9c", "08d780ae", "0578e08b"]
CXNET = ["001.jpeg", "129.webp", "166-.jpeg", "300.jpg", "374.PNG", "446p.jpg", "455p.jpg", "522.png", "549.png",
         "705.png", "887.jpg"]
NIH_EXTRA_ROWS = 30


def main(src: Path, dst: Path) -> None:
    for name in ("cohen", "hannover", "covid-cxnet", "nih-cxr14"):
        shutil.rmtree(dst / name, ignore_errors=True)
    # cohen
    (dst / "cohen/images").mkdir(parents=True)
    (dst / "cohen/lung-masks").mkdir()
    meta = pd.read_csv(src / "cohen/metadata.csv", dtype=str, keep_default_na=False)
    meta[meta.filename.isin(COHEN)].to_csv(dst / "cohen/metadata.csv", index=False)
    for name in COHEN:
        for sub in ("images", "lung-masks"):
            if (src / "cohen" / sub / name).exists():
                shutil.copy2(src / "cohen" / sub / name, dst / "cohen" / sub / name)
    # hannover
    (dst / "hannover/png").mkdir(parents=True)
    data = pd.read_csv(src / "hannover/data.csv", dtype=str, keep_default_na=False)
    data[data.image_id.isin(HANNOVER)].to_csv(dst / "hannover/data.csv", index=False)
    for image_id in HANNOVER:
        shutil.copy2(src / f"hannover/png/{image_id}.png", dst / f"hannover/png/{image_id}.png")
    # covid-cxnet
    (dst / "covid-cxnet/images").mkdir(parents=True)
    cx = pd.read_csv(src / "covid-cxnet/metadata.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    lower = {n.lower() for n in CXNET}
    cx[cx.filename.str.lower().isin(lower)].to_csv(dst / "covid-cxnet/metadata.csv", index=False)
    for name in CXNET:
        shutil.copy2(src / f"covid-cxnet/images/{name}", dst / f"covid-cxnet/images/{name}")
    # nih-cxr14: the two sample images, their rows and a few rows whose images are not shipped
    (dst / "nih-cxr14/images").mkdir(parents=True)
    nih = pd.read_csv(src / "nih-cxr14/Data_Entry_2017_v2020.csv.gz", dtype=str, keep_default_na=False)
    images = sorted(p.name for p in (src / "nih-cxr14/images").iterdir())
    rows = pd.concat([nih[nih["Image Index"].isin(images)], nih[nih["Patient Age"].astype(int) < 18].head(10),
                      nih.iloc[1000:1000 + NIH_EXTRA_ROWS - 10]])
    with gzip.open(dst / "nih-cxr14/Data_Entry_2017_v2020.csv.gz", "wt", newline="") as fh:
        rows.to_csv(fh, index=False)
    for name in images:
        shutil.copy2(src / f"nih-cxr14/images/{name}", dst / f"nih-cxr14/images/{name}")
    total = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"wrote {dst}: {sum(1 for p in dst.rglob('*') if p.is_file())} files, {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parents[1] / "cxrcurate" / "sample")
