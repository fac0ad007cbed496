"""Load checkpoints people actually have into the ladder's networks, safely and with a report.

Supported: safetensors files; ``torch.save`` state dicts (plain, or under ``state_dict``/``model``); the
public CheXNet-style DenseNet-121 checkpoints (a DataParallel ``module.`` prefix, a ``densenet121.`` wrapper,
the old torchvision key names ``norm.1``/``conv.1``, a 14-way ``classifier.0`` inside a Sequential). Files are
read with ``torch.load(weights_only=True)``; a checkpoint that needs arbitrary unpickling is refused unless
the caller passes ``trust=True`` (``--trust-checkpoint``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, CxrcurateError

log = logging.getLogger(__name__)
_OLD_DENSE = re.compile(r"\.(norm|relu|conv)\.([12])\.")


@dataclass
class LoadReport:
    """What a checkpoint load matched: keys missing in the file and keys the model did not use."""

    path: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def read_state_dict(path: str | os.PathLike, trust: bool = False) -> dict[str, Any]:
    """The tensors of a checkpoint file as a flat ``{key: tensor}`` dict.

    Raises:
        CheckpointError: missing file, a file that is not what its name says (a pickle named ``.safetensors``), a
            truncated or damaged file, or a pickle that needs ``trust=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - safetensors raises SafetensorError, OSError, ValueError ...
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc}). If it is a torch.save checkpoint, "
                                  "give it a .pt name (pickles are only read as plain tensors); if it was cut short, "
                                  "copy it again") from exc
    obj = torch_load(path, "cpu", trust)
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    tensors = {k: v for k, v in obj.items() if hasattr(v, "shape")}
    if not tensors:
        raise CxrcurateError(f"{path}: no tensors found; is this a model checkpoint?")
    return tensors


def torch_load(path: Path, device: Any = "cpu", trust: bool = False) -> Any:
    """``torch.load`` with tensors-only unpickling unless ``trust``; its many errors become one clear one.

    Raises:
        CheckpointError: a truncated, damaged or foreign file (whatever ``trust`` says), or a pickle that needs
            arbitrary unpickling while ``trust`` is False.
    """
    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError ... here
        if not _needs_unpickling(path, exc):
            raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated, damaged or another format: "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}); copy it again or "
                                  "re-save it") from exc
        if not trust:
            raise CheckpointError(f"{path}: this checkpoint needs unpickling arbitrary Python objects, which can run "
                                  "code. Re-save it as a state dict or safetensors, or pass --trust-checkpoint if you "
                                  "trust where it came from") from exc
    log.warning("%s: loading with full unpickling because trust=True", path)
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot be unpickled even with --trust-checkpoint ({type(exc).__name__}: "
                              f"{exc})") from exc


def _needs_unpickling(path: Path, exc: Exception) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a well-formed pickle (objects beyond tensors), as opposed
    to a truncated, damaged or foreign file."""
    text = str(exc)
    if "allowed global" in text or "Unsupported global" in text:
        return True
    with open(path, "rb") as fh:
        head = fh.read(2)
    return "Unsupported operand" in text and len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def map_densenet_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Rename CheXNet/torchvision DenseNet-121 keys to timm's ``densenet121`` names.

    ``module.densenet121.features.denseblock1.denselayer1.norm.1.weight`` ->
    ``features.denseblock1.denselayer1.norm1.weight``; ``...classifier.0.weight`` -> ``classifier.weight``.
    """
    out = {}
    for key, value in state.items():
        k = key
        for prefix in ("module.", "densenet121.", "model.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        k = _OLD_DENSE.sub(lambda m: f".{m.group(1)}{m.group(2)}.", k)
        k = re.sub(r"^classifier\.0\.", "classifier.", k)
        out[k] = value
    return out


def load_backbone(model: Any, state: dict[str, Any], path: str, min_share: float = 0.9) -> LoadReport:
    """Load matching tensors into ``model`` (shape-checked); refuse when under ``min_share`` of its keys match.

    Raises:
        CxrcurateError: the checkpoint does not fit this architecture.
    """
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    countable = [k for k in own if not k.endswith("num_batches_tracked")]
    share = sum(k in usable for k in countable) / max(1, len(countable))
    report = LoadReport(path, len(usable), missing=sorted(k for k in countable if k not in usable),
                        unexpected=sorted(k for k in state if k not in usable))
    if share < min_share:
        raise CxrcurateError(f"{path}: only {share:.0%} of the model's tensors found a match "
                             f"(e.g. missing {report.missing[:3]}, unexpected {report.unexpected[:3]}); "
                             "is it a DenseNet-121 / the right architecture?")
    model.load_state_dict(usable, strict=False)
    if report.missing or report.unexpected:
        log.info("%s: loaded %d tensors; missing %d %s; unexpected %d %s", path, report.loaded, len(report.missing),
                 report.missing[:5], len(report.unexpected), report.unexpected[:5])
    return report
