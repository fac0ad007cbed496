"""The run record: the one module that names, writes and reads every artefact of a ``cxrcurate bench`` run folder.

A run folder is a record of one run, written once by the bench and only read by audit, report, compare and
leakage. ``run.json`` holds its identity: a ``run_id`` (unique per execution) and a ``digest`` of its inputs (the
manifest's sha256, the options, the code version), so two folders made from the same inputs can be recognised and
a stale artefact cannot pass as this run's. Every JSON artefact carries ``schema``, ``version`` and ``run_id``;
every table is a ``cxrcurate.tables`` kind with ``run_id`` in its metadata.

Layout (file names appear in this module only; a test greps the package for them)::

    RUN/run.json            identity, inputs, status (running / complete)
    RUN/config.json         options, model spec, resolved preprocessing and model input config, environment
    RUN/metrics.json        summary over seeds (aggregate, per-seed figures and evidence); summary.md: as Markdown
    RUN/audit.json          written by ``cxrcurate audit`` (carries the run id it audited)
    RUN/audit-loso/SOURCE/  leave-one-source-out retrains (run folders of their own); report.html: by the report
    RUN/run-K/split.parquet         the task's rows with side and unit (kind ``run_split``)
    RUN/run-K/predictions.parquet   test probabilities and decisions (kind ``predictions``)
    RUN/run-K/history.parquet       training curve (kind ``history``)
    RUN/run-K/metrics.json          this seed's figures, CIs by unit, evidence
    RUN/run-K/weights.safetensors   weights only (stage1/stage2.safetensors for the cascade)
    RUN/run-K/last.pt               optimizer checkpoint, only while the run can be resumed
    RUN/run-K/attributions.parquet  per image and method lung shares (kind ``attributions``, by the audit)
    RUN/run-K/overlays.parquet      the attribution maps the report draws (kind ``overlays``, by the audit)
torch-free: the report and compare read a run without importing torch."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..errors import UsageError
from ..manifest import read_manifest, resolve_data_root
from ..tables import HOMES, TableKind, read_table, register, table_info, write_table
from .runmeta import SCHEMA, VERSION, RunFolderError, identity, read_json, settle, write_json, write_text  # noqa: I001

__all__ = ["RunFolderError", "RunRecord", "identity", "read_json", "settle", "write_json", "write_text"]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ the names (only here)
RECORD, CONFIG, METRICS, SUMMARY, AUDIT, REPORT = ("run.json", "config.json", "metrics.json", "summary.md",
                                                   "audit.json", "report.html")
LOSO_DIR, SELFTEST = "audit-loso", "selftest.json"
SEED_PREFIX = "run-"
SPLIT, PREDICTIONS, HISTORY = "split.parquet", "predictions.parquet", "history.parquet"
WEIGHTS, CHECKPOINT = "weights.safetensors", "last.pt"
ATTRIBUTIONS, OVERLAYS = "attributions.parquet", "overlays.parquet"
# artefacts a run folder of an older cxrcurate (before run.json) holds
LEGACY = (CONFIG, METRICS, "history.csv")

# Manifest columns the audit and the report join onto a run's split.
EXTRA_COLUMNS = ("path", "pediatric", "age_years", "mask_paths", "pixel_sha256", "file_sha256", "phash", "extra",
                 "keep")

# ------------------------------------------------------------------------------------------ the table kinds
_S = pa.string()
RUN_SPLIT = register(TableKind("run_split", "1.0", pa.schema([
    pa.field("image_id", _S, nullable=False), pa.field("source", _S), pa.field("label", _S),
    pa.field("target", pa.int64(), nullable=False), pa.field("split", _S, nullable=False),
    pa.field("patient_id", _S), pa.field("dup_group", _S), pa.field("unit", _S, nullable=False)])))
PREDICTIONS_KIND = register(TableKind("predictions", "1.0", pa.schema([
    pa.field("image_id", _S, nullable=False), pa.field("split", _S), pa.field("target", pa.int64(), nullable=False),
    pa.field("label", _S), pa.field("source", _S), pa.field("pediatric", pa.bool_()), pa.field("seed", pa.int64()),
    pa.field("pred", pa.int64(), nullable=False), pa.field("decided_by", pa.int64())]), decimals=None))
HISTORY_KIND = register(TableKind("history", "1.0", pa.schema([
    pa.field("epoch", pa.int64(), nullable=False), pa.field("train_loss", pa.float64()),
    pa.field("val_loss", pa.float64()), pa.field("lr", pa.float64()), pa.field("seconds", pa.float64()),
    pa.field("images_per_s", pa.float64()), pa.field("data_wait_share", pa.float64()),
    pa.field("stage", pa.int64())])))
ATTRIBUTIONS_KIND = register(TableKind("attributions", "1.0", pa.schema([
    pa.field("image_id", _S, nullable=False), pa.field("method", _S, nullable=False), pa.field("mask_kind", _S),
    pa.field("lung_share", pa.float64()), pa.field("pointing_hit", pa.float64()),
    pa.field("lung_fraction", pa.float64())])))
OVERLAYS_KIND = register(TableKind("overlays", "1.0", pa.schema([
    pa.field("image_id", _S, nullable=False), pa.field("method", _S, nullable=False),
    pa.field("target", pa.int64()), pa.field("predicted", pa.int64()), pa.field("confidence", pa.float64()),
    pa.field("correct", pa.bool_()), pa.field("source", _S), pa.field("height", pa.int64()),
    pa.field("width", pa.int64()), pa.field("image", pa.list_(pa.float32())), pa.field("map", pa.list_(pa.float32())),
    pa.field("lungs", pa.list_(pa.bool_()))]), decimals=None))
assert all(HOMES.get(k.name) == __name__ for k in (RUN_SPLIT, PREDICTIONS_KIND, HISTORY_KIND, ATTRIBUTIONS_KIND,
                                                    OVERLAYS_KIND)), "tables.HOMES must name this module"


# ------------------------------------------------------------------------------------------ identity


def default_out(model: str, digest: str, parent: str | os.PathLike = "runs", resume: bool = False) -> Path:
    """A new run folder ``runs/<model>-<digest[:8]>`` (``-2``, ``-3``, ... when that holds another run; with
    ``resume``, the first one: the interrupted run of the same inputs)."""
    base = Path(parent) / f"{model}-{digest[:8]}"
    path, n = base, 1
    while not resume and ((path / RECORD).exists() or any((path / name).exists() for name in LEGACY)):
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# ------------------------------------------------------------------------------------------ small writers


def check_free(out: str | os.PathLike | None, overwrite: bool = False, resume: bool = False) -> None:
    """Refuse early (before any data is built or read) an ``--out`` that holds another run.

    Raises:
        RunFolderError: ``out`` holds a run, and neither ``overwrite`` nor ``resume`` is given.
    """
    if out is None or overwrite or resume:
        return
    out = Path(out)
    if (out / RECORD).is_file() or any((out / n).exists() for n in LEGACY):
        RunRecord.create(out, {"digest": "", "inputs": {}})  # raises, naming the run it holds


# ------------------------------------------------------------------------------------------ the record


class RunRecord:
    """One run folder: its identity (``run.json``) and typed access to every artefact. Use ``open`` or ``create``."""

    def __init__(self, path: str | os.PathLike, record: dict[str, Any], manifest: str | None = None,
                 data_root: str | None = None) -> None:
        self.path = Path(path)
        self.record = record
        self.manifest_path = Path(manifest or record["inputs"]["manifest"])
        self.data_root_override = data_root

    # --- opening and creating

    @classmethod
    def open(cls, path: str | os.PathLike, manifest: str | os.PathLike | None = None,
             data_root: str | None = None) -> RunRecord:
        """A finished (or running) run folder.

        Raises:
            RunFolderError: not a run folder, or one written before run records (run the bench again).
        """
        path = Path(path)
        if not (path / RECORD).is_file():
            if any((path / n).exists() for n in LEGACY):
                raise RunFolderError(f"{path}: a run folder of an older cxrcurate (no {RECORD}: no run id, no "
                                     "digest of its inputs); run `cxrcurate bench` again to audit or report it")
            raise RunFolderError(f"{path}: no {RECORD}; is this a `cxrcurate bench` output folder?")
        record = read_json(path / RECORD, "record")
        return cls(path, record, str(manifest) if manifest else None, data_root)

    @classmethod
    def create(cls, out: str | os.PathLike, ident: Mapping[str, Any], overwrite: bool = False,
               resume: bool = False) -> RunRecord:
        """Claim ``out`` for a new run (or the interrupted one ``resume`` continues) and write ``run.json``.

        Raises:
            RunFolderError: ``out`` holds another run (and neither ``overwrite`` nor a matching ``resume``), or
                files that are no run.
        """
        out = Path(out)
        holds = (out / RECORD).is_file() or any((out / n).exists() for n in LEGACY)
        if holds and resume and (out / RECORD).is_file():
            old = read_json(out / RECORD, "record")
            if old.get("digest") != ident["digest"]:
                raise RunFolderError(f"--resume: {out} holds run {old.get('run_id')} made from other inputs "
                                     "(manifest, options or code differ); resume with the same options, or start a "
                                     "new run with another --out")
            if old.get("status") == "complete":
                raise RunFolderError(f"--resume: run {old.get('run_id')} in {out} is complete; nothing to resume")
            return cls(out, old)
        if holds and not overwrite:
            what = "an older cxrcurate's run"
            if (out / RECORD).is_file():
                old = json.loads((out / RECORD).read_text())
                what = f"run {old.get('run_id')} ({old.get('inputs', {}).get('options', {}).get('model')})"
            raise RunFolderError(f"{out} holds {what}; a run folder is never written into by another run. Give a "
                                 "new --out (or none: a new folder under runs/), or --overwrite to delete it first")
        if holds:
            clear(out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"run_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}", "digest": ident["digest"],
                  "inputs": ident["inputs"], "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(out / RECORD, "record", record, record["run_id"])
        return cls(out, {"schema": f"{SCHEMA}.record", "version": VERSION, **record})

    def finish(self, seconds: float) -> None:
        """Mark the run complete and drop what only resuming needs (optimizer checkpoints)."""
        for ckpt in self.path.rglob(CHECKPOINT):
            if LOSO_DIR not in ckpt.relative_to(self.path).parts:
                ckpt.unlink()
        self.record.update({"status": "complete", "seconds": round(seconds, 1)})
        write_json(self.path / RECORD, "record", {k: v for k, v in self.record.items()
                                                  if k not in ("schema", "version")}, self.run_id)

    # --- identity

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    @property
    def digest(self) -> str:
        return str(self.record["digest"])

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        return self.record.get("status") == "complete"

    # --- run-level documents

    def write_config(self, config: Mapping[str, Any]) -> Path:
        return write_json(self.path / CONFIG, "config", config, self.run_id)

    @cached_property
    def config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG, "config", self.run_id)

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        self.__dict__.pop("metrics", None)
        return write_json(self.path / METRICS, "metrics", metrics, self.run_id)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.path / METRICS, "metrics", self.run_id)

    def write_summary(self, text: str) -> Path:
        return write_text(self.path / SUMMARY, text)

    def write_audit(self, audit: Mapping[str, Any]) -> Path:
        return write_json(self.path / AUDIT, "audit", audit, self.run_id)

    def audit(self) -> dict[str, Any] | None:
        """``audit.json`` when it is this run's; None when there is none.

        Raises:
            RunFolderError: it audits another run (a stale file: audit again).
        """
        if not (self.path / AUDIT).is_file():
            return None
        return read_json(self.path / AUDIT, "audit", self.run_id)

    def report_path(self) -> Path:
        return self.path / REPORT

    def loso_dir(self, source: str) -> Path:
        """Where the audit's retrain without ``source`` goes."""
        return self.path / LOSO_DIR / source

    # --- seeds

    @property
    def seeds(self) -> list[int]:
        """Indices K of the ``run-K`` folders."""
        found = (p.name[len(SEED_PREFIX):] for p in self.path.glob(f"{SEED_PREFIX}*") if p.is_dir())
        return sorted(int(k) for k in found if k.isdigit())

    def seed_dir(self, k: int, create: bool = False) -> Path:
        """``run-K`` of this run.

        Raises:
            RunFolderError: there is no such folder (and ``create`` is False).
        """
        d = self.path / f"{SEED_PREFIX}{k}"
        if create:
            d.mkdir(parents=True, exist_ok=True)
        elif not d.is_dir():
            have = ", ".join(f"{SEED_PREFIX}{s}" for s in self.seeds) or "none"
            raise RunFolderError(f"{self.path}: no {SEED_PREFIX}{k}; this run has {have}")
        return d

    def weights_path(self, k: int, stage: int | None = None) -> Path:
        """The safetensors file of seed K (of one stage of the cascade)."""
        return self.seed_dir(k, create=True) / (WEIGHTS if stage is None else f"stage{stage}.safetensors")

    def train_dir(self, k: int, stage: int | None = None) -> Path:
        """Where training of seed K (one stage) keeps its resumable checkpoint."""
        d = self.seed_dir(k, create=True)
        return d if stage is None else d / f"stage{stage}"

    def _table(self, k: int, name: str, kind: str) -> pd.DataFrame:
        path = self.seed_dir(k) / name
        info = table_info(path)
        if info.get("run_id") != self.run_id:
            raise RunFolderError(f"{path} belongs to run {info.get('run_id')}, not to {self.run_id}; it is stale: "
                                 "run the command that writes it again")
        return read_table(path, kind)

    def _write_table(self, k: int, name: str, kind: str, df: pd.DataFrame) -> Path:
        return write_table(df, self.seed_dir(k, create=True) / name, kind, {"run_id": self.run_id, "seed_index": k})

    def write_seed(self, k: int, split: pd.DataFrame, predictions: pd.DataFrame, history: list[dict[str, Any]],
                   metrics: Mapping[str, Any]) -> None:
        """Everything the bench records for seed K (the split: its own columns only; the manifest has the rest)."""
        self._write_table(k, SPLIT, "run_split", split[list(RUN_SPLIT.schema.names)])
        self._write_table(k, PREDICTIONS, "predictions", predictions)
        self._write_table(k, HISTORY, "history", pd.DataFrame(history, columns=list(HISTORY_KIND.schema.names)
                                                              if not history else None))
        write_json(self.seed_dir(k) / METRICS, "seed_metrics", metrics, self.run_id)

    def split(self, k: int = 0) -> pd.DataFrame:
        """Seed K's rows with ``split`` and ``unit`` (the bench's units: the audit resamples these)."""
        return self._table(k, SPLIT, "run_split")

    def predictions(self, k: int = 0) -> pd.DataFrame:
        return self._table(k, PREDICTIONS, "predictions")

    def history(self, k: int = 0) -> pd.DataFrame:
        return self._table(k, HISTORY, "history")

    def seed_metrics(self, k: int = 0) -> dict[str, Any]:
        return read_json(self.seed_dir(k) / METRICS, "seed_metrics", self.run_id)

    def write_attributions(self, k: int, df: pd.DataFrame) -> Path:
        return self._write_table(k, ATTRIBUTIONS, "attributions", df)

    def attributions(self, k: int = 0) -> pd.DataFrame:
        return self._table(k, ATTRIBUTIONS, "attributions")

    def write_overlays(self, k: int, df: pd.DataFrame) -> Path:
        return self._write_table(k, OVERLAYS, "overlays", df)

    def overlays(self, k: int = 0) -> pd.DataFrame | None:
        """The maps the audit recorded for the report (None before an audit)."""
        if not (self.seed_dir(k) / OVERLAYS).is_file():
            return None
        return self._table(k, OVERLAYS, "overlays")

    # --- the data the run was made from

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """The manifest the run was made from."""
        return read_manifest(self.manifest_path)

    @cached_property
    def root(self) -> Path:
        """The data root the manifest's paths are relative to."""
        recorded = self.config.get("data_root") if (self.path / CONFIG).is_file() else None
        return resolve_data_root(self.manifest, self.data_root_override or recorded)

    def frame(self, k: int = 0) -> pd.DataFrame:
        """Seed K's split joined with the manifest columns the audit needs (``EXTRA_COLUMNS``).

        Raises:
            RunFolderError: the split names images the manifest does not hold.
        """
        cache = self.__dict__.setdefault("_frames", {})
        if k not in cache:
            split = self.split(k)
            extra = self.manifest.set_index("image_id")[[c for c in EXTRA_COLUMNS if c in self.manifest.columns]]
            lost = ~split["image_id"].isin(extra.index)
            if lost.any():
                raise RunFolderError(f"{int(lost.sum())} image(s) of run {self.run_id} are not in "
                                     f"{self.manifest_path}, e.g. {split.loc[lost, 'image_id'].iloc[0]}; pass the "
                                     "run's own manifest (--manifest)")
            cache[k] = split.join(extra, on="image_id")
        return cache[k]


def seed_name(k: int) -> str:
    """The name of seed K's folder (``run-K``), also the label every output gives that seed."""
    return f"{SEED_PREFIX}{k}"


def clear(folder: Path) -> None:
    """Delete a run folder's content (``--overwrite``); refuses a folder that holds no run."""
    if not ((folder / RECORD).is_file() or any((folder / n).exists() for n in LEGACY)):
        raise UsageError(f"{folder} holds no cxrcurate run; not deleting it")
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def seed_splits(path: str | os.PathLike) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(run-K, split table)`` of every seed of a run folder (for ``cxrcurate leakage --run``)."""
    rec = RunRecord.open(path)
    for k in rec.seeds:
        yield f"{SEED_PREFIX}{k}", rec.split(k)


def selftest_path(folder: str | os.PathLike) -> Path:
    """Where ``audit --self-test`` writes its result."""
    return Path(folder) / SELFTEST
