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
    """The shipped sample built once per session (single process, no progress bar)."""
    from cxrcurate.build import build_manifest
    from cxrcurate.sample import sample_sources

    out = tmp_path_factory.mktemp("sample")
    return build_manifest(sample_sources(), out, workers=1, progress=False)
