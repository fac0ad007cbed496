"""``cxrcurate audit RUN``: does a benchmarked model read the lungs, or the collection the image came from?

Each test ends ``pass``, ``warn``, ``fail`` or ``not run`` and keeps the numbers behind it (``THRESHOLDS`` says
where the lines are drawn, and ``audit.json`` repeats it). The audit looks at one seed (``run-K``, default 0) of
a finished run; only leave-one-source-out trains anything.

- ``lungs_masked``: the test set scored with the lungs blacked out (lung mask, or its bounding box with
  ``region="box"``). A model that reads the lungs falls to chance; one that still separates the classes reads
  something outside them (markers, text, borders, body habitus, the collection's look).
- ``lungs_only``: everything outside the lungs blacked out; the AUC drop says how much the model needs the rest.
- ``attribution_in_lungs``: share of positive Grad-CAM / LIME / IG mass inside the lungs and the pointing-game hit
  rate (``attribution``), per class and per source; images without a lung mask are counted, not guessed.
- ``source_probe``, ``leave_one_source_out``, ``demographics``, ``leakage``: see ``audit_checks``.

Blacking out happens in the model's input space, after rendering (the value a black pixel has after ImageNet
normalisation), with the lung mask mapped by the same geometry; so every channel (original, CLAHE, BEASF) is
black there.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .attribution import AttributionOptions
from .base import AuditOptions, Check, to_json, worst

log = logging.getLogger(__name__)
MASKED_FAIL = 0.70
DROP_WARN, DROP_FAIL = 0.05, 0.15
SHARE_WARN, HIT_WARN = 0.5, 0.5
GRADCAM_MIN_SIDE = 4
THRESHOLDS = {
    "lungs_masked": f"AUC with the lungs blacked out (chance 0.5): fail when >= {MASKED_FAIL} and the lower end of "
                    f"its bootstrap 95% CI is above 0.5; warn when the CI's lower end is above 0.5 (above chance, "
                    f"below {MASKED_FAIL}) or the AUC is >= {MASKED_FAIL} but the CI reaches 0.5 (too few images to "
                    "tell); pass otherwise (indistinguishable from chance)",
    "lungs_only": f"drop = AUC(full) - AUC(outside blacked out): pass <= {DROP_WARN}, warn <= {DROP_FAIL}, "
                  f"fail above",
    "attribution_in_lungs": "per method, over test images with a lung mask: fail when the mean share of positive "
                            "attribution inside the lungs is below the lungs' share of the image (a uniform map "
                            f"would do as well) and the pointing-game hit rate is below {HIT_WARN}; warn when the "
                            f"mean share is below {SHARE_WARN} or the hit rate below {HIT_WARN}; pass otherwise. "
                            "The check's status: the most severe status that at least half of the voting methods "
                            f"reach (Grad-CAM does not vote when its map is smaller than {GRADCAM_MIN_SIDE}x"
                            f"{GRADCAM_MIN_SIDE}: it cannot localise)",
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
           ) -> tuple[float, list[float]]:
    """``auc`` and its bootstrap 95% CI (percentile, resampling images; a local generator)."""
    rng = np.random.default_rng(seed)
    boots = [auc(y[idx], scores[idx], classes) for idx in (rng.integers(0, len(y), len(y)) for _ in range(n_boot))]
    boots = [b for b in boots if np.isfinite(b)]
    ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots else [np.nan, np.nan]
    return auc(y, scores, classes), ci


def masked_status(value: float, ci: list[float]) -> str:
    """Status of the lungs-masked AUC (see ``THRESHOLDS``)."""
    if not np.isfinite(value):
        return "not run"
    above_chance = bool(np.isfinite(ci[0]) and ci[0] > 0.5)
    if value >= MASKED_FAIL and above_chance:
        return "fail"
    return "warn" if above_chance or value >= MASKED_FAIL else "pass"


def drop_status(drop: float) -> str:
    """Status of the lungs-only AUC drop (see ``THRESHOLDS``)."""
    if not np.isfinite(drop):
        return "not run"
    return "pass" if drop <= DROP_WARN else "warn" if drop <= DROP_FAIL else "fail"


def attribution_status(stats: dict[str, Any]) -> str:
    """Status of one method's overall lung scores (see ``THRESHOLDS``)."""
    share, hit, chance = stats["lung_share_mean"], stats["pointing_hit_rate"], stats["chance"]
    if not np.isfinite(share):
        return "not run"
    if share < chance and not hit >= HIT_WARN:
        return "fail"
    return "warn" if share < SHARE_WARN or not hit >= HIT_WARN else "pass"


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

    from ..bench.runio import batches

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
                  region: str) -> list[Check]:
    """The ``lungs_masked`` and ``lungs_only`` checks from ``region_predictions``."""
    what = "lung bounding box" if region == "box" else "lung mask"
    if len(preds) == 0 or preds["target"].nunique() < 2:
        why = f"needs test images of at least two classes with a lung mask ({len(preds)} with one, {no_mask} without)"
        return [Check(n, "not run", why, {"no_mask": no_mask}, THRESHOLDS[n]) for n in ("lungs_masked", "lungs_only")]
    y = preds["target"].to_numpy()
    scores = {k: np.stack(preds[k].to_list()) for k in ("full", "masked", "inside")}
    (full, full_ci), (masked, masked_ci), (inside, inside_ci) = (auc_ci(y, scores[k], classes, n_boot, seed)
                                                                 for k in ("full", "masked", "inside"))
    accuracy = {k: float((v.argmax(axis=1) == y).mean()) for k, v in scores.items()}
    base = {"n": int(len(preds)), "no_mask": no_mask, "region": what, "auc_full": full, "auc_full_ci95": full_ci}
    kept = (masked - 0.5) / (full - 0.5) if full > 0.5 else float("nan")
    constant = bool(np.ptp(scores["masked"], axis=0).max() < 1e-9)
    masked_check = Check("lungs_masked", masked_status(masked, masked_ci),
                         f"AUC {masked:.3f} [{masked_ci[0]:.3f}, {masked_ci[1]:.3f}] with the lungs blacked out "
                         f"(full image {full:.3f}; n={len(preds)})"
                         + ("; the model's output is the same for every image then" if constant else ""),
                         {**base, "auc_masked": masked, "auc_masked_ci95": masked_ci, "above_chance_kept": kept,
                          "masked_output_constant": constant, "accuracy_masked": accuracy["masked"]},
                         THRESHOLDS["lungs_masked"])
    drop = full - inside
    only_check = Check("lungs_only", drop_status(drop),
                       f"AUC {inside:.3f} [{inside_ci[0]:.3f}, {inside_ci[1]:.3f}] on the lungs alone, a drop of "
                       f"{drop:+.3f} from {full:.3f}", {**base, "auc_lungs_only": inside,
                                                         "auc_lungs_only_ci95": inside_ci, "drop": drop,
                                                         "accuracy_lungs_only": accuracy["inside"]},
                       THRESHOLDS["lungs_only"])
    return [masked_check, only_check]


