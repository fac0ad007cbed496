"""``cxrcurate audit RUN``: does a benchmarked model read the lungs, or the collection the image came from?

Each test ends ``pass``, ``warn``, ``fail``, ``inconclusive`` or ``not run`` and keeps the numbers behind it
(``THRESHOLDS`` says where the lines are drawn, and ``audit.json`` repeats it); the verdict is the most severe
(``base.SEVERITY``: pass < inconclusive < warn < fail). The audit looks at one seed (``run-K``, default 0) of a
finished run; only leave-one-source-out trains anything. Every CI is a percentile bootstrap over units (patient,
dup group, identical picture; an image with none of those is its own unit): the units the bench recorded in its
split, read, never recomputed (see ``base.unit_bootstrap``).

- ``lungs_masked``: the test set scored with the lungs blacked out (lung mask, or its bounding box with
  ``region="box"``). A model that reads the lungs falls to chance; one that still separates the classes, or ranks
  them the wrong way round (AUC far below 0.5), reads something outside them (markers, text, borders, body
  habitus, the collection's look). Two-sided.
- ``lungs_only``: everything outside the lungs blacked out; the AUC drop says how much the model needs the rest.
- ``attribution_in_lungs``: share of positive Grad-CAM / LIME / IG mass inside the lungs (``attribution``),
  compared image by image with the same maps of the *initial* network (``baseline``): attribution maps favour
  bright structures outside the lungs whatever a network learnt, so only a fall below the untrained network's
  share says that training moved the model's attention out of the lungs.
- A run with no evidence (the bench's record: at chance, an undefined or degenerate CI, one predicted class, too
  few test units per class) has learnt nothing to look for: every check that reads the model is then
  ``inconclusive`` and the verdict says "the model learned nothing; no shortcut verdict" (``verdict``).
- ``source_probe``, ``leave_one_source_out``, ``demographics``, ``leakage``: see ``audit_checks``.

Blacking out happens in the model's input space, after rendering (the value a black pixel has after ImageNet
normalisation), with the lung mask mapped by the same geometry; so every channel (original, CLAHE, BEASF) is
black there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bench.runio import RunFolder, batches
from ..bench.train import device_for
from . import checks as more
from .attribution import AttributionOptions, attribute_dataset, lung_scores, summarise
from .base import AuditOptions, Check, to_json, unit_bootstrap
from .baseline import initial_model, paired_lift
from .lungmasks import LungMasks, input_masks
from .overlays import overlay_rows, report_cases
from .runinputs import full_manifest, pairs_of, reload_difference, sample_rows
from .verdict import audit_table, gate, verdict

__all__ = ["audit_table", "run_audit"]

log = logging.getLogger(__name__)
MASKED_FAR = 0.15
DROP_WARN, DROP_FAIL = 0.05, 0.15
LIFT_WARN, LIFT_FAIL = 0.05, 0.10
GRADCAM_MIN_SIDE = 4
CHANCE = ("inconclusive when the model is at chance: its test AUC's bootstrap 95% CI (by unit) includes 0.5, so "
          "where it looks says nothing about what it learnt")
THRESHOLDS = {
    "lungs_masked": f"AUC with the lungs blacked out (chance 0.5), two-sided (an AUC far below 0.5 is class signal "
                    f"outside the lungs too): fail when |AUC - 0.5| >= {MASKED_FAR} and its bootstrap 95% CI (by "
                    f"unit) excludes 0.5; warn when the CI excludes 0.5 (off chance, closer than {MASKED_FAR}) or "
                    f"|AUC - 0.5| >= {MASKED_FAR} but the CI reaches 0.5 (too few images to tell); pass otherwise",
    "lungs_only": f"drop = AUC(full) - AUC(outside blacked out), with a paired bootstrap 95% CI by unit; judged "
                  f"by the CI's lower end (a drop that noise explains is no finding): pass <= {DROP_WARN}, warn <= "
                  f"{DROP_FAIL}, fail above; {CHANCE}",
    "attribution_in_lungs": "per method, over test images with a lung mask: lift = mean share of positive "
                            "attribution inside the lungs, trained network minus the initial one (same images, same "
                            "architecture, same starting weights), with a bootstrap 95% CI by unit; fail when the "
                            f"lift <= -{LIFT_FAIL} and the CI lies below 0, warn when the lift <= -{LIFT_WARN} and "
                            "the CI lies below 0, pass otherwise (inconclusive without an initial network). The "
                            "check's status: the most severe status that at least half of the voting methods reach "
                            "(Grad-CAM does not vote when its map is smaller "
                            f"than {GRADCAM_MIN_SIDE}x{GRADCAM_MIN_SIDE}: it cannot localise); {CHANCE}",
}


def auc(y: np.ndarray, scores: np.ndarray, classes: tuple[str, ...]) -> float:
    """COVID-19-vs-rest AUC for two classes, macro one-vs-rest AUC for more (as ``metrics.score``), NaN if undefined.

    ``scores`` are per-class log-probabilities: ranks as probabilities do, but a saturated softmax cannot tie them.
    """
    from sklearn.metrics import roc_auc_score

    cols = [classes.index("covid19")] if len(classes) == 2 else range(len(classes))
    values = [roc_auc_score(y == c, scores[:, c]) for c in cols if 0 < (y == c).sum() < len(y)]
    return float(np.mean(values)) if len(values) == len(cols) else float("nan")


def auc_ci(y: np.ndarray, scores: np.ndarray, classes: tuple[str, ...], n_boot: int, seed: int,
           units: np.ndarray | None = None) -> tuple[float, list[float]]:
    """``auc`` and its percentile bootstrap 95% CI, resampling whole ``units`` (default: each image alone)."""
    units = np.arange(len(y)).astype(str) if units is None else units
    ci, _ = unit_bootstrap(lambda idx: auc(y[idx], scores[idx], classes), units, n_boot, seed)
    return auc(y, scores, classes), ci


def includes_chance(ci: list[float]) -> bool:
    """True when a 95% CI reaches 0.5, or is undefined."""
    return not (np.isfinite(ci[0]) and np.isfinite(ci[1]) and (ci[0] > 0.5 or ci[1] < 0.5))


def masked_status(value: float, ci: list[float]) -> str:
    """Status of the lungs-masked AUC (see ``THRESHOLDS``): two-sided around 0.5."""
    if not np.isfinite(value):
        return "not run"
    off_chance, far = not includes_chance(ci), abs(value - 0.5) >= MASKED_FAR
    if far and off_chance:
        return "fail"
    return "warn" if off_chance or far else "pass"


def drop_status(drop: float) -> str:
    """Status of the lungs-only AUC drop (see ``THRESHOLDS``)."""
    if not np.isfinite(drop):
        return "not run"
    return "pass" if drop <= DROP_WARN else "warn" if drop <= DROP_FAIL else "fail"


def attribution_status(lift: float, ci: list[float]) -> str:
    """Status of one method's lung-share lift over the initial network (see ``THRESHOLDS``)."""
    if not np.isfinite(lift):
        return "not run"
    below = bool(np.isfinite(ci[1]) and ci[1] < 0)
    return "fail" if below and lift <= -LIFT_FAIL else "warn" if below and lift <= -LIFT_WARN else "pass"


