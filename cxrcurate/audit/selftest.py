"""``cxrcurate audit --self-test``: plant a shortcut, train on it, and check that the audit catches it.

An audit that never fails proves nothing. The self-test generates two small sets of radiograph-like images (two
dark elliptic lungs in a bright body with noise; COVID-19 images carry blurred patchy opacities, ``HAZE`` gray
levels strong, in the outer lung fields):

- ``planted``: every COVID-19 image (train, val and test alike, as a collection's burnt-in label would be) gets a
  label box in its top-left corner, outside the lungs: a white letter ``MARKER`` on black;
- ``clean``: the same images without it (the control).

A base CNN is trained on each with ``run_bench`` (no augmentation, so the label stays where it was burnt) and
audited with ``run_audit`` against the images' exact lung masks (written as ground-truth ``mask_paths``). The
marker region is *hot* when, on the positive test images, the share of positive attribution inside the label's
box is at least ``HOT_LIFT`` times the box's share of the image, for most methods (the same-size box in the
mirrored corner is reported as a control). The self-test passes when

- the planted run is flagged: ``lungs_masked`` fails (the classes stay separable with the lungs blacked out),
  ``attribution_in_lungs`` warns or fails (the mass lies outside the lungs), and the marker region is hot;
- the clean control is not: ``lungs_masked`` passes, ``attribution_in_lungs`` does not fail, the region is cold.

Measured on two busy CPU cores: 13.5 s with one torch thread (``OMP_NUM_THREADS=1``), 25 s with the default two.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
MARKER = "R"
HOT_LIFT = 3.0
HAZE = 30
LUNG_CENTRES, LUNG_AXES = ((0.3, 0.5), (0.7, 0.5)), (0.17, 0.33)  # (x, y) and semi-axes, as fractions of the side


@dataclass
class SelfTestOptions:
    """Size of the self-test (the defaults: 15 to 25 s on two CPU cores)."""

    n_images: int = 160
    side: int = 64
    size: int = 48
    epochs: int = 12
    lr: float = 3e-3
    seed: int = 0
    methods: tuple[str, ...] = ("gradcam", "lime", "ig")
    lime_samples: int = 64


def lung_mask(side: int) -> np.ndarray:
    """The generated images' exact lungs: two ellipses, uint8 0/1 ``(side, side)``."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    (ax, ay) = LUNG_AXES
    return np.any([((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1 for cx, cy in LUNG_CENTRES], axis=0) \
        .astype(np.uint8)


def marker_mask(side: int) -> np.ndarray:
    """Where the marker is burnt (its label's box), bool ``(side, side)``."""
    canvas = np.full((side, side), 128, dtype=np.uint8)
    _burn(canvas)
    return canvas != 128


def _burn(img: np.ndarray) -> None:
    """A burnt-in label as scanners and collections print them: a white letter on a black box, top-left."""
    import cv2

    side = img.shape[0]
    box = max(6, side // 6)
    img[1:1 + box, 1:1 + box] = 0
    cv2.putText(img, MARKER, (1 + box // 5, box - box // 8), cv2.FONT_HERSHEY_SIMPLEX, box / 32, 255,
                max(1, box // 8), cv2.LINE_AA)


def synthetic_manifest(out: Path, planted: bool, n_images: int = 160, side: int = 64, seed: int = 0) -> Path:
    """Write the generated images, their lung mask and a manifest (source ``selftest``); return its path.

    Two images per patient, patients alternating normal / COVID-19; ``planted`` burns ``MARKER`` into every
    COVID-19 image.
    """
    import cv2
    from PIL import Image

    from ..imageio import fingerprint
    from ..manifest import write_manifest

    out = Path(out)
    (out / "selftest/images").mkdir(parents=True, exist_ok=True)
    lungs = lung_mask(side)
    Image.fromarray(lungs * 255).save(out / "selftest/lungs.png")
    yy, xx = np.mgrid[0:side, 0:side] / side
    periphery = lungs.astype(bool) & (np.abs(xx - 0.5) > 0.26)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        label = ("normal", "covid19")[(i // 2) % 2]
        img = 200.0 - 120 * lungs + rng.normal(0, 12, (side, side))
        if label == "covid19":  # patchy opacities in the outer lung fields, a few pixels across
            patches = cv2.GaussianBlur((rng.random((side, side)) > 0.6).astype(np.float32), (0, 0), side / 48)
            img += HAZE * periphery * patches / max(float(patches.max()), 1e-6)
        img = np.clip(img, 0, 255).astype(np.uint8)
        if planted and label == "covid19":
            _burn(img)
        name = f"selftest/images/{i:04d}.png"
        Image.fromarray(img).save(out / name)
        rows.append({"image_id": f"selftest:{name}", "source": "selftest", "source_record": name,
                     "patient_id": f"selftest:p{i // 2}", "path": name, "label": label, "view": "PA",
                     "frontal": True, "modality": "xray", "age_years": 30.0 + i % 40, "sex": "MF"[i % 2],
                     "pediatric": False, "pediatric_reason": "age>=18", "mask_paths": ["selftest/lungs.png"],
                     **fingerprint(out / name)})
    return write_manifest(rows, out / "manifest.parquet", {"data_root": str(out), "self_test": {"planted": planted}})


def marker_heat(run_path: Path, side: int, methods: tuple[str, ...], lime_samples: int, seed: int) -> dict[str, Any]:
    """Per method: mean share of the positive test images' attribution inside the marker box, and its lift."""
    from ..bench.runio import RunFolder
    from ..bench.train import device_for
    from .attribution import AttributionOptions, attribute_dataset, region_share
    from .lungmasks import to_input

    run = RunFolder.open(run_path)
    device = device_for(0)
    frame = run.frame(0)
    positives = frame[(frame["split"] == "test") & (frame["label"] == "covid19")].reset_index(drop=True)
    region = to_input(marker_mask(side), run.render_config())
    opts = AttributionOptions(methods=methods, lime_samples=lime_samples, lime_segments=30, ig_steps=16, seed=seed)
    _, maps, _ = attribute_dataset(run.load_model(0, device), run.dataset(positives), run.black(device), opts, device)
    mirror = region[:, ::-1]
    out: dict[str, Any] = {"box_fraction": float(region.mean()), "images": int(len(positives))}
    for m in methods:
        share, control = ([region_share(a, r) for (_, meth), a in maps.items() if meth == m] for r in (region, mirror))
        share = float(np.nanmean(share)) if np.isfinite(share).any() else float("nan")
        control = float(np.nanmean(control)) if np.isfinite(control).any() else float("nan")
        out[m] = {"share": share, "lift": share / float(region.mean()), "mirror_share": control}
    hot = [m for m in methods if out[m]["lift"] >= HOT_LIFT]
    out["hot_methods"], out["hot"] = hot, len(hot) * 2 > len(methods)
    return out


@dataclass
class SelfTestResult:
    """The two audits, the marker heat of each, and whether the audit told them apart."""

    ok: bool
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text summary for the terminal."""
        lines = [f"self-test (label {MARKER!r} burnt into COVID-19 images; clean control without it)", ""]
        for name, v in self.variants.items():
            heat = v["marker"]
            lift = ", ".join(f"{m} {heat[m]['lift']:.1f}x" if np.isfinite(heat[m]["lift"]) else f"{m} -"
                             for m in self.options["methods"])
            lines.append(f"  {name:8s} expected {v['expected']:<8s} got {v['got']:<8s} test AUC {v['auc']:.3f}; "
                         f"masked-lungs {v['checks']['lungs_masked']['status'].upper()} "
                         f"({v['checks']['lungs_masked']['summary']})")
            lines.append(f"  {'':8s} attribution-in-lungs {v['checks']['attribution_in_lungs']['status'].upper()}; "
                         f"marker region {'HOT' if heat['hot'] else 'cold'} (lift over its area: {lift})")
        lines += ["", "PASS: the audit flags the planted shortcut and passes the clean control" if self.ok else
                  "FAIL: the audit did not tell the planted shortcut from the clean control"]
        return "\n".join(lines)


def run_self_test(out: str | Path, options: SelfTestOptions | None = None) -> SelfTestResult:
    """Generate, train and audit both variants under ``out``; write ``out/selftest.json``.

    Raises:
        CxrcurateError: training or the audit fails (e.g. missing dependencies).
    """
    from ..bench.run import BenchOptions, run_bench
    from ..bench.train import TrainConfig
    from .attribution import AttributionOptions
    from .base import AuditOptions, to_json
    from .core import run_audit

    options = options or SelfTestOptions()
    out = Path(out)
    variants: dict[str, dict[str, Any]] = {}
    for name, planted in (("planted", True), ("clean", False)):
        manifest = synthetic_manifest(out / name / "data", planted, options.n_images, options.side, options.seed)
        train = TrainConfig(epochs=options.epochs, batch_size=16, workers=0, lr=options.lr, patience=options.epochs,
                            seed=options.seed)
        bench = BenchOptions(model="base-cnn", size=options.size, n_boot=100, augment=False, seed=options.seed,
                             train=train)
        run = run_bench(manifest, out / name / "run", bench, progress=False)
        attr = AttributionOptions(methods=options.methods, lime_samples=options.lime_samples, lime_segments=30,
                                  ig_steps=16, seed=options.seed)
        audit = run_audit(run, AuditOptions(lung_source="ground-truth", attribution=attr, attribution_images=None,
                                            loso=False, seed=options.seed))
        heat = marker_heat(run, options.side, options.methods, options.lime_samples, options.seed)
        checks = {c["name"]: c for c in audit["checks"]}
        masked, in_lungs = checks["lungs_masked"]["status"], checks["attribution_in_lungs"]["status"]
        flagged = masked == "fail" and in_lungs in ("warn", "fail") and heat["hot"]
        clean = masked == "pass" and in_lungs != "fail" and not heat["hot"]
        got = "flagged" if flagged else "passed" if clean else "unclear"
        auc = json.loads((Path(run) / "metrics.json").read_text())["runs"][0]["roc_auc"]
        variants[name] = {"expected": "flagged" if planted else "passed", "got": got, "auc": auc,
                          "checks": checks, "marker": heat, "run": str(run)}
    ok = variants["planted"]["got"] == "flagged" and variants["clean"]["got"] == "passed"
    result = SelfTestResult(ok, variants, asdict(options))
    (out / "selftest.json").write_text(json.dumps(to_json(asdict(result)), indent=2, allow_nan=False))
    return result
