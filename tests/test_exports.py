"""The Python API other projects use: Hugging Face export and the torch Dataset."""

from pathlib import Path

import pytest

from cxrcurate.errors import CxrcurateError
from cxrcurate.manifest import read_manifest


def test_to_hf_dataset_has_images_and_all_columns(sample_build):
    import cxrcurate

    with pytest.warns(UserWarning, match="train_test_split.*not patients"):  # the sample has no split
        dd = cxrcurate.to_hf_dataset(sample_build.manifest)
    assert list(dd) == ["all"]
    ds = dd["all"]
    assert ds.num_rows == 30
    row = ds[0]
    assert row["image"].size == (row["width"], row["height"])
    assert set(read_manifest(sample_build.manifest).columns) <= set(ds.column_names)
    assert ds.features["image"].__class__.__name__ == "Image"
    assert ds.features["label"].names == ["normal", "covid19", "pneumonia", "other", "unknown"]
    labels = read_manifest(sample_build.manifest).set_index("image_id")["label"]
    assert ds.features["label"].int2str(row["label"]) == labels[row["image_id"]]
    assert '"data_root"' in ds.info.description and "CC BY" in ds.info.license  # provenance travels with it


def _deduplicated_split(sample_build, tmp_path):
    """The sample with one copy marked not kept and a split, as dedup and split would leave it."""
    import cxrcurate

    df = read_manifest(sample_build.manifest)
    df = cxrcurate.make_split(df, test=0.3, val=0.2, seed=0)
    df["dup_group"] = df["image_id"]
    df.loc[df.index[0], "keep"], df.loc[df.index[1:], "keep"] = False, True
    path = Path(sample_build.manifest).parent / f"split-{tmp_path.name}.parquet"  # in its data root, as a user keeps it
    cxrcurate.write_manifest(df, path, info=df.attrs["cxrcurate"])
    return df, path


def test_to_hf_dataset_is_a_dataset_dict_by_the_manifest_split_of_kept_copies(sample_build, tmp_path):
    import cxrcurate

    df, path = _deduplicated_split(sample_build, tmp_path)
    dd = cxrcurate.to_hf_dataset(path, classes=("normal", "covid19", "pneumonia"))
    kept = df[df["keep"] & df["label"].isin(["normal", "covid19", "pneumonia"])]
    assert set(dd) == set(kept["split"])
    for side, ds in dd.items():
        assert sorted(ds["image_id"]) == sorted(kept.loc[kept["split"] == side, "image_id"])
        assert ds.features["label"].names == ["normal", "covid19", "pneumonia"]
    assert df["image_id"].iloc[0] not in {i for ds in dd.values() for i in ds["image_id"]}  # the copy not kept
    every = cxrcurate.to_hf_dataset(path, keep_only=False, split="test")  # one split: a Dataset
    assert every.num_rows == (df["split"] == "test").sum()
    # ManifestDataset serves the very same rows
    torch_ds = cxrcurate.ManifestDataset(path, split="train")
    assert sorted(torch_ds.image_ids) == sorted(dd["train"]["image_id"])


def test_to_hf_dataset_errors(sample_build, tmp_path):
    import cxrcurate

    with pytest.raises(CxrcurateError, match="not a folder"):
        cxrcurate.to_hf_dataset(sample_build.manifest, data_root=tmp_path / "nowhere")
    with pytest.raises(CxrcurateError, match="missing under"):
        cxrcurate.to_hf_dataset(sample_build.manifest, data_root=tmp_path)


def test_torch_dataset_yields_image_target_id(sample_build):
    torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")
    from cxrcurate import ManifestDataset

    ds = ManifestDataset(sample_build.manifest, classes=("normal", "covid19", "pneumonia"), size=None)
    m = read_manifest(sample_build.manifest)
    assert len(ds) == m["label"].isin(["normal", "covid19", "pneumonia"]).sum()
    image, label, image_id = ds[0]
    record = ds.record(0)
    assert image_id == record["image_id"]
    assert image.dtype == torch.float32 and image.shape == (1, record["height"], record["width"])
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert ds.classes[label] == record["label"]
    resize = lambda x: torch.nn.functional.interpolate(x[None], size=(64, 64))[0]  # noqa: E731
    loader = torch.utils.data.DataLoader(ManifestDataset(sample_build.manifest, size=None, transform=resize),
                                         batch_size=4, collate_fn=ManifestDataset.collate)
    images, labels, ids = next(iter(loader))
    assert images.shape == (4, 1, 64, 64) and labels.shape == (4,) and len(ids) == 4
    # by default the items have one size, so the default DataLoader batches them (the sample's sizes differ)
    assert m["width"].nunique() > 1
    images, labels, ids = next(iter(torch.utils.data.DataLoader(ManifestDataset(sample_build.manifest), batch_size=8)))
    assert images.shape == (8, 1, 224, 224) and len(ids) == 8
    with pytest.raises(CxrcurateError, match="no rows"):
        ManifestDataset(sample_build.manifest, split="test")
    with pytest.raises(CxrcurateError, match="unknown class"):
        ManifestDataset(sample_build.manifest, classes=("covid",))