def at_chance_status(status: str, chance: bool) -> str:
    """``inconclusive`` instead of a finding when the model is at chance (``not run`` stays)."""
    return "inconclusive" if chance and status != "not run" else status


def test_performance(run: Any, k: int) -> dict[str, Any]:
    """The bench's own test figures of seed K (read, not recomputed): AUC, its CI by unit, units, evidence."""
    m = run.seed_metrics(k)
    ev = m.get("evidence") or {"kind": "insufficient", "reasons": ["the run recorded no evidence"],
                               "test_units_per_class": {}}
    return {"auc": m.get("roc_auc"), "auc_ci95": m.get("ci95", {}).get("roc_auc"), "n": m.get("n"),
            "units": m.get("n_units"), "at_chance": ev["kind"] != "ok", "evidence": ev,
            "bootstrap": "by unit: the bench's units (patient, dup group, linked picture)"}


def _box(mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows):
        out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    return out


def region_predictions(model: Any, ds: Any, masks: dict[str, np.ndarray | None], black: Any, device: Any,
                       batch_size: int, region: str = "mask") -> pd.DataFrame:
    """Probabilities of each image with a mask: as is, lungs blacked out, and everything else blacked out.

    Returns one row per image with ``image_id``, ``target`` and ``full`` / ``masked`` / ``inside`` arrays of
    per-class log-probabilities.
    """
    import torch

    def logp(x: Any) -> np.ndarray:
        with torch.no_grad():
            return torch.log_softmax(model(x).double(), dim=1).cpu().numpy()

    rows = []
    for x, y, ids in batches(ds, batch_size):
        have = [i for i, image_id in enumerate(ids) if masks.get(image_id) is not None]
        if not have:
            continue
        x = x[have].to(device)
        lungs = np.stack([_box(masks[ids[i]]) if region == "box" else masks[ids[i]] for i in have])
        keep = torch.from_numpy(lungs)[:, None].to(device)
        full, masked, inside = logp(x), logp(torch.where(keep, black, x)), logp(torch.where(keep, x, black))
        for j, i in enumerate(have):
            rows.append({"image_id": ids[i], "target": int(y[i]), "full": full[j], "masked": masked[j],
                         "inside": inside[j]})
    return pd.DataFrame(rows)


