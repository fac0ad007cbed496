"""Recall and precision of a deduplicated manifest against the eye-checked real pairs (benchmarks/truth/).

Usage:
    python benchmarks/score_truth.py DEDUPED_MANIFEST [--truth benchmarks/truth/real_pairs.csv]

A truth pair is a copy when its ``decision`` is ``copy``; copies are closed under transitivity (two copies of one
picture are copies of each other), giving the true pairs. Recall: the share of true pairs whose two images share a
``dup_group``. Precision: among pairs of images that share a group and are both in the truth file, the share
that are true pairs (pairs of pictures judged different count against it). Same-patient-different-day pairs are
reported apart: how many of them were merged (they must not be).
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--truth", type=Path, default=Path(__file__).parent / "truth" / "real_pairs.csv")
    args = ap.parse_args()
    truth = pd.read_csv(args.truth)
    group = pd.read_parquet(args.manifest, columns=["image_id", "dup_group"]).set_index("image_id")["dup_group"]
    absent = ~(truth["image_a"].isin(group.index) & truth["image_b"].isin(group.index))
    if absent.any():  # a manifest built with other views or sources: score only the pairs it holds, and say so
        print(f"{int(absent.sum())} of {len(truth)} judged pairs name an image this manifest does not hold "
              f"(e.g. {truth.loc[absent, 'image_a'].iloc[0]}); they are left out. The truth was judged on the "
              "five collections with all views: see benchmarks/truth/README.md")
        truth = truth[~absent]
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    copies = truth[truth["decision"] == "copy"]
    for a, b in zip(copies["image_a"], copies["image_b"], strict=True):
        parent[find(a)] = find(b)
    pictures: dict[str, list[str]] = {}
    for x in list(parent):
        pictures.setdefault(find(x), []).append(x)
    true_pairs = {tuple(sorted(p)) for members in pictures.values() for p in combinations(members, 2)}
    known = set(truth["image_a"]) | set(truth["image_b"])
    hit = sum(group[a] == group[b] for a, b in true_pairs)
    predicted = {tuple(sorted(p)) for _, g in group[group.index.isin(known)].groupby(group[group.index.isin(known)])
                 for p in combinations(g.index, 2)}
    tp = len(predicted & true_pairs)
    print(f"true copy pairs {len(true_pairs)} (from {len(copies)} judged pairs, {len(pictures)} pictures); "
          f"recall {hit / max(1, len(true_pairs)):.3f} ({len(true_pairs) - hit} missed)")
    print(f"predicted pairs among judged images {len(predicted)}; precision {tp / max(1, len(predicted)):.3f} "
          f"({len(predicted) - tp} wrong)")
    for kind in ("same_patient", "not_copy"):
        sub = truth[truth["decision"] == kind]
        merged = sum(group[a] == group[b] and tuple(sorted((a, b))) not in true_pairs
                     for a, b in zip(sub["image_a"], sub["image_b"], strict=True))
        print(f"{kind} pairs judged {len(sub)}; merged (wrongly) {merged}")


if __name__ == "__main__":
    main()
