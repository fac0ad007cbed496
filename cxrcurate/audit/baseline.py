"""The audit's yardstick: the run's network as it was before training, and lifts over it with unit CIs.

Attribution maps and pooled features carry structure of their own, whatever the network learnt: Integrated
Gradients with a mean baseline favours bright structures outside the lungs, and the features of an *untrained*
network already tell five collections apart (AUROC 0.73 for a random base CNN, 0.81 for a random DenseNet, COVID-19
images only). An absolute line therefore cries wolf on a clean model. The audit measures the same thing on the
initial network (same architecture, same starting weights) and reports the *lift*: trained minus initial, with a
95% CI from a bootstrap over units (``base.unit_bootstrap``).

The initial network: ``build_model(spec, init, weights)`` under ``torch.manual_seed(seed of run-K)``, the call
``bench/run.py`` makes right after ``seed_everything(seed)``. For ``init="random"`` these are exactly the run's
starting weights; for ``imagenet`` / ``chexnet`` the backbone is the pretrained one and the new head is drawn the same
way. A hierarchical rung's second stage was built after the first was trained, so its initial weights are drawn from
the same distribution (seed + 1), not copied. A zero-shot rung is never trained: it has no baseline.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..bench.runio import ClassScores, HierarchicalScores
from ..models.ladder import build_model
from .base import unit_bootstrap

log = logging.getLogger(__name__)


def run_seed(run: Any, k: int) -> int:
    """The seed run-K trained with (as its metrics record it; else the run's seed + K, as ``run_bench`` numbers
    them)."""
    seed = run.seed_metrics(k).get("seed")
    return int(seed) if seed is not None else int(run.config["options"].get("seed", 0)) + k


def initial_model(run: Any, k: int, device: Any) -> tuple[Any | None, str]:
    """Run-K's network with its starting weights, wrapped as the trained one is; or ``(None, why not)``."""
    import torch

    if run.spec.zero_shot:
        return None, "zero-shot rung: nothing was trained, so there is no initial network to compare with"
    opts = run.config.get("options", {})
    init, weights, trust = opts.get("init"), opts.get("weights"), bool(opts.get("trust_checkpoint"))
    seed = run_seed(run, k)

    def build(spec: Any, outputs: int, s: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            return build_model(spec, init, weights, outputs, trust, input_size=run.size)

    what = f"{init or run.spec.init} init, torch seed {seed}"
    try:
        if run.spec.hierarchical:
            from dataclasses import replace

            stage = replace(run.spec, classes=("no", "yes"), hierarchical=False)
            order = tuple(run.classes.index(c) for c in ("normal", "pneumonia", "covid19"))
            model: Any = HierarchicalScores(build(stage, 1, seed), build(stage, 1, seed + 1), order)  # type: ignore
            what += " (stage 2: same distribution, seed + 1)"
        else:
            model = ClassScores(build(run.spec, 1 if len(run.classes) == 2 else len(run.classes), seed))
    except Exception as exc:  # weights not in the local cache, a checkpoint that moved: the baseline is then missing
        log.warning("no initial network for the audit's baselines: %s", exc)
        return None, f"the initial network could not be built ({type(exc).__name__}: {exc})"
    for m in model.modules():  # attribution hooks must see each layer's output unmodified (as RunFolder does)
        if hasattr(m, "inplace"):
            m.inplace = False
    return model.to(device).eval(), what


def paired_lift(trained: np.ndarray, initial: np.ndarray, units: np.ndarray, n_boot: int, seed: int,
                ) -> dict[str, Any]:
    """Mean of ``trained - initial`` per image (images where both are defined) and its unit-bootstrap 95% CI."""
    trained, initial = np.asarray(trained, float), np.asarray(initial, float)
    ok = np.isfinite(trained) & np.isfinite(initial)
    diff, units = (trained - initial)[ok], np.asarray(units)[ok]
    if not len(diff):
        return {"lift": float("nan"), "ci95": [float("nan")] * 2, "n": 0, "units": 0, "undefined_resamples": 0}
    ci, undefined = unit_bootstrap(lambda idx: float(diff[idx].mean()), units, n_boot, seed)
    return {"lift": float(diff.mean()), "ci95": ci, "n": int(len(diff)), "units": int(len(set(units))),
            "undefined_resamples": undefined, "trained_mean": float(trained[ok].mean()),
            "initial_mean": float(initial[ok].mean())}
