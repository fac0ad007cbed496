"""The layout reads as the data flow: each stage is one room, imports only run down, and no module reaches for
another room's private names. Read from the source with ``ast`` (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import cxrcurate

PACKAGE = Path(cxrcurate.__file__).parent
# Rooms from the bottom of the data flow to the top; a room may import only rooms listed before it (and itself).
ROOMS = ["errors", "labels", "tables", "imageio", "manifest", "sample", "sources", "fetch", "fpcache", "build",
         "dedup", "stats", "splits", "splitcheck", "release", "preprocess", "datasets", "models", "bench", "audit",
         "report", "cli"]


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """``(imported module, imported name)`` for every ``from X import name`` inside cxrcurate."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("cxrcurate"):
                for alias in node.names:
                    yield target, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cxrcurate"):
                    yield alias.name, None


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "sample" in path.relative_to(PACKAGE).parts[:-1] and path.name != "__init__.py":
            continue
        src = _module(path)
        for target, name in _imports(path):
            if target == "cxrcurate" and name in ROOMS:  # `from .. import manifest`
                target = f"cxrcurate.{name}"
            yield path, src, target, name


def test_every_module_belongs_to_a_room():
    rooms = {_room(_module(p)) for p in PACKAGE.rglob("*.py")} - {None}
    assert rooms <= set(ROOMS), f"modules outside the known rooms: {rooms - set(ROOMS)}"


def test_imports_only_run_down():
    upward = []
    for _, src, target, _ in _edges():
        a, b = _room(src), _room(target)
        if a is None or b is None or a == b or target == "cxrcurate":
            continue
        if ROOMS.index(b) > ROOMS.index(a):
            upward.append(f"{src} imports {target}")
    assert not upward, "imports that run up the data flow:\n" + "\n".join(upward)


def test_no_private_name_crosses_a_room():
    crossing = [f"{src} imports {target}.{name}" for _, src, target, name in _edges()
                if name and name.startswith("_") and not name.startswith("__") and _room(src) != _room(target)]
    assert not crossing, "\n".join(crossing)


def test_no_two_modules_import_each_other():
    graph: dict[str, set[str]] = {}
    for _, src, target, _ in _edges():
        graph.setdefault(src, set()).add(target)
    mutual = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                     if a != b and a in graph.get(b, set()) and b not in ("cxrcurate",) and a != "cxrcurate"})
    assert not mutual, f"modules importing each other: {mutual}"


def test_dir_lists_the_public_api():
    names = dir(cxrcurate)
    for name in ("ManifestDataset", "make_split", "leakage_report", "dedup_manifest", "CxrcurateError",
                 "build_manifest", "read_manifest", "to_hf_dataset", "run_bench", "fetch_source"):
        assert name in names and getattr(cxrcurate, name) is not None
