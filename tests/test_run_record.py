"""The run record: one module names every run file; runs are identified and never written over; a result with no
evidence says so in words (bench, audit and report); options are refused before anything is trained."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cxrcurate
from cxrcurate.bench import record
from cxrcurate.bench.metrics import MIN_TEST_UNITS, evidence, score
from cxrcurate.cli import main

PACKAGE = Path(cxrcurate.__file__).parent
RUN_FILES = (record.RECORD, record.CONFIG, record.METRICS, record.SUMMARY, record.AUDIT, record.REPORT,
             record.LOSO_DIR, record.SELFTEST, record.SPLIT, record.PREDICTIONS, record.HISTORY, record.WEIGHTS,
             record.CHECKPOINT, record.ATTRIBUTIONS, record.OVERLAYS, "history.csv", "stage1.safetensors")
# the tensor cache keeps its own config.json (a cache's, not a run's)
ALLOWED = {("preprocess/cache.py", record.CONFIG)}


def _code_strings(path: Path):
    """String constants of a module's code (docstrings, which may name files for the reader, left out)."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.value


def test_only_the_record_module_names_run_files():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "bench/record.py":
            continue
        for text in _code_strings(path):
            offenders += [f"{rel}: {name!r} in {text[:60]!r}" for name in RUN_FILES
                          if name in text and (rel, name) not in ALLOWED]
            if "run-{" in text or text.startswith("run-"):
                offenders.append(f"{rel}: seed folder name in {text[:60]!r}")
    assert not offenders, "run files named outside bench/record.py:\n" + "\n".join(offenders)


