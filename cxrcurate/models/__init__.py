"""The COVID-CXNet model ladder: a registry of specs (plain data, no torch import) and builders (lazy).

``cxrcurate models`` lists it with the paper's figures (Haghanifar et al. 2020, Table 6: accuracy and COVID-19
F1 on their own, per-image split of their own data; not comparable with a patient- and duplicate-aware split).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnknownNameError, did_you_mean

CHEXNET_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
# The zero-shot probe: CheXNet's findings that a COVID-19 pneumonia shows (mean of their probabilities).
CHEXNET_PROBE = ("Pneumonia", "Consolidation", "Infiltration")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What a ladder rung is: architecture, input, classes, initialisation, and the paper's figures."""

    name: str
    description: str
    classes: tuple[str, ...]
    input_size: int = 224
    channels: str = "gray3"  # "gray3" (replicated) or "enhanced" (original/CLAHE/BEASF)
    lungs: bool = False
    init: str = "random"  # "random", "imagenet" or "chexnet"
    backbone: str | None = None
    head: str = "linear"  # "linear", "cxnet" (FC 10 -> dropout 0.2 -> out), "base"
    hierarchical: bool = False
    zero_shot: bool = False
    label_smoothing: float = 0.0
    match_histogram: bool = False  # match every image's histogram to one reference first (the paper's multiclass step)
    trainable: str = "all"  # "all" (full fine-tune) or "last_block" (backbone frozen but its last block, as the paper)
    paper: dict[str, float] = field(default_factory=dict)
    origin: str = "Haghanifar et al. 2020, arXiv:2006.13807"


BINARY = ("non-covid", "covid19")
THREE = ("normal", "pneumonia", "covid19")

LADDER: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("base-cnn", "5 conv layers (32 filters 3x3, stride 2, ReLU, no BN/pooling), FC 10 -> FC 10 -> 1",
              BINARY, input_size=320, head="base", paper={"accuracy": 0.9868, "covid_f1": 0.94}),
    ModelSpec("densenet121-imagenet", "timm DenseNet-121, ImageNet init, fine-tuned", BINARY, init="imagenet",
              backbone="densenet121"),
    ModelSpec("resnet50-imagenet", "timm ResNet-50, ImageNet init, fine-tuned", BINARY, init="imagenet",
              backbone="resnet50"),
    ModelSpec("densenet121-imagenet-frozen", "timm DenseNet-121, ImageNet init, backbone frozen but its last dense "
              "block (as the paper trained its ImageNet rungs)", BINARY, init="imagenet", backbone="densenet121",
              trainable="last_block"),
    ModelSpec("resnet50-imagenet-frozen", "timm ResNet-50, ImageNet init, backbone frozen but layer4 (as the paper "
              "trained its ImageNet rungs)", BINARY, init="imagenet", backbone="resnet50", trainable="last_block"),
    ModelSpec("chexnet", "DenseNet-121 with the 14 ChestX-ray14 outputs, zero-shot: mean of P(" +
              ", ".join(CHEXNET_PROBE) + ") scores COVID-19", BINARY, init="chexnet", backbone="densenet121",
              zero_shot=True),
    ModelSpec("cxnet", "COVID-CXNet: CheXNet backbone, global pool, FC 10 (ReLU) -> dropout 0.2 -> sigmoid; "
              "BCE with label smoothing 0.1; original/CLAHE/BEASF input, 320 px", BINARY, input_size=320,
              channels="enhanced", init="chexnet", backbone="densenet121", head="cxnet", label_smoothing=0.1,
              paper={"accuracy": 0.9904, "covid_f1": 0.96}),
    ModelSpec("cxnet-lungs", "cxnet on lung-cropped input (U-Net)", BINARY, input_size=320, channels="enhanced",
              lungs=True, init="chexnet", backbone="densenet121", head="cxnet", label_smoothing=0.1,
              paper={"accuracy": 0.9862, "covid_f1": 0.94}),
    ModelSpec("cxnet-3class", "cxnet backbone, 3-way softmax: normal / non-COVID pneumonia / COVID-19; histograms "
              "matched to one reference first", THREE, input_size=320, channels="enhanced", init="chexnet",
              backbone="densenet121", head="cxnet", label_smoothing=0.1, match_histogram=True,
              paper={"accuracy": 0.8104, "covid_f1": 0.85}),
    ModelSpec("cxnet-hier", "hierarchical hard cascade: stage 1 normal vs pneumonia; stage 2 COVID-19 vs other "
              "pneumonia decides the images stage 1 calls pneumonia; histograms matched to one reference first",
              THREE, input_size=320, channels="enhanced", init="chexnet", backbone="densenet121", head="cxnet",
              hierarchical=True, label_smoothing=0.1, match_histogram=True,
              paper={"accuracy": 0.8721, "covid_f1": 0.92}),
]}


def models_text(width: int = 118) -> str:
    """The ladder as ``cxrcurate models`` prints it: one line per rung with the paper's figures, then what each is.

    Plain data, no torch import, so the command answers at once; no line is wider than ``width``.
    """
    import textwrap

    head = ("name", "classes", "input", "init", "paper acc", "paper F1")
    rows = [(s.name, "/".join(s.classes), f"{s.input_size}px {s.channels}" + (" lungs" if s.lungs else ""), s.init,
             str(s.paper.get("accuracy", "-")), str(s.paper.get("covid_f1", "-"))) for s in LADDER.values()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(f"{{:{'<' if i < 4 else '>'}{w}}}" for i, w in enumerate(widths)).format
    out = [line(*head), *(line(*r) for r in rows), "",
           "paper acc / paper F1: accuracy and COVID-19 F1 in Haghanifar et al. 2020, Table 6 (their per-image split "
           "of their own data; not comparable with a patient- and duplicate-aware split)", ""]
    out = [textwrap.fill(x, width) if len(x) > width else x for x in out]
    for s in LADDER.values():
        out.append(textwrap.fill(f"{s.name}: {s.description}", width, subsequent_indent="    "))
    return "\n".join(out)


def get_spec(name: str) -> ModelSpec:
    """The spec of a ladder model.

    Raises:
        CxrcurateError: unknown name, with "did you mean ...?".
    """
    if name in LADDER:
        return LADDER[name]
    raise UnknownNameError(did_you_mean(name, LADDER, "model"))
