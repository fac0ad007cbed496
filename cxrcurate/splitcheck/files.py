"""Read a split made elsewhere: COVIDx label files, CSV/TSV tables, a saved Hugging Face DatasetDict, or a folder of
per-split Parquet files, into one table of *entries* (one per image named, with the side it was put on).

Why: most people meet their data through someone else's split, and checking it for leaks starts by reading it in
whatever shape it was published. Every shape gives the same columns (``ENTRY_COLUMNS``); ``splitcheck.match`` then maps
entries to manifest rows. Nothing is lost: a line that cannot be read becomes an entry with ``problem`` set.

COVIDx label files (lindawangg/COVID-Net; every shape seen in its history, see tests/fixtures/splitfiles):
``PATIENT FILE LABEL`` (COVIDx 1-2), ``PATIENT FILE LABEL SOURCE`` (COVIDx 3-9, CXR-3), five fields where the
patient id holds a space (``COVID 1 COVID(1).png COVID-19 sirm``, COVIDx 7A-8B), ``PATIENT FILE N LABEL`` (the
stratification lists), and trailing blanks. A file name may hold spaces too (the Kaggle COVID-19 Radiography
Database names its files ``COVID (1).png``): the split point between patient id and file name is then ambiguous,
so every candidate file name is kept (``names``, shortest first) and the matcher takes the one the manifest knows.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CxrcurateError, UsageError

FORMATS = ("auto", "covidx", "csv", "hf")
ENTRY_COLUMNS = ("side", "name", "names", "source", "patient", "label", "sha256", "origin", "problem")
# Label words of the COVIDx files (all versions) and of common split tables; a field holding one of them is a label.
LABEL_WORDS = frozenset({"covid-19", "covid19", "covid", "normal", "pneumonia", "positive", "negative", "viral",
                         "bacteria", "non-covid"})
IMAGE_EXT = re.compile(r"\.(png|jpe?g|jfif|webp|bmp|gif|tiff?|dcm)$", re.IGNORECASE)
SIDE_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
              "test": "test", "testing": "test"}
_NAME_COLUMNS = ("path", "image_path", "filepath", "file_path", "file", "filename", "file_name", "image_file",
                 "imagename", "image_name", "name")
_SIDE_COLUMNS = ("split", "side", "subset", "set", "partition")
_SHA_COLUMNS = ("sha256", "file_sha256", "original_sha256")
_PATIENT_COLUMNS = ("patient_id", "patient", "patientid", "subject_id")


def side_word(value: Any, where: str) -> str:
    """``train``/``val``/``test`` for the usual spellings; other words are kept as they are (a fold name)."""
    text = str(value).strip()
    if not text:
        raise UsageError(f"{where}: an empty side name; use train, val or test")
    return SIDE_WORDS.get(text.lower(), text)


def side_from_name(path: Path) -> str | None:
    """The side a file's name announces (``train_COVIDx9A.txt`` -> train), or None."""
    found = {SIDE_WORDS[w] for w in re.split(r"[^a-z]+", path.stem.lower()) if w in SIDE_WORDS}
    return found.pop() if len(found) == 1 else None


def _entry(side: str | None, names: list[str], origin: str, source: str | None = None, patient: str | None = None,
           label: str | None = None, sha256: str | None = None, problem: str | None = None) -> dict[str, Any]:
    return {"side": side, "name": names[0] if names else None, "names": list(names), "source": source,
            "patient": patient, "label": label, "sha256": sha256, "origin": origin, "problem": problem}


