"""The report's first answer: a summary box at the top of the page, from facts the run record holds.

Task; data (images and units per class on each side); the headline metric with its unit CI; a banner when the run
carries no evidence (at chance, an undefined or degenerate CI, one predicted class, too few test units); the audit's
verdict (or that it is missing or stale); the leak measure when installed; and one sentence of what to believe.
"""

from __future__ import annotations

import html
from typing import Any

from ..bench.compare import fmt, leak_summary
from ..bench.metrics import evidence_words
from ..bench.record import seed_name
from ..errors import CxrcurateError


def read_audit(run: Any) -> tuple[dict[str, Any] | None, str | None]:
    """``(audit, None)`` when the folder holds this run's audit; ``(None, why)`` when it holds another run's."""
    try:
        return run.audit(), None
    except CxrcurateError as exc:
        return None, str(exc)


def _data_rows(data: dict[str, dict[str, dict[str, int]]]) -> str:
    classes = list(next(iter(data.values())))
    head = "<tr><th>side</th>" + "".join(f"<th>{html.escape(c)}: images / units</th>" for c in classes) + "</tr>"
    body = "".join("<tr><td>" + side + "</td>" + "".join(
        f"<td class='num'>{v[c]['images']} / {v[c]['units']}</td>" for c in classes) + "</tr>"
        for side, v in data.items())
    return f"<table>{head}{body}</table>"


def believe(seed: dict[str, Any], audit: dict[str, Any] | None, stale: str | None, leaky: bool) -> str:
    """One sentence: what a reader may take from this run."""
    ev = seed.get("evidence") or {}
    auc = fmt(seed.get("roc_auc"), seed.get("ci95", {}).get("roc_auc"))
    if ev.get("kind") == "at_chance":
        return ("Believe nothing about this model: it learned nothing on this task, so neither its figures nor any "
                "audit finding are evidence about the data.")
    if ev.get("kind") == "insufficient":
        return ("Too little test data to tell: whatever the figures say, they are a guess, and the audit gives no "
                "verdict.")
    lead = (f"On a LEAKY per-image split the model scores ROC AUC {auc}: an overstatement of what it does on new "
            "patients" if leaky else "The model separates the classes on test units it never trained on (patients, or "
            f"linked pictures where no patient is known; ROC AUC {auc})")
    if stale or audit is None:
        return lead + ", but no audit of this run says what it looks at: run `cxrcurate audit` before trusting it."
    verdict = audit["verdict"]
    if verdict == "fail":
        return lead + ", but the audit found a shortcut or flaw: do not read the figure as detecting COVID-19."
    if verdict == "warn":
        return lead + "; the audit shows signs of a shortcut: check them before believing the figure."
    if verdict == "inconclusive":
        return lead + "; the audit could not decide every check: the figure is not yet shown to rest on the lungs."
    return lead + ", and the audit found no shortcut by its checks."


def summary_box(run: Any, k: int, audit: dict[str, Any] | None, stale: str | None) -> str:
    """The summary box (HTML) for seed K of a run."""
    seed = run.metrics["runs"][k] if k < len(run.metrics["runs"]) else run.metrics["runs"][0]
    spec, options = run.config["spec"], run.config["options"]
    classes = spec["classes"]
    task = " vs ".join(classes) + (f" (COVID-19 vs {', '.join(options.get('negatives', []))})"
                                   if len(classes) == 2 else "")
    ev = seed.get("evidence") or {}
    banner = evidence_words(ev)
    if stale:
        audit_text = "STALE: the audit in this folder belongs to another run; not shown"
    elif audit is None:
        audit_text = "not audited yet (cxrcurate audit RUN)"
    else:
        audit_text = f"{audit['verdict'].upper()}: {audit.get('verdict_text', '')}"
    leak = leak_summary(run, k) or "not measured (the run's manifest or images are not at hand; see the log)"
    rows = [("task", f"{spec['name']}: {task}"), ("split", options.get("split_policy", "")),
            ("headline", f"ROC AUC {fmt(seed.get('roc_auc'), seed.get('ci95', {}).get('roc_auc'))} (95% CI, "
                         f"bootstrap over {seed.get('n_units', '?')} test units; balanced accuracy "
                         f"{fmt(seed.get('balanced_accuracy'), seed.get('ci95', {}).get('balanced_accuracy'))})"),
            ("audit verdict", audit_text), ("leak measure", leak)]
    table = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(str(b))}</td></tr>" for a, b in rows)
    data = _data_rows(seed["data"]) if seed.get("data") else ""
    warn = f"<p class='banner'>NO EVIDENCE. {html.escape(banner)}</p>" if banner else ""
    sentence = believe(seed, audit, stale, bool(run.metrics.get("leaky")))
    return (f"<div class='summary'><h2>Summary</h2>{warn}<table>{table}</table>"
            f"<p class='note'>Data of {seed_name(k)}: images / units per class and side (a unit is a patient or a "
            f"set of linked pictures; it never crosses sides).</p>{data}"
            f"<p class='believe'>What to believe: {html.escape(sentence)}</p></div>")
