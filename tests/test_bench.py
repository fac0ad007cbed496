"""Every ladder model trains and scores end to end on CPU at toy size; runs write what they promise."""

import json

import pytest

torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")

from cxrcurate.bench.compare import compare_table  # noqa: E402
from cxrcurate.bench.data import prepare  # noqa: E402
from cxrcurate.bench.metrics import score  # noqa: E402
from cxrcurate.bench.record import RunRecord  # noqa: E402
from cxrcurate.bench.run import BenchOptions, run_bench  # noqa: E402
from cxrcurate.bench.train import TrainConfig  # noqa: E402
from cxrcurate.cli import main  # noqa: E402
from cxrcurate.errors import CxrcurateError  # noqa: E402
from cxrcurate.manifest import read_manifest  # noqa: E402


def _opts(model, **kw):
    train = TrainConfig(epochs=kw.pop("epochs", 1), batch_size=8, workers=0, lr=kw.pop("lr", 1e-3), patience=3)
    return BenchOptions(model=model, size=kw.pop("size", 32), n_boot=50, train=train, augment=False, **kw)


@pytest.mark.parametrize("model", ["base-cnn", "densenet121-imagenet", "resnet50-imagenet", "cxnet-lungs",
                                   "cxnet-3class", "cxnet-hier"])
def test_ladder_model_trains_and_scores(model, toy_manifest, tmp_path):
    run = run_bench(toy_manifest, tmp_path / model, _opts(model, init="random"), progress=False)
    rec = RunRecord.open(run)
    m = rec.metrics
    first = m["runs"][0]
    pred = rec.predictions(0)
    assert first["n"] == len(pred)
    assert 0 <= first["accuracy"] <= 1 and len(first["confusion_matrix"]) == len(m["classes"])
    assert set(first["ci95"]) == {"accuracy", "balanced_accuracy", "covid_f1", "roc_auc"}
    assert first["ci_unit"] == "unit" and 0 < first["n_units"] <= first["n"]
    assert rec.config["input"]["size"] == 32 and rec.config["preprocess"]["size"] == 32  # resolved, recorded
    assert rec.complete and len(rec.history(0)) == (2 if model == "cxnet-hier" else 1)  # one epoch (per stage)
    assert rec.split(0)["unit"].notna().all()
    assert not list(run.rglob("last.pt"))  # optimizer state only while the run can be resumed
    weights = list((run / "run-0").glob("*.safetensors"))
    assert weights and all(w.stat().st_size > 0 and w.stat().st_mode & 0o777 == 0o644 for w in weights)
    probs = pred[[c for c in pred.columns if c.startswith("p_")]]
    assert ((probs.sum(axis=1) - 1).abs() < 1e-4).all()


def test_base_cnn_learns_the_toy_task(toy_manifest, tmp_path):
    run = run_bench(toy_manifest, tmp_path / "b", _opts("base-cnn", epochs=25, lr=3e-3, size=48), progress=False)
    m = RunRecord.open(run).metrics["runs"][0]
    assert m["roc_auc"] > 0.8, m  # the toy classes are separable; a broken loop would sit near 0.5


def test_group_split_keeps_patients_together_and_per_image_is_labelled_leaky(toy_manifest):
    df = read_manifest(toy_manifest)
    task = prepare(df, ("normal", "pneumonia", "covid19"), "group", seed=1)
    assert task.frame.groupby("patient_id")["split"].nunique().eq(1).all()
    leaky = prepare(df, ("normal", "pneumonia", "covid19"), "per-image", seed=1)
    assert any("LEAKY" in n for n in leaky.notes)
    assert leaky.frame.groupby("patient_id")["split"].nunique().gt(1).any()
    with pytest.raises(CxrcurateError, match="split"):
        prepare(df, ("normal", "pneumonia", "covid19"), "manifest")


def test_chexnet_zero_shot_and_cxnet_from_a_chexnet_checkpoint(toy_manifest, tmp_path):
    import timm

    net = timm.create_model("densenet121", pretrained=False, num_classes=14)
    state = {f"module.densenet121.{k}".replace("norm1", "norm.1").replace("conv2", "conv.2")
             .replace("classifier.", "classifier.0."): v for k, v in net.state_dict().items()}
    ckpt = tmp_path / "chexnet.pth.tar"
    torch.save({"state_dict": state, "epoch": 3}, ckpt)
    run = run_bench(toy_manifest, tmp_path / "probe", _opts("chexnet", weights=str(ckpt), negatives=("normal",)),
                    progress=False)
    assert RunRecord.open(run).history(0).empty  # zero-shot: no training
    run = run_bench(toy_manifest, tmp_path / "cx", _opts("cxnet", weights=str(ckpt), epochs=1), progress=False)
    assert RunRecord.open(run).config["spec"]["head"] == "cxnet"


def test_metrics_and_ci():
    import numpy as np

    y = np.array([0, 0, 1, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45], [0.1, 0.9]])
    m = score(y, proba, ("non-covid", "covid19"), n_boot=200)
    assert m["accuracy"] == pytest.approx(5 / 6) and m["roc_auc"] == 1.0
    assert m["confusion_matrix"] == [[2, 0], [1, 3]]
    assert m["per_class"]["covid19"]["recall"] == 0.75
    lo, hi = m["ci95"]["accuracy"]
    assert lo <= m["accuracy"] <= hi and lo < hi


