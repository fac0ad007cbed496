"""``cxrcurate report RUN -o report.html``: one self-contained HTML page about a bench run.

The report renders facts the run record holds; it computes no figure, loads no model and imports no torch or
Captum. It answers first: a summary box (``summary.summary_box``: task, data per class and side, the headline
metric with its unit CI, the no-evidence banner, the audit's verdict and one sentence of what to believe). Then:
the run's configuration; the data (label x source per split, pediatric share, duplicates removed); the metrics
with bootstrap CIs, ROC curves and confusion matrices; the attribution overlays the audit recorded; the audit
(when it audited THIS run: a stale one from another run is shown as such); and the paper's figures beside ours,
greyed "not comparable" when the run has no evidence. Every picture is a base64 PNG inside the page, and the page
loads nothing else, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bench.metrics import evidence_words, no_evidence
from ..bench.record import RunRecord, seed_name, write_text
from ..errors import CxrcurateError
from .figures import TITLES, confusion_figure, overlay_grid, roc_figure
from .summary import read_audit, summary_box

log = logging.getLogger(__name__)
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2430;line-height:1.45;padding:0 1rem}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{border-bottom:2px solid #d8dee9;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d8dee9;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#d9f2dd}.warn{background:#fff1c7}.fail{background:#f9d3d0}.notrun{background:#eceff3;color:#555}
.inconclusive{background:#e4e6f7}
.banner{background:#f9d3d0;border:1px solid #c0392b;padding:.6rem 1rem;font-weight:600}
.summary{border:2px solid #1d2430;border-radius:6px;padding:.4rem 1.2rem 1rem;margin:1rem 0 1.5rem;background:#fbfcfe}
.summary table{font-size:.95rem}.summary th{width:11rem}.believe{font-size:1.08rem;font-weight:600;margin:.6rem 0 0}
.grey{color:#8a8f98}.grey table,.grey td,.grey th{color:#8a8f98;background:#f4f5f7}
.note{color:#555;font-size:.9rem}img{max-width:100%;height:auto;border:1px solid #e5e9f0;margin:.3rem 0}
.figs{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
"""


@dataclass
class ReportOptions:
    """What the report shows (from what the record holds: nothing is recomputed)."""

    run_index: int = 0
    methods: tuple[str, ...] = ("gradcam", "lime")
    attributions: bool = True
    manifest: str | None = None
    data_root: str | None = None


