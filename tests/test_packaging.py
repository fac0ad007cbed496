"""Packaging a user can live with: ranges in pyproject.toml, the tested pins in a constraints file the set-up
script uses, a typed package, a changelog."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return {r.name: r for r in reqs}


def test_torch_is_a_range_and_the_tested_pins_sit_inside_it():
    reqs = _requirements()
    pins = {}
    for line in (ROOT / "scripts" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            r = Requirement(line)
            pins[r.name] = Version(next(iter(r.specifier)).version)
    assert set(pins) >= {"torch", "torchvision"}
    for name, version in pins.items():
        spec = reqs[name].specifier
        assert not any(s.operator == "==" for s in spec), f"{name} is pinned exactly in pyproject.toml: {spec}"
        assert spec.contains(version), f"the tested {name} {version} is outside pyproject's {spec}"
        assert spec.contains("2.4.0" if name == "torch" else "0.19.0")  # an older CUDA build is accepted


def test_setup_installs_with_the_constraints():
    assert "-c scripts/constraints.txt" in (ROOT / "scripts" / "setup.sh").read_text()


def test_the_package_is_typed_and_has_a_changelog():
    assert (ROOT / "cxrcurate" / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cxrcurate"]
    assert "py.typed" in data
    assert "## 0.1.0" in (ROOT / "CHANGELOG.md").read_text()