def parse_covidx_line(line: str) -> dict[str, Any] | str:
    """The fields of one COVIDx line (``names``, ``patient``, ``label``, ``source``), or why it cannot be read."""
    tokens = line.split()
    if len(tokens) < 2:
        return "fewer than 2 fields"
    if tokens[-1].lower() in LABEL_WORDS:
        label, source, body = tokens[-1], None, tokens[:-1]
    elif len(tokens) >= 3 and tokens[-2].lower() in LABEL_WORDS:
        label, source, body = tokens[-2], tokens[-1], tokens[:-2]
    else:
        return f"no label word ({', '.join(sorted(LABEL_WORDS))}) in the last two fields"
    ends = [i for i, t in enumerate(body) if IMAGE_EXT.search(t)]
    last = ends[-1] if ends else len(body) - 1  # trailing fields after the file name (a stratum number) are ignored
    if last == 0:
        return {"names": [body[0]], "patient": None, "label": label, "source": source}
    # the file name is body[k..last] for some k >= 1; shortest first (the COVIDx convention), longer ones kept
    names = [" ".join(body[k:last + 1]) for k in range(last, 0, -1)]
    patients = [" ".join(body[:k]) for k in range(last, 0, -1)]
    return {"names": names, "patient": patients[0], "label": label, "source": source}


def read_covidx(path: str | os.PathLike, side: str | None = None) -> pd.DataFrame:
    """Entries of one COVIDx label file (any published shape); ``side`` defaults to the one its name says.

    Raises:
        UsageError: no side given and the file name does not say train, val or test.
        CxrcurateError: the file cannot be read as text.
    """
    path = Path(path)
    side = side or side_from_name(path)
    if side is None:
        raise UsageError(f"{path.name}: say which side it holds, e.g. --split-file train={path}")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise CxrcurateError(f"{path}: cannot read it as a text label file ({exc})") from exc
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        got = parse_covidx_line(line)
        origin = f"{path.name}:{n}"
        if isinstance(got, str):
            rows.append(_entry(side, [], origin, problem=f"unreadable line ({got}): {line.strip()[:80]!r}"))
        else:
            rows.append(_entry(side, got["names"], origin, got["source"], got["patient"], got["label"]))
    return pd.DataFrame(rows, columns=list(ENTRY_COLUMNS))