def region_checks(preds: pd.DataFrame, classes: tuple[str, ...], no_mask: int, n_boot: int, seed: int,
                  region: str, units: dict[str, str] | None = None, chance: bool = False) -> list[Check]:
    """The ``lungs_masked`` and ``lungs_only`` checks from ``region_predictions``.

    ``units`` maps image ids to bootstrap units (default: each image alone); ``chance``: the model is at chance on
    the test set (``lungs_only`` is then inconclusive).
    """
    what = "lung bounding box" if region == "box" else "lung mask"
    if len(preds) == 0 or preds["target"].nunique() < 2:
        why = f"needs test images of at least two classes with a lung mask ({len(preds)} with one, {no_mask} without)"
        return [Check(n, "not run", why, {"no_mask": no_mask}, THRESHOLDS[n]) for n in ("lungs_masked", "lungs_only")]
    y = preds["target"].to_numpy()
    scores = {k: np.stack(preds[k].to_list()) for k in ("full", "masked", "inside")}
    unit = preds["image_id"].map(units).fillna(preds["image_id"]).to_numpy(str) if units else None
    (full, full_ci), (masked, masked_ci), (inside, inside_ci) = (auc_ci(y, scores[k], classes, n_boot, seed, unit)
                                                                 for k in ("full", "masked", "inside"))
    accuracy = {k: float((v.argmax(axis=1) == y).mean()) for k, v in scores.items()}
    base = {"n": int(len(preds)), "no_mask": no_mask, "region": what, "auc_full": full, "auc_full_ci95": full_ci}
    kept = (masked - 0.5) / (full - 0.5) if full > 0.5 else float("nan")
    base["bootstrap"] = "by unit (patient, dup group, identical image)" if units else "by image"
    constant = bool(np.ptp(scores["masked"], axis=0).max() < 1e-9)
    masked_check = Check("lungs_masked", masked_status(masked, masked_ci),
                         f"AUC {masked:.3f} [{masked_ci[0]:.3f}, {masked_ci[1]:.3f}] with the lungs blacked out "
                         f"(full image {full:.3f}; n={len(preds)})"
                         + ("; the model's output is the same for every image then" if constant else ""),
                         {**base, "auc_masked": masked, "auc_masked_ci95": masked_ci, "above_chance_kept": kept,
                          "masked_output_constant": constant, "accuracy_masked": accuracy["masked"]},
                         THRESHOLDS["lungs_masked"])
    drop = full - inside
    units_or_ids = unit if unit is not None else np.arange(len(y)).astype(str)
    drop_ci, _ = unit_bootstrap(lambda idx: auc(y[idx], scores["full"][idx], classes)
                                - auc(y[idx], scores["inside"][idx], classes), units_or_ids, n_boot, seed)
    found = drop_status(drop_ci[0] if np.isfinite(drop_ci[0]) else drop)
    note = f" (would be {found}; the model is at chance)" if chance and found != "not run" else ""
    only_check = Check("lungs_only", at_chance_status(found, chance),
                       f"AUC {inside:.3f} [{inside_ci[0]:.3f}, {inside_ci[1]:.3f}] on the lungs alone, a drop of "
                       f"{drop:+.3f} [{drop_ci[0]:+.3f}, {drop_ci[1]:+.3f}] from {full:.3f}" + note,
                       {**base, "auc_lungs_only": inside, "auc_lungs_only_ci95": inside_ci, "drop": drop,
                        "drop_ci95": drop_ci, "accuracy_lungs_only": accuracy["inside"],
                        "status_if_not_at_chance": found},
                       THRESHOLDS["lungs_only"])
    return [masked_check, only_check]