def vote(statuses: list[str]) -> str:
    """The most severe status that at least half of ``statuses`` reach (``not run`` entries do not vote)."""
    ran = sorted((s for s in statuses if s != "not run"), key=("fail", "warn", "pass").index)
    return ran[(len(ran) - 1) // 2] if ran else "not run"


def attribution_check(summary: dict[str, Any], info: dict[str, Any], n_no_mask: int) -> Check:
    """The ``attribution_in_lungs`` check from ``attribution.summarise`` and ``attribute_dataset``'s info."""
    if not summary:
        return Check("attribution_in_lungs", "not run", "no test image was attributed", {}, THRESHOLDS[
            "attribution_in_lungs"])
    statuses = {m: attribution_status(s["overall"]) for m, s in summary.items()}
    coarse = bool(info.get("gradcam_map")) and min(info["gradcam_map"]) < GRADCAM_MIN_SIDE
    voters = [s for m, s in statuses.items() if not (m == "gradcam" and coarse)]
    parts = []
    for m, s in summary.items():
        o = s["overall"]
        if np.isfinite(o["lung_share_mean"]):
            parts.append(f"{m} {o['lung_share_mean']:.2f} in lungs (chance {o['chance']:.2f}), max inside "
                         + (f"{o['pointing_hit_rate']:.0%}" if np.isfinite(o["pointing_hit_rate"]) else "-"))
        else:
            parts.append(f"{m}: no positive attribution on any image with a mask")
    note = f"; {n_no_mask} image(s) without a lung mask not scored" if n_no_mask else ""
    if coarse:
        note += f"; Grad-CAM map {info['gradcam_map'][0]}x{info['gradcam_map'][1]} too coarse to vote"
    return Check("attribution_in_lungs", vote(voters), "; ".join(parts) + note,
                 {"methods": summary, "status_by_method": statuses, **info, "gradcam_votes": not coarse,
                  "no_mask": n_no_mask}, THRESHOLDS["attribution_in_lungs"])


def _sample(rows: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, stratified by target (the same ones every time for a seed)."""
    if n is None or len(rows) <= n:
        return rows
    frac = n / len(rows)
    parts = [g.sample(max(1, round(len(g) * frac)), random_state=seed) for _, g in rows.groupby("target")]
    return pd.concat(parts).sort_values("image_id").head(n)


def run_audit(run_path: str | Path, options: AuditOptions | None = None) -> dict[str, Any]:
    """Audit one seed of a bench run; write ``RUN/audit.json`` and ``RUN/run-K/attributions.parquet``.

    Raises:
        CxrcurateError: not a run folder, its weights or manifest cannot be found, or bad options.
    """
    from ..bench.runio import RunFolder
    from ..bench.train import device_for
    from . import checks as more
    from .attribution import attribute_dataset, lung_scores, summarise
    from .lungmasks import LungMasks, input_masks

    options = options or AuditOptions()
    started = time.time()
    run = RunFolder.open(run_path, options.manifest, options.data_root)
    k = options.run_index
    device = device_for(0)
    frame = run.frame(k)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    provider = LungMasks(run.root, options.lung_source, options.lung_weights, options.fallback_box, str(device))
    masks, kinds = input_masks(provider, test, run.render_config())
    no_mask = sum(m is None for m in masks.values())
    model = run.load_model(k, device)
    black = run.black(device)
    preds = region_predictions(model, run.dataset(test), masks, black, device, options.batch_size, options.region)
    checks = region_checks(preds, run.classes, no_mask, options.n_boot, options.seed, options.region)
    reload_diff = _reload_difference(run, k, preds)
    chosen = _sample(test, options.attribution_images, options.seed)
    attr_opts = AttributionOptions(**{**asdict(options.attribution), "batch_size": options.batch_size})
    pred, maps, info = attribute_dataset(model, run.dataset(chosen), black, attr_opts, device)
    scores = lung_scores(maps, masks, kinds).merge(pred, on="image_id").merge(
        chosen[["image_id", "source", "label"]], on="image_id")
    scores.to_parquet(run.seed_dir(k) / "attributions.parquet", index=False)
    checks.append(attribution_check(summarise(scores, run.classes), info,
                                    int(scores.loc[scores["method"] == attr_opts.methods[0], "mask_kind"]
                                        .eq("none").sum())))
    checks.append(more.source_probe(run, model, frame, options, device) if options.probe else
                  Check("source_probe", "not run", "switched off (--no-probe)", {}, more.THRESHOLDS["source_probe"]))
    checks.append(more.leave_one_source_out(run, frame, options))
    checks.append(more.demographics(frame, run.classes))
    checks.append(more.leakage(frame, run.metrics.get("split_policy")))
    result = {"run": str(run.path), "model": run.spec.name, "run_index": k, "classes": list(run.classes),
              "verdict": worst([c.status for c in checks]), "checks": [asdict(c) for c in checks],
              "lung_masks": {"test_images": len(test), "by_kind": pd.Series(kinds).value_counts().to_dict(),
                             "no_mask": no_mask, "source": options.lung_source, "fallback_box": options.fallback_box},
              "reload_max_abs_diff": reload_diff, "options": asdict(options), "device": str(device),
              "seconds": round(time.time() - started, 1)}
    if reload_diff > 1e-3:
        log.warning("rebuilt model differs from the run's predictions by up to %.4f", reload_diff)
    (run.path / "audit.json").write_text(json.dumps(to_json(result), indent=2, allow_nan=False))
    return result


def _reload_difference(run: Any, k: int, preds: pd.DataFrame) -> float:
    """Largest difference between the rebuilt model's probabilities and the run's own (a check of the rebuild)."""
    if not len(preds):
        return float("nan")
    written = run.predictions(k).set_index("image_id")
    cols = [f"p_{c}" for c in run.classes]
    ids = [i for i in preds["image_id"] if i in written.index]
    if not ids:
        return float("nan")
    ours = np.exp(np.stack(preds.set_index("image_id").loc[ids, "full"].to_list()))
    return float(np.abs(ours - written.loc[ids, cols].to_numpy()).max())


def audit_table(result: dict[str, Any]) -> str:
    """The audit as a plain-text table: one line per check, then the verdict."""
    width = max(len(c["name"]) for c in result["checks"])
    lines = [f"audit of {result['run']} (model {result['model']}, run-{result['run_index']})", ""]
    for c in result["checks"]:
        lines.append(f"  {c['name']:<{width}}  {c['status'].upper():<7}  {c['summary']}")
    masks = result["lung_masks"]
    kinds = ", ".join(f"{k} {v}" for k, v in masks["by_kind"].items())
    lines += ["", f"lung masks of the {masks['test_images']} test images: {kinds}",
              f"verdict: {result['verdict'].upper()}  (thresholds: audit.json, each check's 'thresholds')"]
    return "\n".join(lines)
