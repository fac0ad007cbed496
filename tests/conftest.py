"""Shared fixtures: no network but loopback; the real data folder when present; the shipped sample."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

_real_connect = socket.socket.connect


def _guarded_connect(self, address):  # noqa: ANN001
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in {"127.0.0.1", "::1", "localhost"} and not host.startswith("/"):
        raise RuntimeError(f"tests must not use the network (tried {address})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(autouse=True)
def _private_tensor_cache(monkeypatch, tmp_path_factory):
    """The bench fills a tensor cache by default (``bench.feed.default_cache_dir``): keep tests out of ~/.cache."""
    monkeypatch.setenv("CXRCURATE_CACHE", str(tmp_path_factory.getbasetemp() / "tensor-cache"))


@pytest.fixture(autouse=True)
def _private_feature_cache(monkeypatch, tmp_path_factory):
    """Dedup stores each picture's features by default (``dedup.featcache``): in the session's temp folder."""
    monkeypatch.setenv("CXRCURATE_DEDUP_CACHE", str(tmp_path_factory.getbasetemp() / "dedup-features"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip when it is absent."""
    if not (SHARED / "README.md").exists():
        pytest.skip(f"real data folder {SHARED} is absent (it sits beside the checkout in development and CI)")
    return SHARED


@pytest.fixture(scope="session")
def sample_root() -> Path:
    from cxrcurate.sample import SAMPLE_ROOT

    return SAMPLE_ROOT


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory):
    """The shipped sample built once per session (single process, no progress bar), the manifest written into its
    data root (a copy of the sample), where commands find the images without --data-root."""
    import shutil

    from cxrcurate.build import build_manifest
    from cxrcurate.sample import sample_sources

    out = tmp_path_factory.mktemp("sample")
    sources = [(name, Path(shutil.copytree(folder, out / name))) for name, folder in sample_sources()]
    return build_manifest(sources, out, workers=1, progress=False)


@pytest.fixture(scope="session")
def toy_manifest(tmp_path_factory):
    """A small 3-class manifest of generated radiograph-like images that a tiny model can learn.

    covid19: bilateral peripheral haze; pneumonia: one dense lobe; normal: clear lungs. Several images per patient.
    """
    import numpy as np
    from PIL import Image

    from cxrcurate.imageio import fingerprint
    from cxrcurate.manifest import write_manifest

    root = tmp_path_factory.mktemp("toy")
    (root / "toy").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    lungs = (((xx - 0.3) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1) | (((xx - 0.7) / 0.17) ** 2 + ((yy - 0.5) / 0.33)
                                                                         ** 2 < 1)
    rows = []
    for i in range(72):
        label = ("normal", "pneumonia", "covid19")[i % 3]
        img = 200 - 120 * lungs + rng.normal(0, 12, (96, 96))
        if label == "covid19":
            img += 70 * lungs * ((np.abs(xx - 0.5) > 0.28) & (rng.random((96, 96)) > 0.3))
        elif label == "pneumonia":
            img += 90 * lungs * (xx < 0.45) * (yy > 0.5)
        name = f"toy/{i:03d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name)
        rows.append({"image_id": f"toy:{name}", "source": "toy", "source_record": name, "patient_id": f"toy:p{i // 2}",
                     "path": name, "label": label, "view": "PA", "frontal": True, "modality": "xray",
                     "age_years": 40.0 + i % 30, "sex": "MF"[i % 2], "pediatric": False,
                     "pediatric_reason": "age>=18", **fingerprint(root / name)})
    path = write_manifest(rows, root / "manifest.parquet", {"data_root": str(root)})
    return path


@pytest.fixture
def web(monkeypatch):
    """A fake web server on 127.0.0.1 (tests/fakeweb.py) for the fetch tests."""
    from fakeweb import FakeWeb

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FakeWeb().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def torch_one_thread():
    """Two busy cores: one torch thread is several times faster than two fighting over them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
