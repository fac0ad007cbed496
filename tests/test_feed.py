"""How the bench feeds its model: the default tensor cache (filled, then read), workers and loader settings from
the machine, and the batched augmentation path of ``fit`` (run here on CPU tensors)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")

from cxrcurate.bench import feed  # noqa: E402
from cxrcurate.bench.train import TrainConfig, fit  # noqa: E402
from cxrcurate.cli import main  # noqa: E402
from cxrcurate.preprocess.augment import AugmentConfig, BatchAugment  # noqa: E402


def test_cli_bench_fills_and_reads_the_default_cache(toy_manifest, tmp_path, monkeypatch):
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("CXRCURATE_CACHE", str(cache))
    args = ["bench", "--model", "base-cnn", "--manifest", str(toy_manifest), "--size", "32", "--epochs", "1", "-q",
            "--negatives", "normal,pneumonia"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    folders = [p for p in cache.iterdir() if (p / "config.json").exists()]
    assert len(folders) == 1
    entries = list(folders[0].glob("*/*.npy"))
    assert entries and all(e.stat().st_size > 0 for e in entries)
    stamp = {e: e.stat().st_mtime_ns for e in entries}
    assert main(args + ["--out", str(tmp_path / "b")]) == 0  # warm: read, not rewritten
    assert {e: e.stat().st_mtime_ns for e in entries} == stamp
    from cxrcurate.bench.record import RunRecord

    history = RunRecord.open(tmp_path / "b").history(0)
    assert history["data_wait_share"].between(0, 1).all()

    other = tmp_path / "other-cache"
    monkeypatch.setenv("CXRCURATE_CACHE", str(other))
    assert main(args + ["--out", str(tmp_path / "c"), "--no-cache"]) == 0
    assert not other.exists()
    assert main(args + ["--out", str(tmp_path / "d"), "--no-cache", "--cache", str(other)]) == 2


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(feed.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert feed.default_cache_dir() == tmp_path / "xdg" / "cxrcurate" / "tensors"
    monkeypatch.setenv(feed.CACHE_ENV, str(tmp_path / "mine"))
    assert feed.default_cache_dir() == tmp_path / "mine"


def test_workers_and_loader_settings_come_from_the_machine():
    assert feed.auto_workers(1) == 0 and feed.auto_workers(2) == 1 and feed.auto_workers(16) == 15
    assert feed.auto_workers(96) == feed.MAX_AUTO_WORKERS
    assert feed.loader_settings(None, cuda=False)["num_workers"] == feed.auto_workers()
    gpu = feed.loader_settings(8, cuda=True)
    assert gpu == {"num_workers": 8, "pin_memory": True, "prefetch_factor": feed.PREFETCH}
    assert feed.loader_settings(0, cuda=True) == {"num_workers": 0, "pin_memory": True}
    assert feed.wants_batch_augment(torch.device("cuda", 0)) and not feed.wants_batch_augment(torch.device("cpu"))
    assert not feed.wants_batch_augment(None)


class _Toy(torch.utils.data.Dataset):
    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 3, 16, 16, generator=g)
        self.targets = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.targets[i]), f"toy:{i}"


def test_fit_applies_the_batch_augmentation_where_the_batch_is(tmp_path):
    seen: list[tuple[tuple[int, ...], list[str], int]] = []

    class Spy(BatchAugment):
        def __call__(self, batch, indices):
            seen.append((tuple(batch.shape), list(indices), self.epoch))
            return super().__call__(batch, indices)

    train = _Toy()
    train.batch_augment = Spy(AugmentConfig(), seed=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 1))
    cfg = TrainConfig(epochs=2, batch_size=8, workers=0, lr=1e-3, amp=False)
    history = fit(model, train, _Toy(8), train.targets.numpy(), 2, cfg, tmp_path, torch.device("cpu"),
                  progress=False)
    assert len(history) == 2 and all(0 <= h["data_wait_share"] <= 1 for h in history)
    assert {e for _, _, e in seen} == {0, 1} and all(s == (8, 3, 16, 16) for s, _, _ in seen)
    assert sorted(i for ids, e in ((ids, e) for _, ids, e in seen) if e == 0 for i in ids) == \
        sorted(f"toy:{i}" for i in range(24))


def test_bench_on_a_gpu_augments_on_the_device(toy_manifest, tmp_path, monkeypatch):
    """The GPU wiring of ``run_bench`` (dataset without per-sample augmentation or normalisation, ``BatchAugment``
    in ``fit``), run on CPU tensors by telling the bench its device wants batches."""
    import cxrcurate.bench.run as bench_run
    from cxrcurate.bench.run import BenchOptions, run_bench
    from cxrcurate.preprocess.augment import PaperAugment

    calls = {"batch": 0, "sample": 0}
    real_batch, real_sample = BatchAugment.__call__, PaperAugment.__call__

    def batch(self, x, ids):
        calls["batch"] += 1
        return real_batch(self, x, ids)

    def sample(self, x, i):
        calls["sample"] += 1
        return real_sample(self, x, i)

    monkeypatch.setattr(BatchAugment, "__call__", batch)
    monkeypatch.setattr(PaperAugment, "__call__", sample)
    monkeypatch.setattr(feed, "wants_batch_augment", lambda device: True)
    monkeypatch.setattr(bench_run, "wants_batch_augment", lambda device: True)  # run imports it at its top
    train = TrainConfig(epochs=1, batch_size=8, workers=0, lr=1e-3, patience=3)
    opts = BenchOptions(model="base-cnn", init="random", size=32, n_boot=50, train=train, augment=True,
                        cache=str(tmp_path / "cache"), negatives=("normal", "pneumonia"))
    run_bench(toy_manifest, tmp_path / "run", opts, progress=False)
    assert calls["batch"] > 0 and calls["sample"] == 0