def test_cli_bench_compare_and_models(toy_manifest, tmp_path, capsys):
    args = ["bench", "--model", "base-cnn", "--manifest", str(toy_manifest), "--out", str(tmp_path / "a"),
            "--size", "32", "--epochs", "1", "--workers", "0", "-q", "--negatives", "normal,pneumonia"]
    assert main(args) == 0
    assert main(args[:-2] + ["--split-policy", "per-image", "--out", str(tmp_path / "leaky")]) == 0
    capsys.readouterr()
    assert main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "leaky")]) == 0
    out = capsys.readouterr().out
    assert "per-image (LEAKY)" in out
    for row in compare_table([tmp_path / "a", tmp_path / "leaky"]).to_dict("records"):
        # the paper's base-CNN accuracy alongside, or "not comparable" when the run carries no evidence
        assert row["paper accuracy"] == ("0.987" if row["evidence"] == "yes" else "not comparable"), row
        assert row["paper accuracy"] in out
    assert main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "leaky"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in rows] == ["a", "leaky"] and rows[1]["split"] == "per-image (LEAKY)"
    assert 0.0 <= rows[0]["aggregate"]["roc_auc"]["mean"] <= 1.0 and len(rows[0]["ci95"]) == 1
    assert main(["models"]) == 0
    assert "cxnet-hier" in capsys.readouterr().out
    assert main(["bench", "--model", "cxnett", "--manifest", str(toy_manifest)]) == 2
    assert "Did you mean 'cxnet'" in capsys.readouterr().err
    table = compare_table([tmp_path / "a"])
    assert table.loc[0, "model"] == "base-cnn"


def test_pretrain_chexnet_then_cxnet_starts_from_it(toy_manifest, tmp_path):
    from cxrcurate.manifest import read_info, write_manifest

    df = read_manifest(toy_manifest)
    df["source"] = "nih-cxr14"
    df["finding_raw"] = df["label"].map({"normal": "No Finding", "pneumonia": "Pneumonia|Infiltration",
                                         "covid19": "Consolidation|Infiltration"})
    nih = write_manifest(df, tmp_path / "nih.parquet", read_info(toy_manifest))
    assert main(["pretrain-chexnet", "--manifest", str(nih), "--data-root", str(toy_manifest.parent), "--out",
                 str(tmp_path / "cx"), "--size", "32", "--epochs", "1", "--workers", "0", "-q"]) == 0
    card = json.loads((tmp_path / "cx/chexnet.json").read_text())
    assert "Infiltration" in card["test_auroc"] and card["size"] == 32
    run = run_bench(toy_manifest, tmp_path / "cxnet", _opts("cxnet", weights=str(tmp_path / "cx/chexnet.safetensors")),
                    progress=False)
    assert RunRecord.open(run).weights_path(0).exists()


def test_torchrun_two_cpu_processes(toy_manifest, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "ddp"
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "cxrcurate.cli", "bench", "--model", "base-cnn",
           "--manifest", str(toy_manifest), "--out", str(out), "--size", "32", "--epochs", "1", "--workers", "0",
           "-q", "--negatives", "normal,pneumonia"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    rec = RunRecord.open(out)
    assert rec.config["environment"]["world_size"] == 2
    m = rec.metrics["runs"][0]
    test_rows = rec.split(0).query("split == 'test'")
    assert m["n"] == len(test_rows)  # predictions gathered from both ranks, padding removed


def test_resume_continues_an_interrupted_run_from_its_checkpoint(toy_manifest, tmp_path, monkeypatch):
    import cxrcurate.bench.train as train

    whole = RunRecord.open(run_bench(toy_manifest, tmp_path / "whole", _opts("base-cnn", epochs=3), progress=False))
    evaluate, calls = train._evaluate_loss, []

    def interrupted(*args, **kw):  # the third epoch's validation never comes: the process was stopped
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return evaluate(*args, **kw)

    monkeypatch.setattr(train, "_evaluate_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_bench(toy_manifest, tmp_path / "r", _opts("base-cnn", epochs=3), progress=False)
    assert (tmp_path / "r/run-0/last.pt").exists() and not RunRecord.open(tmp_path / "r").complete
    monkeypatch.setattr(train, "_evaluate_loss", evaluate)
    with pytest.raises(CxrcurateError, match="holds run"):  # never written into without --resume or --overwrite
        run_bench(toy_manifest, tmp_path / "r", _opts("base-cnn", epochs=3), progress=False)
    with pytest.raises(CxrcurateError, match="other inputs"):  # resuming needs the same inputs
        run_bench(toy_manifest, tmp_path / "r", _opts("base-cnn", epochs=4, resume=True), progress=False)
    run_bench(toy_manifest, tmp_path / "r", _opts("base-cnn", epochs=3, resume=True), progress=False)
    again = RunRecord.open(tmp_path / "r")
    history = again.history(0)
    assert list(history["epoch"]) == [1, 2, 3]  # epochs 1-2 came from the checkpoint, only epoch 3 was trained
    assert history["train_loss"].iloc[:2].tolist() == pytest.approx(whole.history(0)["train_loss"].iloc[:2].tolist())
    assert again.complete and not (tmp_path / "r/run-0/last.pt").exists()


def test_bench_reads_the_tensor_cache(toy_manifest, tmp_path):
    import shutil

    from cxrcurate.bench.run import preprocess_config
    from cxrcurate.models import get_spec
    from cxrcurate.preprocess.cache import build_cache

    root = tmp_path / "copy"
    shutil.copytree(toy_manifest.parent, root)
    manifest = root / "manifest.parquet"
    df = read_manifest(manifest)
    build_cache(df, tmp_path / "cache", preprocess_config(get_spec("cxnet"), 32), data_root=root, workers=1,
                progress=False)
    for p in (root / "toy").glob("*.png"):
        p.unlink()  # from now on only the cache can feed the model
    opts = _opts("cxnet", init="random", data_root=str(root))
    opts.cache = str(tmp_path / "cache")
    run = run_bench(manifest, tmp_path / "run", opts, progress=False)
    assert RunRecord.open(run).metrics["runs"][0]["n"] > 0
