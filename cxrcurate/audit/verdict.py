"""The audit's verdict in words, and the evidence gate in front of it.

A check that reads the model (``MODEL_CHECKS``) can only find a shortcut in a model that learned something. When
the bench recorded no evidence for the audited seed (``bench.metrics.evidence``: at chance, an undefined or
degenerate CI, one predicted class, too few test units per class), every model check is ``inconclusive`` and the
verdict is ``inconclusive`` with the words "the model learned nothing; no shortcut verdict" (or "the evidence is
insufficient; ..."), never PASS or FAIL. The data checks (demographics, leakage) do not read the model and keep
their status; their findings are named beside the verdict.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..bench.record import AUDIT, seed_name
from .base import Check, worst

MODEL_CHECKS = ("lungs_masked", "lungs_only", "attribution_in_lungs", "source_probe", "leave_one_source_out")


def gate(check: Check, evidence: dict[str, Any]) -> Check:
    """``check`` made ``inconclusive`` when it reads the model and the model shows no evidence of learning."""
    if evidence.get("kind", "ok") == "ok" or check.name not in MODEL_CHECKS or \
            check.status in ("inconclusive", "not run"):  # a check switched off stays "not run"
        return check
    would = check.status
    numbers = {**check.numbers, "status_with_evidence": would}
    note = f"; would be {would}, but the model shows no evidence of learning"
    return replace(check, status="inconclusive", summary=check.summary + note, numbers=numbers)


def verdict(checks: list[Check], evidence: dict[str, Any]) -> tuple[str, str]:
    """``(status, sentence)`` of the whole audit."""
    data = [c for c in checks if c.name not in MODEL_CHECKS and c.status in ("warn", "fail")]
    data_text = ("; data checks: " + ", ".join(f"{c.name} {c.status.upper()}" for c in data)) if data else ""
    kind = evidence.get("kind", "ok")
    if kind != "ok":
        head = ("the model learned nothing; no shortcut verdict" if kind == "at_chance" else
                "the evidence is insufficient; no shortcut verdict")
        return "inconclusive", head + data_text  # the reasons: the audit's test_performance.evidence
    status = worst([c.status for c in checks])
    named = {s: [c.name for c in checks if c.status == s] for s in ("fail", "warn", "inconclusive")}
    if status == "fail":
        return status, "a shortcut or a flaw: " + ", ".join(named["fail"]) + " failed"
    if status == "warn":
        return status, "signs of a shortcut, not proof: " + ", ".join(named["warn"])
    if status == "inconclusive":
        return status, "nothing found, but these checks could not decide: " + ", ".join(named["inconclusive"])
    return status, "no shortcut found by these checks" if status == "pass" else "no check ran"


def audit_table(result: dict[str, Any]) -> str:
    """The audit as a plain-text table: one line per check, then the evidence and the verdict."""
    width = max(len(c["name"]) for c in result["checks"])
    lines = [f"audit of {result['run']} (run {result['run_id']}, model {result['model']}, "
             f"{seed_name(result['run_index'])})", ""]
    for c in result["checks"]:
        lines.append(f"  {c['name']:<{width}}  {c['status'].upper():<12}  {c['summary']}")
    masks = result["lung_masks"]
    kinds = ", ".join(f"{k} {v}" for k, v in masks["by_kind"].items())
    perf = result.get("test_performance") or {}
    lines += ["", f"lung masks of the {masks['test_images']} test images: {kinds}"]
    if perf:
        lo, hi = (v if v is not None else float("nan") for v in perf["auc_ci95"])
        value = perf["auc"] if perf["auc"] is not None else float("nan")
        lines.append(f"test AUC {value:.3f} [{lo:.3f}, {hi:.3f}] (the bench's, bootstrap by unit, {perf['units']} "
                     f"units; per class: {perf['evidence']['test_units_per_class']})")
    if result.get("initial_network"):
        lines.append(f"baselines from the initial network: {result['initial_network']}")
    reasons = (perf.get("evidence") or {}).get("reasons") or []
    if reasons:
        lines.append("NO EVIDENCE: " + "; ".join(reasons))
    lines.append(f"verdict: {result['verdict'].upper()}: {result['verdict_text']}")
    lines.append(f"(thresholds: {AUDIT}, each check's 'thresholds'; INCONCLUSIVE: the evidence cannot decide)")
    return "\n".join(lines)
