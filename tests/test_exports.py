"""The Python API other projects use: Hugging Face export and the torch Dataset."""

import pytest

from cxrcurate.errors import CxrcurateError
from cxrcurate.manifest import read_manifest


def test_to_hf_dataset_has_images_and_all_columns(sample_build):
    import cxrcurate

    ds = cxrcurate.to_hf_dataset(sample_build.manifest)
    assert ds.num_rows == 30
    row = ds[0]
    assert row["image"].size == (row["width"], row["height"])
    assert set(read_manifest(sample_build.manifest).columns) <= set(ds.column_names)
    assert ds.features["image"].__class__.__name__ == "Image"


def test_to_hf_dataset_errors(sample_build, tmp_path):
    import cxrcurate

    with pytest.raises(CxrcurateError, match="not a folder"):
        cxrcurate.to_hf_dataset(sample_build.manifest, data_root=tmp_path / "nowhere")
    with pytest.raises(CxrcurateError, match="missing under"):
        cxrcurate.to_hf_dataset(sample_build.manifest, data_root=tmp_path)


def test_torch_dataset_yields_image_target_id(sample_build):
    torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")
    from cxrcurate import ManifestDataset

    ds = ManifestDataset(sample_build.manifest, classes=("normal", "covid19", "pneumonia"))
    m = read_manifest(sample_build.manifest)
    assert len(ds) == m["label"].isin(["normal", "covid19", "pneumonia"]).sum()
    image, label, image_id = ds[0]
    record = ds.record(0)
    assert image_id == record["image_id"]
    assert image.dtype == torch.float32 and image.shape == (1, record["height"], record["width"])
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert ds.classes[label] == record["label"]
    resize = lambda x: torch.nn.functional.interpolate(x[None], size=(64, 64))[0]  # noqa: E731
    loader = torch.utils.data.DataLoader(ManifestDataset(sample_build.manifest, transform=resize), batch_size=4,
                                         collate_fn=ManifestDataset.collate)
    images, labels, ids = next(iter(loader))
    assert images.shape == (4, 1, 64, 64) and labels.shape == (4,) and len(ids) == 4
    with pytest.raises(CxrcurateError, match="no rows"):
        ManifestDataset(sample_build.manifest, split="test")
    with pytest.raises(CxrcurateError, match="unknown class"):
        ManifestDataset(sample_build.manifest, classes=("covid",))