def esc(value: Any) -> str:
    """HTML-escaped text of any value (floats to 3 decimals, missing as a dash)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def table(rows: list[dict[str, Any]] | pd.DataFrame, classes: dict[str, str] | None = None) -> str:
    """An HTML table of records (numbers right-aligned); ``classes`` maps a column to a cell-class column."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if df.empty:
        return "<p class='note'>(nothing to show)</p>"
    classes = classes or {}
    shown = [c for c in df.columns if c not in classes.values()]
    head = "".join(f"<th>{esc(c)}</th>" for c in shown)
    body = []
    for rec in df.to_dict("records"):
        cells = []
        for c in shown:
            v = rec[c]
            css = str(rec[classes[c]]).replace(" ", "") if c in classes else ""
            css += " num" if isinstance(v, int | float | np.number) and not isinstance(v, bool) else ""
            cells.append(f"<td class='{css.strip()}'>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _ci(value: float, ci: list[float] | None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    if ci and all(np.isfinite(ci)):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def config_section(run: Any) -> str:
    """The run's options, input and environment."""
    o, spec, env = run.config["options"], run.config["spec"], run.config.get("environment", {})
    pre = run.config.get("preprocess", {})
    rows = [("run id", run.run_id), ("inputs digest", run.digest[:16]),
            ("code", ", ".join(f"{k} {v}" for k, v in run.record["inputs"]["code"].items() if v)),
            ("model", f"{spec['name']}: {spec['description']}"), ("classes", " / ".join(spec["classes"])),
            ("input", f"{run.config['input']['size']} px, channels {', '.join(pre.get('channels', []))}"
             + (f", lung crop ({pre['lungs']})" if pre.get("lungs") else "")
             + (", histogram matched" if pre.get("histogram_reference") else "")),
            ("initialisation", o.get("init") or spec["init"]), ("weights", o.get("weights")),
            ("split policy", o["split_policy"]), ("negatives (binary)", ", ".join(o.get("negatives", []))),
            ("seeds", f"{o['seed']}..{o['seed'] + o['runs'] - 1}"), ("max images", o.get("max_images")),
            ("epochs / batch / lr", f"{o['train']['epochs']} / {o['train']['batch_size']} / {o['train']['lr']}"),
            ("augmentation", o.get("augment")), ("manifest", run.config.get("manifest")),
            ("data root", run.config.get("data_root")), ("device", env.get("device")), ("torch", env.get("torch")),
            ("training time", f"{run.metrics.get('seconds', '-')} s")]
    return "<h2>Configuration</h2>" + table([{"option": k, "value": v} for k, v in rows])


def data_section(run: Any, frame: pd.DataFrame, k: int) -> str:
    """Label x source x split, pediatric share, duplicates removed, the run's notes."""
    counts = pd.crosstab([frame["source"], frame["label"]], frame["split"]).reindex(
        columns=[s for s in ("train", "val", "test") if s in set(frame["split"])], fill_value=0)
    counts["total"] = counts.sum(axis=1)
    ped = frame.groupby(["source", "label"])["pediatric"].agg(
        lambda s: float(s.dropna().astype(bool).mean()) if s.notna().any() else float("nan"))
    counts["pediatric share"] = ped
    counts["pediatric unknown"] = frame.groupby(["source", "label"])["pediatric"].agg(lambda s: int(s.isna().sum()))
    m = run.manifest
    labels = set(frame["label"])
    in_task = m[m["label"].isin(labels)]
    if in_task["dup_group"].isna().all():
        dups = "The manifest was not deduplicated (`cxrcurate dedup`): copies may sit on both sides of the split."
    else:
        removed = int((~in_task["keep"].fillna(True).astype(bool)).sum())
        groups = int(in_task.groupby("dup_group").size().gt(1).sum())
        dups = (f"{removed} duplicate row(s) of the task's labels were removed before splitting ({groups} picture(s) "
                "with more than one copy); one copy of each picture is kept.")
    notes = run.metrics["runs"][0].get("notes", []) if run.metrics.get("runs") else []
    notes = [n for n in notes if "not deduplicated" not in n]  # said above
    return (f"<h2>Data</h2><p>Rows of {seed_name(k)} by source, label and split (the task's rows after "
            "deduplication and any cap).</p>" + table(counts.reset_index())
            + f"<p>{esc(dups)}</p>" + "".join(f"<p class='note'>note: {esc(n)}</p>" for n in notes))


def metrics_section(run: Any, predictions: dict[int, pd.DataFrame]) -> str:
    """Figures with CIs per seed, per class, ROC curves and confusion matrices."""
    classes = tuple(run.config["spec"]["classes"])
    rows, chance = [], []
    named = (("ROC AUC", "roc_auc"), ("balanced accuracy", "balanced_accuracy"), ("accuracy", "accuracy"),
             ("COVID-19 F1", "covid_f1"))
    for k, r in enumerate(run.metrics["runs"]):
        rows.append({"run": seed_name(k), "seed": r.get("seed"), "test n": r["n"], "units": r.get("n_units", "-"),
                     **{name: _ci(r[key], r["ci95"].get(key)) for name, key in named if key in r},
                     "majority baseline": f"{r['majority_baseline']['accuracy']:.3f}"
                     if "majority_baseline" in r else "-",
                     "validation ROC AUC": _ci(r["val_roc_auc"], r.get("val_ci95_roc_auc"))
                     if "val_roc_auc" in r else "-"})
        if no_evidence(r):
            chance.append(f"{seed_name(k)}: {evidence_words(r.get('evidence'))}")
    agg = run.metrics["aggregate"]
    if len(rows) > 1:
        rows.append({"run": "mean ± std", "seed": "", "test n": "", "units": "", **{
            name: f"{agg[key]['mean']:.3f} ± {agg[key]['std']:.3f}" for name, key in named if key in agg}})
    banner = "".join(f"<p class='banner'>No evidence in {esc(c)} Read no figure below as a finding about the "
                     "data.</p>" for c in chance)
    first = run.metrics["runs"][0]
    per_class = [{"class": c, **v} for c, v in first["per_class"].items()]
    figs = [f"<img alt='ROC curves' src='{roc_figure(predictions, classes)}'>"] if predictions else []
    for k, r in enumerate(run.metrics["runs"][:3]):
        figs.append(f"<img alt='confusion matrix {seed_name(k)}' "
                    f"src='{confusion_figure(r['confusion_matrix'], classes, seed_name(k))}'>")
    return ("<h2>Metrics</h2>" + banner + "<p>Brackets: bootstrap 95% CI resampling the test units (patients / "
            "linked pictures). Read ROC AUC and balanced accuracy; accuracy means little against the majority "
            "baseline (always answering the largest class).</p>" + table(rows) + "<p>Per class, run-0:</p>"
            + table(per_class) + "<div class='figs'>" + "".join(figs) + "</div>")


def attribution_section(run: Any, options: ReportOptions) -> str:
    """The overlays the audit recorded (``overlays`` table): the most confident correct and wrong test cases of
    each class, each method's map over the input, the lung outline in green."""
    k = options.run_index
    head = "<h2>Where the model looks</h2>"
    try:
        recorded = run.overlays(k)
    except CxrcurateError as exc:
        return head + f"<p class='banner'>The recorded overlays are not this run's: {esc(exc)}</p>"
    if recorded is None:
        return head + ("<p class='note'>No overlays yet: they are computed by the audit (<code>cxrcurate audit "
                       f"{esc(run.path)}</code>); rebuild this report after it.</p>")
    methods = [m for m in options.methods if m in set(recorded["method"])]
    if not methods:
        return head + (f"<p class='note'>The audit recorded {', '.join(sorted(set(recorded['method'])))}, not "
                       f"{', '.join(options.methods)}.</p>")
    classes = run.config["spec"]["classes"]
    parts = [head + "<p class='note'>Attributions of the predicted class for the most confident correct and wrong "
             f"test cases of each class ({seed_name(k)}), as the audit recorded them; green: the lung outline.</p>"]
    for t, cls in enumerate(classes):
        mine = recorded[recorded["target"] == t]
        if mine.empty:
            parts.append(f"<h3>{esc(cls)}</h3><p class='note'>no test image of this class</p>")
            continue
        grid = []
        for _, g in mine.groupby("image_id", sort=False):
            first = g.iloc[0]
            shape = (int(first["height"]), int(first["width"]))
            lungs = first["lungs"]
            verdict = "correct" if first["correct"] else f"wrong: {classes[int(first['predicted'])]}"
            grid.append({"image": np.asarray(first["image"], dtype=float).reshape(shape),
                         "lungs": None if lungs is None else np.asarray(lungs, dtype=bool).reshape(shape),
                         "maps": {m: np.asarray(g.loc[g["method"] == m, "map"].iloc[0], dtype=float).reshape(shape)
                                  for m in methods if (g["method"] == m).any()},
                         "caption": f"{verdict} (p={first['confidence']:.2f})\n{first['source']}"})
        right = int(mine.drop_duplicates("image_id")["correct"].sum())
        counts = f"{right} correct and {len(grid) - right} wrong case(s) shown"
        parts.append(f"<h3>{esc(cls)}</h3><p class='note'>{esc(counts)}</p><img alt='attributions {esc(cls)}' "
                     f"src='{overlay_grid(grid, methods, TITLES)}'>")
    return "".join(parts)


def audit_section(run: Any, audit: dict[str, Any] | None, stale: str | None) -> str:
    """The audit table (this run's ``audit.json``) and the attribution scores per class and source."""
    if stale:
        return (f"<h2>Shortcut audit: STALE</h2><p class='banner'>The audit file in this folder is not this run's "
                f"({esc(stale)}). Its verdict is not shown. Run <code>cxrcurate audit {esc(run.path)}</code>.</p>")
    if audit is None:
        return ("<h2>Shortcut audit</h2><p class='note'>No audit yet: run <code>cxrcurate audit "
                f"{esc(run.path)}</code> and rebuild this report.</p>")
    rows = [{"check": c["name"], "status": c["status"].upper(), "_css": c["status"], "result": c["summary"],
             "thresholds": c["thresholds"]} for c in audit["checks"]]
    masks = audit["lung_masks"]
    kinds = ", ".join(f"{k}: {v}" for k, v in masks["by_kind"].items())
    attr = next((c for c in audit["checks"] if c["name"] == "attribution_in_lungs"), None)
    detail = ""
    if attr and attr["numbers"].get("methods"):
        recs = []
        for method, s in attr["numbers"]["methods"].items():
            for group, by in (("all", {"all": s["overall"]}), ("class", s["by_class"]), ("source", s["by_source"])):
                recs += [{"method": method, "by": group, "group": g, "images": v["n"], "no mask": v["no_mask"],
                          "no positive attribution": v["no_positive_attribution"],
                          "share in lungs": v["lung_share_mean"], "max in lungs": v["pointing_hit_rate"],
                          "chance": v["chance"]} for g, v in by.items()]
        detail = "<p>Attribution in the lungs, per class and per source:</p>" + table(recs)
        lifts = attr["numbers"].get("lifts") or {}
        if lifts:
            detail += ("<p>Lung share of the trained network against the initial one (same images; 95% CI by "
                       "unit):</p>" + table([{"method": m, "images": v["n"], "trained": v.get("trained_mean"),
                                              "initial": v.get("initial_mean"), "lift": v["lift"],
                                              "CI low": v["ci95"][0], "CI high": v["ci95"][1]}
                                             for m, v in lifts.items()]))
    return (f"<h2>Shortcut audit: {esc(audit['verdict'].upper())}</h2><p><b>{esc(audit.get('verdict_text'))}</b>"
            f"</p><p class='note'>{seed_name(audit['run_index'])} of run {esc(audit.get('run_id'))}, "
            f"{audit['seconds']} s; "
            f"lung masks of the {masks['test_images']} test images: {esc(kinds)}.</p>"
            + table(rows, {"status": "_css"}) + detail)


def paper_section(run: Any, comparable: bool) -> str:
    """Our headline figures beside the paper's Table 6, with why they differ; greyed "not comparable" when the run
    has no evidence."""
    paper, agg = run.metrics.get("paper") or {}, run.metrics["aggregate"]
    rows = [{"figure": name, "this run (mean over seeds)": agg[key]["mean"], "paper": paper.get(key)}
            for name, key in (("accuracy", "accuracy"), ("COVID-19 F1", "covid_f1"))]
    leaky = run.metrics.get("leaky")
    text = ("<p class='note'>Paper: Haghanifar et al. 2020 (COVID-CXNet), Table 6, on their own data with a "
            "per-image split (images of one patient on both sides). " + ("This run used the same LEAKY protocol."
            if leaky else "This run's split keeps patients and duplicates on one side, on other data, so the figures "
            "are not comparable one to one.") + ("" if paper else " The paper reports no figures for this rung.")
            + "</p>")
    if not comparable:
        return ("<h2>Against the paper: not comparable</h2><div class='grey'><p>Not comparable: this run shows no "
                "evidence that the model learned the task, so its figures cannot be set against any other.</p>"
                + table(rows) + text + "</div>")
    return "<h2>Against the paper</h2>" + table(rows) + text


def write_report(run_path: str | Path, out: str | Path | None = None, options: ReportOptions | None = None) -> Path:
    """Write the HTML report of a run (default ``RUN/report.html``); return its path.

    Raises:
        CxrcurateError: not a run folder, or its manifest cannot be found.
    """
    options = options or ReportOptions()
    started = time.time()
    run = RunRecord.open(run_path, options.manifest, options.data_root)
    k = options.run_index
    out = Path(out) if out else run.report_path()
    predictions = {s: run.predictions(s) for s in run.seeds}
    audit, stale = read_audit(run)
    model = run.config["spec"]["name"]
    title = f"{model} on {Path(run.config.get('manifest', '')).name} (run {run.run_id})"
    banner = ("<p class='banner'>LEAKY per-image split: images of one patient sit on both sides; these figures "
              "overstate what the model does on new patients.</p>" if run.metrics.get("leaky") else "")
    body = [f"<h1>{esc(title)}</h1><p class='note'>cxrcurate report, {time.strftime('%Y-%m-%d %H:%M')}; "
            f"run folder {esc(run.path.resolve())}</p>", summary_box(run, k, audit, stale), banner,
            config_section(run), data_section(run, run.frame(k), k), metrics_section(run, predictions)]
    if options.attributions:
        body.append(attribution_section(run, options))
    body += [audit_section(run, audit, stale), paper_section(run, not any(no_evidence(r)
                                                                         for r in run.metrics["runs"]))]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    write_text(out, page)
    log.info("wrote %s (%.0f KB) in %.1f s", out, out.stat().st_size / 1024, time.time() - started)
    return out
