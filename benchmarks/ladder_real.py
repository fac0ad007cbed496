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

import pandas as pd

from cxrcurate.bench.compare import compare_table
from cxrcurate.bench.feed import default_cache_dir
from cxrcurate.bench.run import BenchOptions, run_bench
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
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: the bench's, from the machine)")
    ap.add_argument("--init", default="random")
    ap.add_argument("--negatives", default="normal,pneumonia,other")
    ap.add_argument("--max-minutes", type=float, default=None, help="per training run")
    ap.add_argument("--lr", default="auto", help="a number or auto (the bench's LR range test)")
    ap.add_argument("--cache", help="tensor cache, filled before training (default: the bench's default folder)")
    ap.add_argument("--no-cache", action="store_true", help="render every image every epoch")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--augment-strength", type=float, default=0.5)
    ap.add_argument("--data-root", help="folder the manifest's paths are relative to (default: recorded)")
    ap.add_argument("--report", type=Path, help="where ladder.md/json go, rewritten after every run (default: --out)")
    ap.add_argument("--deadline-minutes", type=float, help="start no new run after this long")
    args = ap.parse_args()
    import torch

    df = read_manifest(args.manifest)
    report = args.report or args.out
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    runs, timings, failed, started = [], {}, {}, time.time()
    for model in args.models:
        for policy in args.policies:
            name = f"{model}-{policy}"
            if args.deadline_minutes and (time.time() - started) / 60 > args.deadline_minutes:
                failed[name] = "not run: deadline reached"
                continue
            lr = args.lr if args.lr == "auto" else float(args.lr)
            train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, patience=4,
                                workers=args.workers, max_minutes=args.max_minutes)
            opts = BenchOptions(model=model, init=args.init, split_policy=policy, runs=args.runs, size=args.size,
                                negatives=tuple(args.negatives.split(",")), train=train, n_boot=1000,
                                data_root=args.data_root, augment=not args.no_augment,
                                cache=None if args.no_cache else str(args.cache or default_cache_dir()),
                                augment_strength=args.augment_strength)
            t0 = time.time()
            try:
                runs.append(run_bench(args.manifest, args.out / "runs" / name, opts, progress=False))
            except Exception as exc:  # noqa: BLE001 - one failing rung must not hide the others' numbers
                failed[name] = f"{type(exc).__name__}: {exc}"
                print(f"{name}: FAILED {failed[name]}", flush=True)
                continue
            timings[name] = round(time.time() - t0, 1)
            print(f"{name}: {timings[name]} s", flush=True)
            for hist in sorted((args.out / "runs" / name).glob("run-*/history.csv")):
                h = pd.read_csv(hist)
                print(f"  {hist.parent.name} data wait per epoch: "
                      + " ".join(f"{w:.0%}" for w in h["data_wait_share"]) + f"; img/s {h['images_per_s'].mean():.0f}",
                      flush=True)
            write_report(report, runs, timings, failed, df, args, device)
    write_report(report, runs, timings, failed, df, args, device)
    print((report / "ladder.md").read_text())


def write_report(report: Path, runs: list[Path], timings: dict, failed: dict, df, args, device: str) -> None:
    """ladder.md (table with hardware, data and caveats) and ladder.json, rewritten after every run."""
    import torch

    table = compare_table(runs) if runs else None
    kept = df[df["keep"].fillna(True).astype(bool)]
    lines = [f"Hardware: {device}; torch {torch.__version__}. Init: {args.init}. Input {args.size} px, "
             f"{args.epochs} epochs max (early stopping), {args.runs} seed(s) per row.",
             f"Data: {args.manifest.name}: {len(df)} images, {len(kept)} kept after dedup; labels "
             + ", ".join(f"{k} {v}" for k, v in kept["label"].value_counts().items())
             + f". Binary task: covid19 vs {args.negatives}.", ""]
    if table is not None:
        lines += ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    lines += ["", "Brackets: bootstrap 95% CI over test images (one seed); ± is the std over seeds. per-image rows are "
              "LEAKY by construction (the paper's protocol). Paper figures: Haghanifar et al. 2020, Table 6, their "
              "data."]
    lines += [f"- {k}: {v}" for k, v in failed.items()]
    report.mkdir(parents=True, exist_ok=True)
    (report / "ladder.md").write_text("\n".join(lines) + "\n")
    (report / "ladder.json").write_text(json.dumps({"table": table.to_dict("records") if table is not None else [],
                                                     "seconds": timings, "failed": failed, "device": device},
                                                    indent=2))


if __name__ == "__main__":
    main()
