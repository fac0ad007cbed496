"""What every run artefact shares, without naming any file (``record`` names them): the run's identity (a digest of
its inputs), atomic writes with one file mode, and JSON documents with a schema, a version and the run id."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from hashlib import sha256
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import CxrcurateError, MissingFileError, SchemaError
from ..fetch.download import file_sha256

SCHEMA = "cxrcurate.run"
VERSION = "1.0"


class RunFolderError(CxrcurateError):
    """A run folder is missing, holds another run, or an artefact belongs to another run."""


def code_version() -> dict[str, str | None]:
    """cxrcurate's version and, in a git checkout, its commit (None elsewhere)."""
    commit = None
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5, check=False)
        commit = done.stdout.strip() or None if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cxrcurate": __version__, "git": commit}


def identity(manifest: str | os.PathLike, options: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs of a run and their digest: the manifest file's sha256, the options (``resume`` aside: it does not
    change what a run computes) and the code version."""
    opts = {k: v for k, v in options.items() if k != "resume"}
    inputs = {"manifest": str(Path(manifest).resolve()), "manifest_sha256": file_sha256(manifest),
              "options": json.loads(json.dumps(opts, default=str)), "code": code_version()}
    hashed = {k: inputs[k] for k in ("manifest_sha256", "options", "code")}
    return {"inputs": inputs, "digest": sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (temporary file + rename), with the same file mode as every other artefact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def settle(path: Path) -> Path:
    """Give a file written by another library (safetensors writes 0600) the mode every artefact has."""
    os.chmod(path, 0o666 & ~_umask())
    return path


def _clean(value: Any) -> Any:
    """Strict JSON data: numpy values as Python ones, NaN and infinities as null."""
    import math

    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def write_json(path: Path, kind: str, doc: Mapping[str, Any], run_id: str | None) -> Path:
    """A JSON artefact with ``schema`` (``cxrcurate.run.<kind>``), ``version`` and ``run_id`` first."""
    head = {"schema": f"{SCHEMA}.{kind}", "version": VERSION, "run_id": run_id}
    return write_text(path, json.dumps(_clean({**head, **doc}), indent=2, allow_nan=False) + "\n")


def read_json(path: Path, kind: str, run_id: str | None = None) -> dict[str, Any]:
    """A JSON artefact, checked for its schema, major version and (when given) run id.

    Raises:
        MissingFileError: no such file.
        SchemaError: not JSON, another artefact, or another major version.
        RunFolderError: it belongs to another run.
    """
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file; is this a `cxrcurate bench` run folder?")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc}); the file was edited or damaged: run again") from exc
    if doc.get("schema") != f"{SCHEMA}.{kind}":
        raise SchemaError(f"{path}: not a {kind} artefact of a cxrcurate run (schema {doc.get('schema')!r}); it was "
                          "written by an older cxrcurate or by hand: run `cxrcurate bench` again")
    if str(doc.get("version", "")).split(".")[0] != VERSION.split(".")[0]:
        raise SchemaError(f"{path}: version {doc.get('version')} is not readable by this cxrcurate ({VERSION})")
    if run_id is not None and doc.get("run_id") != run_id:
        raise RunFolderError(f"{path} belongs to run {doc.get('run_id')}, not to {run_id} (the run folder's "
                             "record); it is stale: run the command that writes it again")
    return doc
