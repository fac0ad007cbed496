"""The ladder registry and the checkpoint loaders, on checkpoints written here in every supported format."""

import pytest

torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")

import timm  # noqa: E402
import torchvision  # noqa: E402

from cxrcurate.errors import CxrcurateError  # noqa: E402
from cxrcurate.models import LADDER, get_spec  # noqa: E402
from cxrcurate.models.ladder import BaseCNN, build_model, chexnet_backbone, save_weights  # noqa: E402
from cxrcurate.models.weights import map_densenet_keys, read_state_dict  # noqa: E402


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k in sb and not k.startswith("classifier"))


def _chexnet_style(net):
    """Keys as the public CheXNet re-implementations saved them: DataParallel + old torchvision names."""
    renamed = {}
    for k, v in net.state_dict().items():
        for new, old in (("norm1", "norm.1"), ("norm2", "norm.2"), ("conv1", "conv.1"), ("conv2", "conv.2"),
                         ("relu1", "relu.1"), ("classifier.", "classifier.0.")):
            k = k.replace(new, old)
        renamed[f"module.densenet121.{k}"] = v
    return renamed


def test_chexnet_checkpoint_formats_load_exactly(tmp_path):
    src = timm.create_model("densenet121", pretrained=False, num_classes=14)
    torch.save({"state_dict": _chexnet_style(src), "epoch": 7, "best_loss": 0.1}, tmp_path / "dp.pth.tar")
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    tv = torchvision.models.densenet121(num_classes=14)
    tv.load_state_dict({k: v for k, v in src.state_dict().items()})  # same names as timm
    torch.save(tv.state_dict(), tmp_path / "torchvision.pt")
    save_weights(src, tmp_path / "w.safetensors")
    for name in ("dp.pth.tar", "plain.pt", "torchvision.pt", "w.safetensors"):
        net, report = chexnet_backbone(str(tmp_path / name))
        assert _same(net, src), name
        assert torch.equal(net.state_dict()["classifier.weight"], src.state_dict()["classifier.weight"]), name
        assert not report.missing, (name, report.missing[:3])


def test_old_key_mapping():
    keys = map_densenet_keys({"module.densenet121.features.denseblock1.denselayer1.norm.1.weight": 1,
                              "module.densenet121.classifier.0.bias": 2})
    assert keys == {"features.denseblock1.denselayer1.norm1.weight": 1, "classifier.bias": 2}


def test_unsafe_pickle_is_refused_unless_trusted(tmp_path):
    import argparse

    path = tmp_path / "unsafe.pt"
    src = timm.create_model("densenet121", pretrained=False, num_classes=14)
    # an arbitrary object (training args, as many real checkpoints carry): loading it needs full unpickling
    torch.save({"state_dict": src.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CxrcurateError, match="--trust-checkpoint"):
        read_state_dict(path)
    assert "features.conv0.weight" in read_state_dict(path, trust=True)


def test_wrong_architecture_and_missing_files_are_explained(tmp_path):
    resnet = timm.create_model("resnet18", pretrained=False)
    torch.save(resnet.state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(CxrcurateError, match="only 0% of the model's tensors"):
        chexnet_backbone(str(tmp_path / "resnet.pt"))
    with pytest.raises(CxrcurateError, match="no such checkpoint"):
        read_state_dict(tmp_path / "nope.pt")
    with pytest.raises(CxrcurateError, match="needs a checkpoint"):
        build_model(get_spec("cxnet"))
    with pytest.raises(CxrcurateError, match="Did you mean 'cxnet-hier'"):
        get_spec("cxnet-hierarchical")


def test_imagenet_init_offline_gives_a_way_forward(tmp_path, monkeypatch):
    import socket
    import time

    attempts = []

    def refuse(self, address):  # noqa: ANN001 - record and refuse every connection, loopback included
        attempts.append(address)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the check must not rely on it
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    started = time.monotonic()
    with pytest.raises(CxrcurateError, match="--init random"):
        build_model(get_spec("resnet50-imagenet"))
    assert attempts == [] and time.monotonic() - started < 5
    src = timm.create_model("resnet50", pretrained=False, num_classes=0)
    torch.save(src.state_dict(), tmp_path / "in1k.pt")
    model = build_model(get_spec("resnet50-imagenet"), weights=tmp_path / "in1k.pt")
    assert _same(model.backbone, src)


@pytest.mark.parametrize("name", sorted(LADDER))
def test_every_rung_builds_and_runs(name, tmp_path):
    spec = get_spec(name)
    weights = None
    if spec.init == "chexnet":
        weights = tmp_path / "c.safetensors"
        save_weights(timm.create_model("densenet121", pretrained=False, num_classes=14), weights)
    model = build_model(spec, init="chexnet" if weights else "random", weights=weights, input_size=64)
    out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 1 if len(spec.classes) == 2 else 3)


def test_base_cnn_is_the_papers_shape():
    net = BaseCNN(1, input_size=320)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(c.out_channels == 32 and c.kernel_size == (3, 3) for c in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.MaxPool2d) for m in net.modules())
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [10, 10, 1]


def test_imagenet_init_uses_weights_already_in_the_hub_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from cxrcurate.models.ladder import cached_imagenet_weights

    cfg = timm.models.get_pretrained_cfg("densenet121")
    hub = tmp_path / "hf" / "hub"
    repo = hub / f"models--{cfg.hf_hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    src = timm.create_model("densenet121", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(snap / "model.safetensors"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert cached_imagenet_weights("densenet121") == snap / "model.safetensors"
    model = build_model(get_spec("densenet121-imagenet"))
    assert _same(model.backbone, src)