def _pick(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


def _image_struct(value: Any) -> tuple[str | None, str | None]:
    """(file name, sha256 of the bytes) of an HF ``Image`` value stored undecoded (``{"bytes", "path"}``)."""
    import hashlib

    if not isinstance(value, dict):
        return None, None
    data, name = value.get("bytes"), value.get("path")
    sha = hashlib.sha256(data).hexdigest() if isinstance(data, bytes | bytearray) and data else None
    return (str(name) if name else None), sha


def entries_from_frame(df: pd.DataFrame, where: str, side: str | None = None) -> pd.DataFrame:
    """Entries of a table naming a path or file name (optionally source, patient, label, sha256) and a side.

    Raises:
        UsageError: no column names a file and none holds image bytes, or there is no side column and no side.
    """
    cols = [str(c) for c in df.columns]
    name_col, side_col = _pick(cols, _NAME_COLUMNS), _pick(cols, _SIDE_COLUMNS)
    sha_col, pid_col = _pick(cols, _SHA_COLUMNS), _pick(cols, _PATIENT_COLUMNS)
    src_col, label_col = _pick(cols, ("source", "dataset", "collection")), _pick(cols, ("label", "finding"))
    image_col = next((c for c in cols if len(df) and isinstance(df[c].iloc[0], dict)
                      and {"bytes", "path"} <= set(df[c].iloc[0])), None)
    if name_col is None and image_col is None:
        raise UsageError(f"{where}: no column naming the image ({', '.join(_NAME_COLUMNS)}) and no image column; "
                         f"columns are {cols}")
    if side is None and side_col is None:
        raise UsageError(f"{where}: no split column ({', '.join(_SIDE_COLUMNS)}); give the side as SIDE=FILE")
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        origin = f"{where}#{i + 1}"
        img_name, img_sha = _image_struct(rec.get(image_col)) if image_col else (None, None)
        name = rec.get(name_col) if name_col else img_name
        sha = rec.get(sha_col) if sha_col else img_sha
        here = side if side is not None else rec.get(side_col)
        problem = None
        if pd.isna(here) if not isinstance(here, str) else not here.strip():
            problem, here = f"no side in column {side_col!r}", None
        else:
            here = side_word(here, origin)
        names = [str(name).strip()] if isinstance(name, str) and name.strip() else []
        if not names and not isinstance(sha, str):
            problem = problem or "names no file and carries no sha256"

        def text(col: str | None, rec: dict[str, Any] = rec) -> str | None:
            v = rec.get(col) if col else None
            return None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
        rows.append(_entry(here, names, origin, text(src_col), text(pid_col), text(label_col),
                           sha.lower() if isinstance(sha, str) else None, problem))
    return pd.DataFrame(rows, columns=list(ENTRY_COLUMNS))


def read_table_file(path: str | os.PathLike, side: str | None = None) -> pd.DataFrame:
    """Entries of a CSV/TSV (separator sniffed) or a Parquet file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else None, engine="python", dtype=str,
                             keep_default_na=False, na_values=[""])
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many kinds; all mean "not this format"
        raise CxrcurateError(f"{path}: cannot read it as a table ({exc}); is --split-format right?") from exc
    return entries_from_frame(df, path.name, side)


def read_hf(path: str | os.PathLike, side: str | None = None) -> pd.DataFrame:
    """Entries of a saved ``DatasetDict`` (``save_to_disk``) or of a folder of per-split Parquet files
    (``train.parquet``, ``data/test-00000-of-00001.parquet``): one side per split; image bytes are hashed, not
    decoded."""
    path = Path(path)
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        try:
            import datasets
        except ImportError as exc:
            raise CxrcurateError("reading a saved DatasetDict needs the datasets package: pip install "
                                 "cxrcurate[hf]") from exc
        loaded = datasets.load_from_disk(str(path))
        parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(side or "", loaded)]
        out = []
        for name, ds in parts:
            for col, feat in ds.features.items():
                if isinstance(feat, datasets.Image):
                    ds = ds.cast_column(col, datasets.Image(decode=False))
            out.append(entries_from_frame(ds.to_pandas(), f"{path.name}/{name}", side_word(side or name, name)))
        return pd.concat(out, ignore_index=True)
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not files:
        raise UsageError(f"{path}: neither a saved DatasetDict (dataset_dict.json) nor a folder of per-split "
                         "Parquet files (train.parquet, test.parquet, ...)")
    out = []
    for f in files:
        here = side or side_from_name(Path(f.name.split("-")[0]))
        if here is None:
            raise UsageError(f"{f}: its name does not say which split it holds (train, val, test)")
        out.append(entries_from_frame(pd.read_parquet(f), str(f.relative_to(path)), here))
    return pd.concat(out, ignore_index=True)


def detect_format(path: Path) -> str:
    """``covidx``, ``csv`` or ``hf`` from the path: a folder is ``hf``, a ``.txt`` whose first line has neither
    commas nor tabs is ``covidx``, anything else a table."""
    if path.is_dir():
        return "hf"
    if path.suffix.lower() == ".txt":
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            first = fh.readline()
        return "csv" if ("," in first or "\t" in first) else "covidx"
    return "csv"


def read_split_files(specs: list[str], fmt: str = "auto") -> pd.DataFrame:
    """Entries of every ``SIDE=FILE`` or ``FILE`` spec (the CLI's ``--split-file``), in order.

    Raises:
        UsageError: an unknown format, a missing file, or a file whose side cannot be told.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--split-format {fmt!r}: choose from {', '.join(FORMATS)}")
    out = []
    for spec in specs:
        side, _, file = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        side_name = side_word(side, f"--split-file {spec}") if side else None
        path = Path(file)
        if not path.exists():
            raise UsageError(f"--split-file {spec}: {path} does not exist")
        kind = detect_format(path) if fmt == "auto" else fmt
        reader = {"covidx": read_covidx, "csv": read_table_file, "hf": read_hf}[kind]
        entries = reader(path, side_name)
        entries["file"] = str(path)
        out.append(entries)
    if not out:
        raise UsageError("give at least one --split-file SIDE=FILE")
    return pd.concat(out, ignore_index=True)


def entries_summary(entries: pd.DataFrame) -> dict[str, Any]:
    """Entries per side and per source tag (JSON-ready), for the report's header."""
    return {"entries": int(len(entries)),
            "per_side": {str(k): int(v) for k, v in entries["side"].value_counts(dropna=False).items()},
            "per_source": json.loads(entries["source"].fillna("(no tag)").value_counts().to_json())}
