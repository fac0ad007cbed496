"""``cxrcurate bench --compare``: finished runs side by side, read from their run records (torch-free).

A run whose evidence is missing (``metrics.evidence``: at chance, an undefined or degenerate CI, one predicted
class, too few test units per class) says so in its row, and its paper comparison reads "not comparable".

Each row also carries the leak measure of its first seed's split (``cxrcurate leakage --measure``: test rows with a
copy or their own unit in train, and the memorisation gain a k-NN draws from the split), or ``-`` when the run's
manifest or images are not at hand.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..dedup import read_pairs
from ..errors import CxrcurateError
from ..splitcheck.measure import measure_split_table
from .data import LEAKY
from .metrics import no_evidence
from .record import RunRecord

log = logging.getLogger(__name__)


def leak_summary(run: RunRecord, k: int = 0, n_boot: int = 200) -> str | None:
    """The leak measure (``cxrcurate leakage --measure``) of seed K's split, as one line: how many test rows have a
    copy or their own unit in train, and what that is worth to a k-NN. None when it cannot be measured (the run's
    manifest or images are not at hand), with the reason logged."""
    try:
        pairs = read_pairs(run.manifest_path)
        found = measure_split_table(run.manifest, run.split(k), root=run.root, pairs=pairs, n_boot=n_boot)
    except (CxrcurateError, OSError) as exc:
        log.warning("leak measure of %s not made: %s", run.path, exc)
        return None
    return found.summary()


def fmt(value: float | None, ci: list[float] | None = None) -> str:
    """``0.812 [0.700, 0.900]``; a dash for a missing value."""
    if value is None or not np.isfinite(value):
        return "-"
    text = f"{value:.3f}"
    if ci and all(c is not None and np.isfinite(c) for c in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def compare_table(runs: list[Path]) -> pd.DataFrame:
    """One row per run folder (mean over its seeds, CI of its first seed) plus the paper's Table 6 figures."""
    rows = []
    for path in runs:
        run = RunRecord.open(path)
        m, options = run.metrics, run.config.get("options", {})
        init = (options.get("init") or run.config.get("spec", {}).get("init", "?")) + (
            " (quick)" if options.get("quick") else "")
        agg, first = m["aggregate"], m["runs"][0]
        n_runs = agg["accuracy"]["runs"]

        def cell(key: str, agg=agg, first=first, n_runs=n_runs) -> str:
            a = agg.get(key, {})
            text = fmt(a.get("mean"), first.get("ci95", {}).get(key) if n_runs == 1 else None)
            std = a.get("std")
            return text + (f" ±{std:.3f}" if n_runs > 1 and std is not None and np.isfinite(std) else "")

        empty = [r for r in m["runs"] if no_evidence(r)]
        paper = m.get("paper") or {}
        rows.append({
            "run": run.name, "run id": run.run_id, "model": m["model"],
            "init": init + (f" ({m['variant']})" if m.get("variant") else ""),
            "split": m["split_policy"] + (" (LEAKY)" if m.get("leaky") else ""),
            "test n": first["n"], "units": first.get("n_units", "-"), "seeds": n_runs,
            "ROC AUC": cell("roc_auc"), "balanced acc": cell("balanced_accuracy"), "accuracy": cell("accuracy"),
            "majority baseline": fmt(first.get("majority_baseline", {}).get("accuracy")),
            "COVID F1": cell("covid_f1"),
            "evidence": f"NONE in {len(empty)}/{n_runs}" if empty else "yes",
            "paper accuracy": "not comparable" if empty else fmt(paper.get("accuracy")),
            "paper COVID F1": "not comparable" if empty else fmt(paper.get("covid_f1")),
            "leak": leak_summary(run) or "-",
        })
    return pd.DataFrame(rows)


def compare_records(runs: list[Path]) -> list[dict[str, Any]]:
    """The comparison for scripts (``bench --compare --format json``): per run the table's row (formatted cells)
    plus the numbers behind it: ``aggregate`` (mean/std/range over seeds), ``ci95`` per seed and the seeds without
    evidence, from the run record's metrics."""
    records = compare_table(runs).to_dict("records")
    for record, path in zip(records, runs, strict=True):
        m = RunRecord.open(path).metrics
        record.update(path=str(path), aggregate=m["aggregate"],
                      ci95=[{"seed": r.get("seed"), **r.get("ci95", {})} for r in m["runs"]],
                      no_evidence_seeds=[r.get("seed") for r in m["runs"] if no_evidence(r)])
    return records


def summary_markdown(runs: list[Path]) -> str:
    """The comparison as a Markdown table with the caveats that belong to it."""
    table = compare_table(runs)
    if (table["leak"] == "-").all():
        table = table.drop(columns="leak")
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    notes = ["", "Brackets: bootstrap 95% CI resampling the test set's units (patients / linked pictures; one seed); "
             "± is the sample std (ddof=1) over seeds. Read ROC AUC and balanced accuracy: accuracy is only "
             "meaningful against the majority baseline (predicting the largest class for every image).",
             "Paper figures: Haghanifar et al. 2020, Table 6, on their data and a per-image split; not comparable "
             "with a patient- and duplicate-aware split of other data."]
    if any("LEAKY" in s for s in table["split"]):
        notes.append(f"LEAKY rows: {LEAKY}.")
    if any(v != "yes" for v in table["evidence"]):
        notes.append("NO EVIDENCE: in those seeds the model is at chance (the test ROC AUC's 95% CI does not lie "
                     "above 0.5, or it is undefined), predicted one class only, or the test set holds too few units "
                     "of a class: the model learned nothing that these figures can show; they say nothing about "
                     "the data.")
    return "\n".join(lines + notes) + "\n"