def test_the_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""Doc naming metrics.json is fine."""\nPATH = "metrics.json"\n')
    assert list(_code_strings(bad)) == ["metrics.json"]


# ------------------------------------------------------------------------------------------ evidence


def _scored(y, p, units):
    y, p = np.asarray(y), np.asarray(p, float)
    proba = np.stack([1 - p, p], axis=1)
    m = score(y, proba, ("non-covid", "covid19"), n_boot=200, seed=0, groups=units)
    return m, evidence(m, proba.argmax(axis=1), y, units, ("non-covid", "covid19"))


def test_a_dead_model_with_a_degenerate_interval_has_no_evidence():
    # the case: COVID-19 for every test image, one negative in test: AUC 0.000 [0.000, 0.000]
    m, ev = _scored([0, 1, 1, 1, 1, 1], [0.9, 0.6, 0.6, 0.7, 0.65, 0.62], [f"u{i}" for i in range(6)])
    assert m["ci95"]["roc_auc"] == [0.0, 0.0]
    assert ev["kind"] == "at_chance"
    text = " ".join(ev["reasons"])
    assert "degenerate" in text and "predicted covid19 for every test image" in text
    assert f"non-covid 1 (at least {MIN_TEST_UNITS}" in text


def test_too_few_units_is_insufficient_and_a_learned_model_is_evidence():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.15, len(y)), 0, 1)
    _, ev = _scored(y, p, [f"u{i}" for i in range(len(y))])
    assert ev["kind"] == "ok" and not ev["reasons"]
    _, few = _scored(y, p, [f"u{t}-{i % 4}" for i, t in enumerate(y)])  # 80 images, but 4 units per class
    assert few["kind"] == "insufficient" and few["test_units_per_class"] == {"non-covid": 4, "covid19": 4}


def test_no_evidence_makes_every_model_check_inconclusive_and_the_verdict_says_so():
    pytest.importorskip("torch")
    from cxrcurate.audit.base import Check
    from cxrcurate.audit.verdict import MODEL_CHECKS, gate, verdict

    ev = {"kind": "at_chance", "reasons": ["the model predicted covid19 for every test image"]}
    checks = [Check(n, "fail", "x") for n in MODEL_CHECKS] + [Check("leakage", "pass", "ok"),
                                                             Check("demographics", "warn", "kids")]
    gated = [gate(c, ev) for c in checks]
    assert {c.status for c in gated if c.name in MODEL_CHECKS} == {"inconclusive"}
    status, words = verdict(gated, ev)
    assert status == "inconclusive" and words.startswith("the model learned nothing; no shortcut verdict")
    assert "demographics WARN" in words
    assert verdict([gate(c, {"kind": "ok"}) for c in checks], {"kind": "ok"})[0] == "fail"


def test_leave_one_source_out_compares_one_metric(monkeypatch):
    pytest.importorskip("torch")
    from types import SimpleNamespace

    import cxrcurate.bench.run as bench_run
    from cxrcurate.audit import checks

    scores = {"a": {"auc": 0.6, "accuracy": 0.7}, "b": {"auc": float("nan"), "accuracy": 0.5}}
    monkeypatch.setattr(bench_run, "run_bench", lambda *a, **k: None)
    monkeypatch.setattr(checks, "run_bench", lambda *a, **k: None)  # checks imports it at its top
    monkeypatch.setattr(checks, "_heldout_score", lambda run, out, src: {
        **scores[src], "in_distribution_auc": 0.9, "in_distribution_accuracy": 0.8})
    opts = {"model": "base-cnn", "train": {}, "negatives": ["normal"]}
    run = SimpleNamespace(spec=SimpleNamespace(zero_shot=False), config={"options": opts}, root="/x",
                          manifest_path="/m", loso_dir=lambda s: Path("/nowhere") / s)
    import cxrcurate.bench.train as train

    monkeypatch.setattr(train, "TrainConfig", lambda **k: k)
    monkeypatch.setattr(checks, "TrainConfig", lambda **k: k)
    frame = pd.DataFrame({"source": ["a", "b"]})
    check = checks.leave_one_source_out(run, frame, SimpleNamespace(loso=True, loso_sources=None))
    assert check.numbers["metric"] == "accuracy"  # b's AUC is undefined: accuracy for every source
    assert {r["gap_metric"] for r in check.numbers["sources"].values()} == {"accuracy"}
    assert "(auc)" not in check.summary and check.summary.startswith("accuracy gap")


# ------------------------------------------------------------------------------------------ identity


def test_a_stale_audit_is_refused_and_marked(tmp_path, toy_manifest):
    ident = record.identity(toy_manifest, {"model": "base-cnn"})
    a = record.RunRecord.create(tmp_path / "a", ident)
    b = record.RunRecord.create(tmp_path / "b", ident)
    assert a.run_id != b.run_id and a.digest == b.digest  # same inputs, two runs
    a.write_audit({"verdict": "pass"})
    shutil.copy(tmp_path / "a" / record.AUDIT, tmp_path / "b" / record.AUDIT)
    with pytest.raises(record.RunFolderError, match="stale"):
        b.audit()
    assert a.audit()["verdict"] == "pass"
    with pytest.raises(record.RunFolderError, match="holds run"):
        record.RunRecord.create(tmp_path / "a", ident)
    record.RunRecord.create(tmp_path / "a", ident, overwrite=True)
    assert not (tmp_path / "a" / record.AUDIT).exists()  # --overwrite cleared the old run


def test_an_older_run_folder_is_named_as_such(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / record.METRICS).write_text(json.dumps({"model": "cxnet"}))
    with pytest.raises(record.RunFolderError, match="older cxrcurate"):
        record.RunRecord.open(tmp_path / "old")


# ------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("extra, words", [
    (["--epochs", "0"], "--epochs 0: must be a whole number >= 1"),
    (["--epochs", "-1"], "--epochs -1"),
    (["--runs", "0"], "--runs 0"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--size", "0"], "--size 0: must be between 32 and 1024"),
    (["--lr", "0"], "--lr 0.0: must be a number > 0, or auto"),
    (["--lr", "fast"], "--lr fast"),
])
def test_bad_options_are_refused_before_anything_runs(extra, words, tmp_path, capsys):
    assert main(["bench", "--model", "base-cnn", "--quick", "--out", str(tmp_path / "r"), *extra]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_quick_fills_only_what_the_user_did_not_set():
    pytest.importorskip("torch")
    from cxrcurate.bench.run import QUICK, BenchOptions
    from cxrcurate.bench.train import TrainConfig

    opts = BenchOptions(model="base-cnn", size=96, train=TrainConfig(epochs=1))
    opts.apply_quick({"size", "epochs"})
    assert opts.size == 96 and opts.train.epochs == 1  # the user's
    assert opts.max_images == QUICK["max_images"] and opts.train.batch_size == QUICK["batch_size"]


def test_a_class_with_too_few_units_fails_before_training_naming_it(toy_manifest, tmp_path, capsys):
    from cxrcurate.manifest import read_info, read_manifest, write_manifest

    df = read_manifest(toy_manifest)
    one = df[df["label"] != "normal"]
    one = pd.concat([one, df[df["label"] == "normal"].head(1)])  # a single negative
    path = write_manifest(one, tmp_path / "one.parquet", read_info(toy_manifest))
    code = main(["bench", "--model", "base-cnn", "--manifest", str(path), "--out", str(tmp_path / "r"), "-q",
                 "--size", "32", "--epochs", "1", "--workers", "0", "--data-root", str(toy_manifest.parent)])
    err = capsys.readouterr().err
    assert code == 1 and "too few images of class non-covid" in err and "non-covid 1" in err, err
    assert "least populated" not in err and not (tmp_path / "r" / record.RECORD).exists()


@pytest.mark.usefixtures("torch_one_thread")
def test_a_dead_quick_run_is_called_dead_by_bench_audit_and_report(tmp_path, capsys, monkeypatch):
    """The issue's case through the CLI: `bench --quick` on the shipped sample predicts COVID-19 for every test
    image (one negative unit in test). bench, audit and report say there is no evidence; a second bench into the
    same folder is refused."""
    pytest.importorskip("torch")
    pytest.importorskip("captum")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "dead"
    assert main(["bench", "--model", "base-cnn", "--quick", "--out", str(run), "-q"]) == 0
    out = capsys.readouterr().out
    assert "NONE in 1/1" in out and "not comparable" in out
    assert main(["bench", "--model", "cxnet", "--quick", "--out", str(run), "-q"]) == 1
    assert "holds run" in capsys.readouterr().err
    code = main(["audit", str(run), "-q", "--methods", "gradcam", "--max-images", "10"])
    out = capsys.readouterr().out
    assert "verdict: INCONCLUSIVE: the model learned nothing; no shortcut verdict" in out
    audit = record.RunRecord.open(run).audit()
    from cxrcurate.audit.verdict import MODEL_CHECKS

    model_checks = [c for c in audit["checks"] if c["name"] in MODEL_CHECKS]
    assert {c["status"] for c in model_checks} <= {"inconclusive", "not run"}
    assert code == (1 if any(c["status"] == "fail" for c in audit["checks"]) else 0)
    assert main(["report", str(run)]) == 0
    page = (run / record.REPORT).read_text()
    assert "NO EVIDENCE. The model learned nothing" in page and "Against the paper: not comparable" in page
    assert "Believe nothing about this model" in page


def test_a_run_table_is_read_by_kind_without_importing_the_record_first(tmp_path, toy_manifest):
    import subprocess
    import sys

    rec = record.RunRecord.create(tmp_path / "r", record.identity(toy_manifest, {"model": "base-cnn"}))
    rec.write_attributions(0, pd.DataFrame({"image_id": ["a"], "method": ["ig"], "lung_share": [0.5]}))
    code = ("import sys; from cxrcurate.tables import read_table; df = read_table(sys.argv[1]); "
            "print(df.attrs['cxrcurate']['table'], df.attrs['cxrcurate']['run_id'], 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r/run-0" / record.ATTRIBUTIONS)],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["attributions", rec.run_id, "False"], done.stderr[-1500:]
