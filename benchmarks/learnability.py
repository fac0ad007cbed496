"""Does the bench's default recipe learn a signal that is there, and say so when there is none?

Real adult chest X-rays of ONE collection (Cohen's frontal X-rays of adults from ``DATA_ROOT/cohen``, so no source
or age shortcut exists), labels drawn at random (half COVID-19, half normal; two labels per patient never
differ), and, unless ``--no-marker``, a burnt-in label (a white letter on a black box, top-left, as scanners and
collections print them) on every COVID-19 image: the only learnable signal. Each configuration is trained and
scored by ``cxrcurate.bench.run.run_bench`` (the bench's own data path, split and metrics) and one line per seed
is printed: validation ROC AUC with its unit CI and the ``never_left_chance`` flag, test ROC AUC with its CI, the
LR used, epochs, seconds.

    python benchmarks/learnability.py ../shared/data --model base-cnn --size 64 --epochs 8
    python benchmarks/learnability.py ../shared/data --model base-cnn --size 64 --epochs 8 --no-marker
    python benchmarks/learnability.py ../shared/data --model cxnet --init random --size 64 --epochs 6

A recipe learns when the marked runs leave chance (validation CI above 0.5) and the unmarked runs are flagged.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcurate.bench.record import RunRecord  # noqa: E402
from cxrcurate.bench.run import BenchOptions, run_bench  # noqa: E402
from cxrcurate.bench.train import TrainConfig  # noqa: E402
from cxrcurate.imageio import decode_image, fingerprint  # noqa: E402
from cxrcurate.manifest import write_manifest  # noqa: E402

MARKER = "R"


def burn(img: np.ndarray) -> np.ndarray:
    """A white letter on a black box in the top-left corner, about a sixth of the shorter side."""
    import cv2

    out = img.copy()
    box = max(8, min(out.shape) // 6)
    out[2:2 + box, 2:2 + box] = 0
    cv2.putText(out, MARKER, (2 + box // 5, 2 + box - box // 6), cv2.FONT_HERSHEY_SIMPLEX, box / 30, 255,
                max(1, box // 8), cv2.LINE_AA)
    return out


def make_manifest(data_root: Path, out: Path, n: int, marker: bool, seed: int, side: int = 256) -> Path:
    """Write ``n`` adult frontal Cohen X-rays (resized to ``side``), random labels by patient, the marker on every
    COVID-19 one; return the manifest path."""
    import cv2
    from PIL import Image

    meta = pd.read_csv(data_root / "cohen" / "metadata.csv", dtype=str)
    meta = meta[(meta["modality"] == "X-ray") & meta["view"].isin(["PA", "AP", "AP Supine", "AP Erect"])]
    meta = meta[pd.to_numeric(meta["age"], errors="coerce") >= 18]
    meta = meta[[(data_root / "cohen" / "images" / f).is_file() for f in meta["filename"]]]
    meta = meta.drop_duplicates("filename").sample(frac=1.0, random_state=seed).head(n)
    rng = np.random.default_rng(seed)
    patient_label = {p: ("normal", "covid19")[int(rng.integers(0, 2))] for p in sorted(set(meta["patientid"]))}
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, rec in enumerate(meta.to_dict("records")):
        pixels = decode_image(data_root / "cohen" / "images" / rec["filename"]).pixels
        scale = side / max(pixels.shape)
        pixels = cv2.resize(pixels, (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale))),
                            interpolation=cv2.INTER_AREA)
        label = patient_label[rec["patientid"]]
        if marker and label == "covid19":
            pixels = burn(pixels)
        name = f"images/{i:04d}.png"
        Image.fromarray(pixels).save(out / name)
        rows.append({"image_id": f"planted:{name}", "source": "planted", "source_record": rec["filename"],
                     "patient_id": f"planted:{rec['patientid']}", "path": name, "label": label, "view": "PA",
                     "frontal": True, "modality": "xray", "age_years": float(rec["age"]), "sex": None,
                     "pediatric": False, "pediatric_reason": "age>=18", **fingerprint(out / name)})
    info = {"data_root": str(out), "learnability": {"marker": marker, "seed": seed, "from": "cohen"}}
    return write_manifest(rows, out / "manifest.parquet", info)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root", type=Path)
    ap.add_argument("--model", default="base-cnn")
    ap.add_argument("--init", default="random")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=480)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", default="auto")
    ap.add_argument("--augment-strength", type=float, default=None, help="default: the bench's default")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--no-marker", action="store_true")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_manifest(args.data_root, Path(tmp) / "data", args.images, not args.no_marker, seed=0)
        train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, workers=0, patience=args.epochs,
                            lr=args.lr if args.lr == "auto" else float(args.lr))
        opts = BenchOptions(model=args.model, init=args.init, size=args.size, runs=args.runs, n_boot=200, train=train,
                            negatives=("normal",), augment=not args.no_augment)
        if args.augment_strength is not None:
            opts.augment_strength = args.augment_strength
        started = time.time()
        run = run_bench(manifest, Path(tmp) / "run", opts, progress=False)
        rec = RunRecord.open(run)
        results = []
        for k, r in enumerate(rec.metrics["runs"]):
            hist = rec.history(k)
            line = {"model": args.model, "init": args.init, "size": args.size, "marker": not args.no_marker,
                    "augment": "off" if args.no_augment else opts.augment_strength, "seed": r["seed"],
                    "lr": float(hist["lr"].iloc[0]), "epochs": len(hist),
                    "train_loss": [round(v, 3) for v in hist["train_loss"]],
                    "val_loss": [round(v, 3) for v in hist["val_loss"]],
                    "val_auc": round(r["val_roc_auc"], 3), "val_ci": [round(c, 3) for c in r["val_ci95_roc_auc"]],
                    "never_left_chance": r["never_left_chance"], "evidence": r["evidence"]["kind"],
                    "test_auc": round(r["roc_auc"], 3),
                    "test_ci": [round(c, 3) for c in r["ci95"]["roc_auc"]]}
            results.append(line)
            print(json.dumps(line))
        print(f"seconds: {time.time() - started:.0f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
