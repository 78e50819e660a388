"""Synthetic road scenes: determinism, valid labels, dataset interface."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segnet_tf.data import (
    CAMVID,
    DatasetConfig,
    DatasetError,
    open_dataset,
    render_scene,
    synthetic_dataset,
    validate,
    write_synthetic_dataset,
)

SIZE = (60, 80)


def test_deterministic_by_seed():
    a, b = render_scene(7, SIZE), render_scene(7, SIZE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    other = render_scene(8, SIZE)
    assert not np.array_equal(a[1], other[1])


def test_shapes_dtypes_and_valid_ids():
    for seed in range(6):
        image, label = render_scene(seed, SIZE)
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
        assert label.shape == SIZE and label.dtype == np.uint8
        assert label.max() < CAMVID.num_classes  # every pixel is a class: no void
        assert image.std() > 10  # textured, not flat


def test_scenes_are_road_scenes():
    """Sky on top, road at the bottom centre, and every CamVid class shows up in a few scenes."""
    seen = set()
    for seed in range(12):
        _, label = render_scene(seed, (90, 120))
        names = [CAMVID.class_names[i] for i in np.unique(label)]
        assert {"Sky", "Road", "Pavement"} <= set(names)
        assert len(names) >= 5
        assert np.mean(label[:5] == 0) > 0.2  # sky along the top rows
        assert np.mean(label[-5:, 40:80] == 3) > 0.7  # road under the camera
        seen.update(names)
    assert seen == set(CAMVID.class_names)


def test_layout_is_resolution_independent():
    """The street is laid out in metres: a seed gives the same scene at any size."""
    _, small = render_scene(3, (90, 120))
    _, big = render_scene(3, (360, 480))
    down = cv2.resize(big, (120, 90), interpolation=cv2.INTER_NEAREST)
    assert np.mean(down == small) > 0.9


def test_synthetic_dataset_splits():
    ds = synthetic_dataset(train=4, val=2, size=SIZE, seed=1)
    assert ds.counts == {"train": 4, "val": 2} and ds.config is CAMVID and ds.root is None
    seeds = [s.seed for split in ds.splits.values() for s in split]
    assert len(set(seeds)) == 6
    # growing one split leaves the others alone; another base seed gives other scenes
    assert synthetic_dataset(train=9, val=2, size=SIZE, seed=1).split("val") == ds.split("val")
    assert synthetic_dataset(train=4, val=2, size=SIZE, seed=2).split("val") != ds.split("val")
    image, label = ds.split("train")[0].load(CAMVID)
    np.testing.assert_array_equal(label, render_scene(ds.split("train")[0].seed, SIZE)[1])
    other = DatasetConfig.from_dict(
        {**CAMVID.to_dict(), "class_names": [f"x{i}" for i in range(11)]}
    )
    with pytest.raises(DatasetError, match="CamVid's classes"):
        ds.split("train")[0].load(other)


def test_write_synthetic_dataset_in_camvid_layout(tmp_path):
    out = write_synthetic_dataset(tmp_path / "syn", train=2, val=1, size=(24, 32), seed=0)
    ds = open_dataset(out)
    assert ds.counts == {"train": 2, "val": 1} and ds.config == CAMVID
    assert validate(ds) == 3
    expected = synthetic_dataset(train=2, val=1, size=(24, 32), seed=0).split("train")[1]
    image, label = ds.split("train")[1].load(CAMVID)
    ref_image, ref_label = expected.load(CAMVID)
    np.testing.assert_array_equal(label, ref_label)
    np.testing.assert_array_equal(image, ref_image)  # PNG is lossless
