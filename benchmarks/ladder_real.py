"""The model ladder on real collections: patient/duplicate-aware split vs the paper's per-image split.

Usage:
    python benchmarks/ladder_real.py --manifest M.parquet --out DIR [--models base-cnn cxnet ...]
        [--policies group per-image] [--runs 3] [--epochs 15] [--size 224] [--negatives normal,pneumonia,other]

Writes DIR/ladder.md (the table, with hardware, data and caveats) and DIR/ladder.json; each run's full folder
goes to DIR/runs/<model>-<policy>/. Initialisation is whatever the models can get offline (``--init random``
by default here: no ImageNet or CheXNet weights travel with the project); the table says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from cxrcurate.bench.run import BenchOptions, compare_table, run_bench
from cxrcurate.bench.train import TrainConfig
from cxrcurate.manifest import read_manifest

DEFAULT_MODELS = ["base-cnn", "densenet121-imagenet", "resnet50-imagenet", "cxnet", "cxnet-lungs", "cxnet-3class",
                  "cxnet-hier"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--policies", nargs="+", default=["group", "per-image"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--init", default="random")
    ap.add_argument("--negatives", default="normal,pneumonia,other")
    ap.add_argument("--max-minutes", type=float, default=None, help="per training run")
    ap.add_argument("--data-root", help="folder the manifest's paths are relative to (default: recorded)")
    args = ap.parse_args()
    import torch

    df = read_manifest(args.manifest)
    runs, timings = [], {}
    for model in args.models:
        for policy in args.policies:
            name = f"{model}-{policy}"
            lr = 1e-3 if model == "base-cnn" else 1e-4
            train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, patience=4,
                                workers=args.workers, max_minutes=args.max_minutes)
            opts = BenchOptions(model=model, init=args.init, split_policy=policy, runs=args.runs, size=args.size,
                                negatives=tuple(args.negatives.split(",")), train=train, n_boot=1000,
                                data_root=args.data_root)
            t0 = time.time()
            try:
                runs.append(run_bench(args.manifest, args.out / "runs" / name, opts, progress=False))
            except Exception as exc:  # noqa: BLE001 - one failing rung must not hide the others' numbers
                print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            timings[name] = round(time.time() - t0, 1)
            print(f"{name}: {timings[name]} s", flush=True)
    table = compare_table(runs)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    kept = df[df["keep"].fillna(True).astype(bool)]
    lines = [f"Hardware: {device}; torch {torch.__version__}. Init: {args.init}. Input {args.size} px, "
             f"{args.epochs} epochs max (early stopping), {args.runs} seeds per row.",
             f"Data: {args.manifest.name}: {len(df)} images, {len(kept)} kept after dedup; labels "
             + ", ".join(f"{k} {v}" for k, v in kept["label"].value_counts().items())
             + f". Binary task: covid19 vs {args.negatives}.", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    lines += ["", "Accuracy ± std over seeds; COVID F1 and ROC AUC are means over seeds. per-image rows are LEAKY "
              "by construction (the paper's protocol). Paper figures: Haghanifar et al. 2020, Table 6, their data."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ladder.md").write_text("\n".join(lines) + "\n")
    (args.out / "ladder.json").write_text(json.dumps({"table": table.to_dict("records"), "seconds": timings,
                                                      "device": device}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
