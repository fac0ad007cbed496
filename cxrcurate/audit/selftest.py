"""``cxrcurate audit --self-test``: plant shortcuts of graded strength in real radiographs and check the verdicts.

An audit that never fails proves nothing, and one that fails everything proves nothing either. The self-test takes
real adult frontal chest X-rays that come with a drawn lung mask (the Cohen collection's ``lung-masks`` in a data
folder the user names, ``--self-test-data DIR`` holding ``cohen/``), labels half the *patients* COVID-19 and gives
their images a real, lung-located signal (blurred patchy opacities, ``HAZE`` gray levels strong, inside the drawn
lungs). Without a data folder it uses every frontal radiograph of the shipped sample (drawn lungs for Cohen's, the
shipped U-Net's elsewhere; about two dozen pictures), jittered into more: the copies of one picture keep its key,
so they are ONE unit and sit on one side of the split, and half of all copies, drawn at random, are COVID-19 (labels
by image, not by patient), so a test unit holds both classes and the test side reaches the bench's minimum of test
units per class (``SAMPLE_SPLIT``: a larger test share). Each scenario then adds a shortcut outside the
lungs, a burnt-in letter ``MARKER`` where it overlaps the lungs least (``marker_box``: where augmentation keeps it in
view):

======================  =================================  ================  ===========================
scenario                marker on positives / negatives    marker            expected verdict
======================  =================================  ================  ===========================
``clean``               0% / 0% (the control)              -                 pass (the WHOLE verdict)
``full-marker``         100% / 0%                          white on black    fail
``partial-marker``      60% / 20%                          white on black    warn or fail
``low-contrast``        100% / 0%                          +``LOW_DELTA``    warn or fail
======================  =================================  ================  ===========================

Each scenario is one base-CNN run (``run_bench`` with the bench's paper augmentation, as a real run) and one full
``run_audit`` against the drawn lung masks. Whether a trained model actually READ a planted marker is measured
independently of the audit: its *marker reliance*, the mean change of P(COVID-19) on the test images when the
marker is burnt into every one of them versus none (a counterfactual the audit itself does not see). A scenario's
expected verdict is the table's when the model relied on the marker (reliance >= ``RELIED``); when it did not
(reliance < ``IGNORED``: a weak marker lost against the lung signal) the audit must say ``pass`` (crying wolf is a
failure too); in between either is accepted. The clean control must always ``pass``, its whole verdict. The
self-test passes only when every scenario's verdict is one it expects.

Training options are the self-test's own (``SelfTestOptions``: lr 1e-3, no LR finder), set explicitly so that the
result does not move with the bench's defaults; ``docs/audit.md`` records the measured training curves and verdicts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bench.record import RunRecord, selftest_path, write_text
from ..dedup.hashindex import pairs_within
from ..errors import CxrcurateError
from ..imageio import decode_image, fingerprint, is_image_name, phash64
from ..manifest import write_manifest
from ..preprocess.config import SHIPPED_WEIGHTS
from ..sample import SAMPLE_ROOT

log = logging.getLogger(__name__)
MARKER, HAZE, LOW_DELTA = "R", 60, 40  # the letter; lung haze and the low-contrast letter, in gray levels
DUP_RADIUS = 8
SAMPLE_FROM = "the shipped sample"
SAMPLE_SPLIT = (0.3, 0.15)  # test, val on the sample's few pictures: >= MIN_TEST_UNITS units of each class in test
RELIED, IGNORED = 0.20, 0.05  # marker reliance (change of P(COVID-19)) above which a model read the marker / below
SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {"positives": 0.0, "negatives": 0.0, "contrast": "full", "expected": ("pass",)},
    "full-marker": {"positives": 1.0, "negatives": 0.0, "contrast": "full", "expected": ("fail",)},
    "partial-marker": {"positives": 0.6, "negatives": 0.2, "contrast": "full", "expected": ("warn", "fail")},
    "low-contrast": {"positives": 1.0, "negatives": 0.0, "contrast": "low", "expected": ("warn", "fail")},
}


@dataclass
class SelfTestOptions:
    """Size and training of the self-test (defaults: a few minutes on two CPU cores)."""

    n_images: int = 320
    side: int = 96
    size: int = 64
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 16
    augment: bool = True
    seed: int = 0
    methods: tuple[str, ...] = ("gradcam", "lime", "ig")
    lime_samples: int = 32
    attribution_images: int | None = 60
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    data_dir: str | None = None


def marker_box(lungs: np.ndarray, anywhere: bool = False) -> tuple[int, int, int]:
    """Where the marker goes: ``(row, col, side)`` of a box that overlaps the drawn lungs least.

    Default: in the upper middle (over the trachea and mediastinum), where augmentation keeps it in view (the
    paper's zoom and shift crop an image's corners in most draws, so a corner label would rarely be seen in
    training); the measured self-test on real Cohen CXRs uses this. ``anywhere`` (the shipped sample, whose lungs
    fill the frame): the least-lung place inside the band a tenth of the side from every edge, nearest the upper
    middle among equally free places (the upper middle put over half the marker in the lungs on 11 of 23 sample
    pictures, so blacking out the lungs hid the shortcut too; mean overlap now 0.02)."""
    side = lungs.shape[0]
    if not anywhere:
        box = max(8, side // 5)
        col = side // 2 - box // 2
        rows = range(max(1, side // 10), side // 3)
        overlap = [lungs[r:r + box, col:col + box].sum() for r in rows]
        return int(rows[int(np.argmin(overlap))]), col, box
    box = max(8, side // 6)
    edge = max(1, side // 10)
    best: tuple[float, float, int, int] | None = None
    for r in range(edge, side - edge - box + 1, 2):
        for c in range(edge, side - edge - box + 1, 2):
            near = abs(r - side // 6) + abs(c + box / 2 - side / 2)
            key = (round(float(lungs[r:r + box, c:c + box].mean()), 2), near, r, c)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3], box


def burn(img: np.ndarray, lungs: np.ndarray, contrast: str = "full", anywhere: bool = False) -> None:
    """Burn the marker in place at ``marker_box``: a white letter on a black box (``full``) or a letter
    ``LOW_DELTA`` gray levels above the box's own mean, no box (``low``)."""
    import cv2

    r, c, box = marker_box(lungs, anywhere)
    if contrast == "full":
        img[r:r + box, c:c + box] = 0
        value = 255
    else:
        value = int(min(255, float(img[r:r + box, c:c + box].mean()) + LOW_DELTA))
    cv2.putText(img, MARKER, (c + box // 5, r + box - box // 8), cv2.FONT_HERSHEY_SIMPLEX, box / 28, value,
                max(1, box // 7), cv2.LINE_AA)


def real_images(side: int, n: int, data_dir: str | Path | None = None, seed: int = 0,
                ) -> tuple[list[tuple[np.ndarray, np.ndarray, str]], str]:
    """Up to ``n`` real adult frontal CXRs with drawn lungs, resized to ``side``: ``[(image, lungs, patient)]``.

    From ``data_dir``'s ``cohen/`` (a folder the user names); else the shipped sample (``sample_pictures``), each
    picture repeated with a small random shift, zoom and gamma; the copies of one picture share its key (one unit).
    Returns the images and where they came from.
    """
    import cv2

    rng = np.random.default_rng(seed)
    picked: list[tuple[np.ndarray, np.ndarray, str]] = []
    for root in ([Path(data_dir)] if data_dir else []) + [Path(SAMPLE_ROOT)]:
        meta = root / "cohen" / "metadata.csv"
        if not meta.is_file():
            continue
        df = pd.read_csv(meta, dtype={"patientid": str})
        df = df[df["view"].isin(["PA", "AP", "AP Supine", "AP Erect"]) & ~(df["age"] < 18)]
        df = df.drop_duplicates("filename")
        for rec in df.sample(frac=1.0, random_state=seed).itertuples():
            img_path, mask_path = root / "cohen/images" / rec.filename, root / "cohen/lung-masks" / rec.filename
            if not (img_path.is_file() and mask_path.is_file()):
                continue
            img, mask = cv2.imread(str(img_path), cv2.IMREAD_GRAYSCALE), cv2.imread(str(mask_path),
                                                                                    cv2.IMREAD_GRAYSCALE)
            if img is None or mask is None:
                continue
            mask = cv2.resize(mask, img.shape[::-1], interpolation=cv2.INTER_NEAREST)
            picked.append((cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA),
                           cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST) > 127,
                           f"cohen:{rec.patientid}"))
            if len(picked) >= n:
                return same_picture_same_patient(picked), str(root / "cohen")
        if len(picked) >= max(40, n // 2):
            return same_picture_same_patient(picked), str(root / "cohen")
        picked = picked if root == Path(SAMPLE_ROOT) else []
    picked = [(img, lungs, f"sample:{key}") for img, lungs, key in picked]
    pictures = same_picture_same_patient(picked + sample_pictures(side))
    if not pictures:
        raise CxrcurateError("no real CXRs with lung masks found (shared data folder or shipped sample)")
    # the shipped sample: too few pictures, so each is repeated with a small jitter; every copy keeps its
    # picture's key, so the copies of one picture are one unit (one patient), on one side of the split
    out = []
    for i in range(n):
        img, mask, key = pictures[i % len(pictures)]
        dx, dy = rng.integers(-side // 12, side // 12 + 1, 2)
        zoom = rng.uniform(0.92, 1.08)
        m = cv2.getRotationMatrix2D((side / 2, side / 2), 0, zoom)
        m[:, 2] += (dx, dy)
        warped = cv2.warpAffine(img, m, (side, side), borderMode=cv2.BORDER_REFLECT)
        gamma = rng.uniform(0.8, 1.25)
        warped = (255 * (warped / 255.0) ** gamma).astype(np.uint8)
        out.append((warped, cv2.warpAffine(mask.astype(np.uint8), m, (side, side)) > 0, key))
    units = len({key for _, _, key in pictures})
    return out, f"{SAMPLE_FROM} ({units} pictures, jittered copies; one unit per picture)"


def sample_pictures(side: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Every other frontal radiograph of the shipped sample (beyond the Cohen ones with drawn lungs), with the
    lungs the shipped U-Net finds; an image where it finds none (a figure, a lateral view) is left out."""
    import cv2

    # torch: loaded only when the lung check runs
    from ..preprocess.lungs import LungSegmenter
    segmenter = LungSegmenter(SHIPPED_WEIGHTS)
    out = []
    for path in sorted(Path(SAMPLE_ROOT).rglob("*")):
        rel = path.relative_to(SAMPLE_ROOT)
        if not (path.is_file() and is_image_name(path.name)) or rel.parts[0] == "cohen":
            continue
        try:
            pixels = decode_image(path).pixels
        except Exception:  # noqa: BLE001 - a file the sample holds for a decoder quirk is simply not used
            continue
        found = segmenter.segment(pixels)
        if found.box is None:
            continue
        out.append((cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA),
                    cv2.resize(found.mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) > 0,
                    f"sample:{rel.as_posix()}"))
    return out


def same_picture_same_patient(images: list[tuple[np.ndarray, np.ndarray, str]], radius: int = DUP_RADIUS,
                              ) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Give near-identical pictures (phash Hamming <= ``radius``) one patient key, as dedup would link them.

    The Cohen collection holds the same picture under two patient ids; without this a copy could land on both sides
    of the split (the audit's leakage check rightly fails that) and carry both labels.
    """
    parent = list(range(len(images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, (_, _, p) in enumerate(images):
        parent[find(i)] = find(first.setdefault(p, i))
    hashes = np.array([phash64(img) for img, _, _ in images], dtype=np.uint64)
    for i, j, _ in zip(*pairs_within(hashes, radius), strict=True):
        ra, rb = find(int(i)), find(int(j))
        parent[max(ra, rb)] = min(ra, rb)
    return [(img, lungs, images[find(i)][2]) for i, (img, lungs, _) in enumerate(images)]


def scenario_manifest(out: Path, images: list[tuple[np.ndarray, np.ndarray, str]], scenario: dict[str, Any],
                      seed: int = 0, label_by: str = "patient") -> Path:
    """Write one scenario's images (``images/``, and ``marked/`` + ``plain/`` for the reliance test), their lung
    masks and a manifest (source ``selftest``); return the manifest's path.

    ``label_by="patient"``: half the patients are COVID-19. ``"image"`` (the shipped sample's jittered copies):
    half of all copies, at random, so a unit holds both classes and the model can only tell them apart by the
    planted signal, not by which picture it is."""
    import cv2
    from PIL import Image

    out = Path(out)
    for d in ("images", "marked", "plain", "lungs"):
        (out / "selftest" / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    patients = sorted({p for _, _, p in images})
    positive = set(rng.permutation(patients)[: len(patients) // 2])
    flips = rng.permutation(len(images)) < len(images) // 2  # label_by="image": half of all copies, at random
    rows = []
    for i, (img, lungs, patient) in enumerate(images):
        label = "covid19" if (flips[i] if label_by == "image" else patient in positive) else "normal"
        plain = img.astype(np.float64)
        if label == "covid19":  # patchy opacities inside the drawn lungs, a few pixels across
            side = img.shape[0]
            patches = cv2.GaussianBlur((rng.random(img.shape) > 0.6).astype(np.float32), (0, 0), side / 40)
            plain += HAZE * lungs * patches / max(float(patches.max()), 1e-6)
        plain = np.clip(plain, 0, 255).astype(np.uint8)
        marked = plain.copy()
        burn(marked, lungs, scenario["contrast"], anywhere=label_by == "image")
        rate = scenario["positives"] if label == "covid19" else scenario["negatives"]
        shown = marked if rng.random() < rate else plain
        name = f"{i:04d}.png"
        for d, pixels in (("images", shown), ("marked", marked), ("plain", plain)):
            Image.fromarray(pixels).save(out / "selftest" / d / name)
        Image.fromarray(lungs.astype(np.uint8) * 255).save(out / "selftest/lungs" / name)
        path = f"selftest/images/{name}"
        rows.append({"image_id": f"selftest:{name}", "source": "selftest", "source_record": name,
                     "patient_id": f"selftest:{patient}", "path": path, "label": label, "view": "PA",
                     "frontal": True, "modality": "xray", "age_years": 40.0 + i % 40, "sex": "MF"[i % 2],
                     "pediatric": False, "pediatric_reason": "age>=18", "mask_paths": [f"selftest/lungs/{name}"],
                     "extra": json.dumps({"marker": bool(shown is marked)}), **fingerprint(out / path)})
    return write_manifest(rows, out / "manifest.parquet", {"data_root": str(out), "self_test": scenario})


def expected_verdicts(scenario: dict[str, Any], reliance: float, evidence: bool = True) -> tuple[str, ...]:
    """The verdicts a scenario accepts given how much its model relied on the marker (see the module docstring).

    A marker scenario whose model shows no evidence of learning (``evidence`` False) must be ``inconclusive``:
    the audit may not call it PASS or FAIL. The clean control must pass whatever happens: a self-test whose
    control learned nothing has verified nothing."""
    if scenario["positives"] == 0 and scenario["negatives"] == 0:
        return ("pass",)
    if not evidence:
        return ("inconclusive",)
    if reliance >= RELIED:
        return tuple(scenario["expected"])
    if reliance < IGNORED:
        return ("pass",)
    return tuple(dict.fromkeys(("pass", *scenario["expected"])))


def marker_reliance(run_path: Path) -> dict[str, Any]:
    """Mean change of P(COVID-19) on the test images with the marker burnt into all of them versus none."""
    # torch: loaded only when the model checks run
    from ..bench.runio import RunFolder, batches, predict_scores
    from ..bench.train import device_for

    run = RunFolder.open(run_path)
    device = device_for(0)
    model = run.load_model(0, device)
    frame = run.frame(0)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    covid = run.classes.index("covid19")
    p = {}
    for kind in ("marked", "plain"):
        rows = test.assign(path=test["path"].str.replace("selftest/images/", f"selftest/{kind}/", regex=False))
        p[kind] = np.concatenate([predict_scores(model, x.to(device))[:, covid]
                                  for x, _, _ in batches(run.dataset(rows), 32)])
    return {"images": int(len(test)), "delta_p_covid": float((p["marked"] - p["plain"]).mean()),
            "p_covid_marked": float(p["marked"].mean()), "p_covid_plain": float(p["plain"].mean())}


@dataclass
class SelfTestResult:
    """Per scenario: expected and obtained verdicts, the checks, the training curve and the marker reliance."""

    ok: bool
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    images_from: str = ""

    def table(self) -> str:
        """A plain-text summary for the terminal."""
        lines = [f"self-test: {len(self.scenarios)} scenario(s) on real CXRs from {self.images_from}; a lung-located "
                 f"signal on COVID-19 patients, a burnt-in {MARKER!r} outside the lungs", ""]
        for name, v in self.scenarios.items():
            checks = ", ".join(f"{c} {s['status']}" for c, s in v["checks"].items() if s["status"] != "not run")
            rel = v["reliance"]["delta_p_covid"]
            lines.append(f"  {name:15s} expected {'/'.join(v['expected']):<10s} got {v['got']:<12s} "
                         f"{'ok' if v['ok'] else 'MISMATCH'}")
            lines.append(f"  {'':15s} test AUC {v['auc']:.3f}; marker reliance {rel:+.2f}; {checks}")
        lines += ["", "PASS: every scenario got its expected verdict" if self.ok else
                  "FAIL: some scenario's verdict is not the expected one (see MISMATCH)"]
        return "\n".join(lines)


def run_self_test(out: str | Path, options: SelfTestOptions | None = None, progress: bool = False
                  ) -> SelfTestResult:
    """Generate, train and audit every scenario under ``out``; write its result (``record.selftest_path``).

    Raises:
        CxrcurateError: no real images, or training or the audit fails (e.g. missing dependencies).
    """
    # torch: loaded only when the self-test trains and audits
    from ..bench.run import BenchOptions, run_bench
    from ..bench.train import TrainConfig
    from .attribution import AttributionOptions
    from .base import AuditOptions, to_json
    from .core import run_audit

    options = options or SelfTestOptions()
    out = Path(out)
    images, where = real_images(options.side, options.n_images, options.data_dir, options.seed)
    results: dict[str, dict[str, Any]] = {}
    for name in options.scenarios:
        scenario = SCENARIOS[name]
        on_sample = where.startswith(SAMPLE_FROM)
        manifest = scenario_manifest(out / name / "data", images, scenario, options.seed,
                                     label_by="image" if on_sample else "patient")
        train = TrainConfig(epochs=options.epochs, batch_size=options.batch_size, workers=0, lr=options.lr,
                            patience=options.epochs, seed=options.seed)
        test, val = SAMPLE_SPLIT if on_sample else (0.2, 0.1)
        bench = BenchOptions(model="base-cnn", size=options.size, n_boot=200, augment=options.augment,
                             seed=options.seed, train=train, test=test, val=val, overwrite=True)
        log.info("self-test %s: training", name)
        run = run_bench(manifest, out / name / "run", bench, progress=False)
        attr = AttributionOptions(methods=options.methods, lime_samples=options.lime_samples, lime_segments=30,
                                  ig_steps=16, seed=options.seed)
        audit = run_audit(run, AuditOptions(lung_source="ground-truth", attribution=attr, loso=False,
                                            attribution_images=options.attribution_images, seed=options.seed),
                          progress=progress)
        history = RunRecord.open(run).history(0).to_dict("records")
        checks = {c["name"]: {"status": c["status"], "summary": c["summary"]} for c in audit["checks"]}
        reliance = marker_reliance(run)
        expected = expected_verdicts(scenario, reliance["delta_p_covid"],
                                     not audit["test_performance"]["at_chance"])
        results[name] = {"expected": list(expected), "got": audit["verdict"],
                         "ok": audit["verdict"] in expected, "auc": audit["test_performance"]["auc"],
                         "auc_ci95": audit["test_performance"]["auc_ci95"], "checks": checks,
                         "reliance": reliance, "history": history, "run": str(run),
                         "scenario": {k: v for k, v in scenario.items() if k != "expected"}}
        log.info("self-test %s: verdict %s (expected %s)", name, audit["verdict"], expected)
    result = SelfTestResult(all(v["ok"] for v in results.values()), results, asdict(options), where)
    write_text(selftest_path(out), json.dumps(to_json(asdict(result)), indent=2, allow_nan=False))
    return result