def vote(statuses: list[str]) -> str:
    """The most severe status that at least half of ``statuses`` reach (``not run`` entries do not vote)."""
    ran = sorted((s for s in statuses if s != "not run"), key=("fail", "warn", "inconclusive", "pass").index)
    return ran[(len(ran) - 1) // 2] if ran else "not run"


def attribution_lifts(scores: pd.DataFrame, initial: pd.DataFrame, units: dict[str, str], n_boot: int, seed: int,
                      ) -> dict[str, dict[str, Any]]:
    """Per method: ``baseline.paired_lift`` of the lung share (trained vs initial network, image by image)."""
    both = scores.merge(initial[["image_id", "method", "lung_share", "pointing_hit"]], on=["image_id", "method"],
                        suffixes=("", "_initial"))
    out = {}
    for method, g in both.groupby("method", sort=False):
        unit = g["image_id"].map(units).fillna(g["image_id"]).to_numpy(str)
        lift = paired_lift(g["lung_share"].to_numpy(), g["lung_share_initial"].to_numpy(), unit, n_boot, seed)
        lift["pointing_hit_rate"] = float(g["pointing_hit"].mean())
        lift["pointing_hit_rate_initial"] = float(g["pointing_hit_initial"].mean())
        out[str(method)] = lift
    return out


def attribution_check(summary: dict[str, Any], info: dict[str, Any], n_no_mask: int,
                      lifts: dict[str, dict[str, Any]] | None = None, baseline: str = "", chance: bool = False,
                      ) -> Check:
    """The ``attribution_in_lungs`` check from ``attribution.summarise``, ``attribute_dataset``'s info and the
    per-method lifts over the initial network (``attribution_lifts``; None: no initial network, ``baseline`` says
    why). ``chance``: the model is at chance on the test set, so a finding is only ``inconclusive``."""
    name, limits = "attribution_in_lungs", THRESHOLDS["attribution_in_lungs"]
    if not summary:
        return Check(name, "not run", "no test image was attributed", {}, limits)
    numbers = {"methods": summary, **info, "no_mask": n_no_mask, "initial_network": baseline, "at_chance": chance}
    if lifts is None:
        return Check(name, "inconclusive", f"no baseline to compare with: {baseline}", numbers, limits)
    statuses = {m: attribution_status(v["lift"], v["ci95"]) for m, v in lifts.items()}
    coarse = bool(info.get("gradcam_map")) and min(info["gradcam_map"]) < GRADCAM_MIN_SIDE
    found = vote([s for m, s in statuses.items() if not (m == "gradcam" and coarse)])
    parts = []
    for m, v in lifts.items():
        if np.isfinite(v["lift"]):
            lo, hi = v["ci95"]
            parts.append(f"{m} {v['trained_mean']:.2f} in lungs vs {v['initial_mean']:.2f} untrained, lift "
                         f"{v['lift']:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        else:
            parts.append(f"{m}: no image with positive attribution in both networks")
    note = f"; {n_no_mask} image(s) without a lung mask not scored" if n_no_mask else ""
    if coarse:
        note += f"; Grad-CAM map {info['gradcam_map'][0]}x{info['gradcam_map'][1]} too coarse to vote"
    if chance and found != "not run":
        note += f"; would be {found}, but the model is at chance"
    return Check(name, at_chance_status(found, chance), "; ".join(parts) + note,
                 {**numbers, "lifts": lifts, "status_by_method": statuses, "gradcam_votes": not coarse,
                  "status_if_not_at_chance": found}, limits)


def run_audit(run_path: str | Path, options: AuditOptions | None = None, progress: bool = True) -> dict[str, Any]:
    """Audit one seed of a bench run; record ``audit.json``, the seed's attributions and the report's overlays.

    Raises:
        CxrcurateError: not a run folder, its weights or manifest cannot be found, or bad options.
    """
    from tqdm.auto import tqdm

    options = options or AuditOptions()
    started = time.time()
    run = RunFolder.open(run_path, options.manifest, options.data_root)
    k = options.run_index
    steps = ["lung masks", "lungs masked / lungs only", "attributions", "source probe", "leave one source out",
             "demographics and leakage"]
    bar = tqdm(total=len(steps), desc="audit", disable=not progress, unit="check")

    def step(i: int) -> None:
        bar.set_description(f"audit [{i + 1}/{len(steps)}] {steps[i]}")
        if i:
            bar.update(1)

    device = device_for(0)
    frame = run.frame(k)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    units = dict(zip(frame["image_id"], frame["unit"].astype(str), strict=True))  # the bench's units, as recorded
    performance = test_performance(run, k)
    ev = performance["evidence"]
    chance = ev["kind"] != "ok"
    step(0)
    provider = LungMasks(run.root, options.lung_source, options.lung_weights, options.fallback_box, str(device))
    masks, kinds = input_masks(provider, test, run.render_config())
    no_mask = sum(m is None for m in masks.values())
    model = run.load_model(k, device)
    initial, baseline = initial_model(run, k, device)
    black = run.black(device)
    step(1)
    preds = region_predictions(model, run.dataset(test), masks, black, device, options.batch_size, options.region)
    checks = region_checks(preds, run.classes, no_mask, options.n_boot, options.seed, options.region, units, chance)
    reload_diff = reload_difference(run, k, preds)
    step(2)
    cases = report_cases(run.predictions(k), run.classes)
    chosen = sample_rows(test, options.attribution_images, options.seed)
    chosen = pd.concat([chosen, test[test["image_id"].isin(cases["image_id"]) & ~test["image_id"].isin(
        chosen["image_id"])]], ignore_index=True)
    attr_opts = AttributionOptions(**{**asdict(options.attribution), "batch_size": options.batch_size})
    chosen_ds = run.dataset(chosen)
    pred, maps, info = attribute_dataset(model, chosen_ds, black, attr_opts, device)
    scores = lung_scores(maps, masks, kinds).merge(pred, on="image_id").merge(
        chosen[["image_id", "source", "label"]], on="image_id")
    lifts = None
    if initial is not None:
        _, maps0, _ = attribute_dataset(initial, chosen_ds, black, attr_opts, device)
        scores0 = lung_scores(maps0, masks, kinds)
        lifts = attribution_lifts(scores, scores0, units, options.n_boot, options.seed)
        scores = scores.merge(scores0[["image_id", "method", "lung_share", "pointing_hit"]]
                              .rename(columns={"lung_share": "lung_share_initial",
                                               "pointing_hit": "pointing_hit_initial"}), on=["image_id", "method"])
    run.write_attributions(k, scores)
    position = {image_id: i for i, image_id in enumerate(chosen["image_id"])}
    inp = run.config["input"]
    images = {i: np.clip(chosen_ds[position[i]][0][0].numpy() * inp["std"][0] + inp["mean"][0], 0, 1)
              for i in cases["image_id"]}
    run.write_overlays(k, pd.DataFrame(overlay_rows(cases, images, maps, masks, attr_opts.methods)))
    n_none = int(scores.loc[scores["method"] == attr_opts.methods[0], "mask_kind"].eq("none").sum())
    checks.append(attribution_check(summarise(scores, run.classes), info, n_none, lifts, baseline, chance))
    step(3)
    if not options.probe:
        checks.append(Check("source_probe", "not run", "switched off (--no-probe)", {},
                            more.THRESHOLDS["source_probe"]))
    elif chance:
        checks.append(Check("source_probe", "inconclusive", "not computed: the audited model shows no evidence of "
                            "learning, so what its features carry says nothing about what it uses", {},
                            more.THRESHOLDS["source_probe"]))
    else:
        checks.append(more.source_probe(run, model, frame, options, device, initial, baseline))
    step(4)
    if chance and options.loso:
        checks.append(Check("leave_one_source_out", "inconclusive", "not retrained: the audited model shows no "
                            "evidence of learning, so no gap to a held-out source can be read", {},
                            more.THRESHOLDS["leave_one_source_out"]))
    else:
        checks.append(more.leave_one_source_out(run, frame, options, progress))
    step(5)
    checks.append(more.demographics(frame, run.classes))
    checks.append(more.leakage(frame, run.metrics.get("split_policy"), full_manifest(run), pairs_of(run)))
    bar.update(1)
    bar.close()
    checks = [gate(c, ev) for c in checks]
    status, words = verdict(checks, ev)
    result = {"run": str(run.path), "audited_run_id": run.run_id, "model": run.spec.name, "run_index": k,
              "classes": list(run.classes), "verdict": status, "verdict_text": words,
              "checks": [asdict(c) for c in checks],
              "lung_masks": {"test_images": len(test), "by_kind": pd.Series(kinds).value_counts().to_dict(),
                             "no_mask": no_mask, "source": options.lung_source, "fallback_box": options.fallback_box},
              "test_performance": performance, "initial_network": baseline, "reload_max_abs_diff": reload_diff,
              "overlays": {"cases": int(len(cases)), "methods": list(attr_opts.methods)},
              "options": asdict(options), "device": str(device), "seconds": round(time.time() - started, 1)}
    if reload_diff > 1e-3:
        log.warning("rebuilt model differs from the run's predictions by up to %.4f", reload_diff)
    run.write_audit(to_json(result))
    result["run_id"] = run.run_id
    return result


