"""Packing to TFRecord shards and reading them back like any dataset folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segnet_tf.data import (
    CAMVID,
    DatasetError,
    make_dataset,
    open_dataset,
    pack_dataset,
    synthetic_dataset,
    validate,
)
from segnet_tf.data.records import RecordSample

SIZE = (48, 64)


@pytest.fixture(scope="module")
def scenes():
    return synthetic_dataset(train=5, val=2, size=SIZE, seed=4)


@pytest.fixture(scope="module")
def packed(scenes, tmp_path_factory):
    return pack_dataset(scenes, tmp_path_factory.mktemp("packed"), shards=2, quality=95)


def test_manifest_and_shards(packed):
    manifest = json.loads((packed / "dataset.json").read_text())
    assert manifest["config"] == CAMVID.to_dict()
    train = manifest["splits"]["train"]
    assert [s["count"] for s in train["shards"]] == [2, 3]
    assert sorted(p.name for p in packed.glob("*.tfrecord")) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
        "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord",
    ]


def test_round_trip_labels_exact_images_within_jpeg_tolerance(scenes, packed):
    ds = open_dataset(packed)
    assert ds.config == CAMVID and ds.counts == {"train": 5, "val": 2}
    for split in ("train", "val"):
        for original, record in zip(scenes.split(split), ds.split(split), strict=True):
            assert isinstance(record, RecordSample) and record.name == original.name
            image, label = original.load(CAMVID)
            image2, label2 = record.load(CAMVID)
            np.testing.assert_array_equal(label2, label)
            np.testing.assert_array_equal(record.load_label(CAMVID), label)
            err = np.abs(image2.astype(int) - image.astype(int))
            # JPEG 95 smooths the scenes' sensor noise; real frames: see the CamVid test
            assert err.mean() < 4.0 and np.percentile(err, 99) <= 16
    assert validate(ds) == 7


def test_png_packing_is_lossless(scenes, tmp_path):
    ds = open_dataset(pack_dataset(scenes, tmp_path, quality=None, splits=["val"]))
    assert ds.counts == {"val": 2}
    for original, record in zip(scenes.split("val"), ds.split("val"), strict=True):
        for a, b in zip(original.load(CAMVID), record.load(CAMVID), strict=True):
            np.testing.assert_array_equal(a, b)


def test_make_dataset_reads_packed_folder(scenes, packed):
    [(x, y)] = [
        (x.numpy(), y.numpy())
        for x, y in make_dataset(packed, split="val", input_size=None, batch_size=2, training=False)
    ]
    assert x.shape == (2, *SIZE, 3) and y.shape == (2, *SIZE)
    np.testing.assert_array_equal(y[1], scenes.split("val")[1].load(CAMVID)[1])
    train = make_dataset(
        packed, split="train", input_size=(32, 40), batch_size=2, training=True, seed=0
    )
    assert [x.shape for x, _ in train] == [(2, 32, 40, 3)] * 2


def test_truncated_or_missing_shard_and_bad_format(packed, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in packed.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    shard = copy / "train-00001-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"train-00001-of-00002\.tfrecord: truncated record"):
        open_dataset(copy)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=r"train-00001-of-00002\.tfrecord: packed shard"):
        open_dataset(copy)
    (copy / "dataset.json").write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(DatasetError, match=r"dataset\.json: packed format 'something-else/9'"):
        open_dataset(copy)


def test_pack_argument_errors(scenes, tmp_path):
    with pytest.raises(ValueError, match="JPEG quality must be in 1..100"):
        pack_dataset(scenes, tmp_path, quality=0)
    with pytest.raises(ValueError, match="shards must be >= 1"):
        pack_dataset(scenes, tmp_path, shards=0)


def test_real_camvid_packing_error(camvid, tmp_path):
    ds = open_dataset(camvid)
    subset = type(ds)(root=ds.root, config=ds.config, splits={"val": ds.split("val")[:2]})
    packed = open_dataset(pack_dataset(subset, tmp_path))
    for original, record in zip(subset.split("val"), packed.split("val"), strict=True):
        image, label = original.load(CAMVID)
        image2, label2 = record.load(CAMVID)
        np.testing.assert_array_equal(label2, label)
        err = np.abs(image2.astype(int) - image.astype(int))
        assert err.mean() < 1.5 and np.percentile(err, 99) <= 6
    size = sum(p.stat().st_size for p in tmp_path.glob("*.tfrecord"))
    assert size < sum(s.image.stat().st_size for s in subset.split("val")) / 3
