"""Calibration images for int8: where they come from, what they look like, the pinned range."""

from __future__ import annotations

import numpy as np
import pytest

from segnet_tf.data import CAMVID, Dataset, DatasetConfig, synthetic_dataset
from segnet_tf.export.calibration import (
    CalibrationError,
    calibration_images,
    calibration_source,
    load_image_array,
    representative_dataset,
)

TWO = DatasetConfig(name="two", class_names=("a", "b"), colours=((0, 0, 0), (9, 9, 9)), void_id=2)


def test_source_is_the_given_folder_else_the_synthetic_scenes_for_camvid_classes(tmp_path):
    synthetic = calibration_source(None, CAMVID)
    assert synthetic.root is None and synthetic.config.class_names == CAMVID.class_names
    assert len(synthetic.splits["train"]) == 64
    with pytest.raises(CalibrationError, match="predicts 'two' classes; pass --calib-data"):
        calibration_source(None, TWO)
    with pytest.raises(CalibrationError, match="--calib-data .*nope.*: no such folder"):
        calibration_source(tmp_path / "nope", CAMVID)


def test_images_are_augmented_crops_at_the_input_size_seeded():
    dataset = synthetic_dataset(train=2, val=0, size=(60, 80), seed=2)
    images = calibration_images(dataset, (32, 48), count=4, seed=0)  # two passes over 2 images
    assert images.shape == (4, 32, 48, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.std() > 10
    assert not np.array_equal(images[:2], images[2:])  # each pass crops anew
    np.testing.assert_array_equal(images[:2], calibration_images(dataset, (32, 48), 2, seed=0))


def test_bad_counts_and_empty_datasets_are_named():
    dataset = synthetic_dataset(train=1, val=0, size=(32, 48))
    with pytest.raises(CalibrationError, match="--calib-samples must be >= 1, got 0"):
        calibration_images(dataset, (32, 48), 0)
    empty = Dataset(root=None, config=CAMVID, splits={"train": ()})
    with pytest.raises(CalibrationError, match="has no images"):
        calibration_images(empty, (32, 48), 4)


def test_representative_dataset_pins_the_input_range_to_0_255():
    images = np.full((3, 4, 5, 3), 100.0, np.float32)
    batches = [batch for batch in representative_dataset(images)()]
    assert len(batches) == 3 and all(len(b) == 1 and b[0].shape == (1, 4, 5, 3) for b in batches)
    first = batches[0][0][0]
    assert (first[0, 0] == 0).all() and (first[0, 1] == 255).all()
    assert (first[1:] == 100).all() and (batches[2][0] == 100).all()
    assert (images == 100).all()  # the caller's array is left alone


def test_image_arrays_must_fit_the_model(tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((2, 32, 48, 3), np.uint8))
    loaded = load_image_array(tmp_path / "ok.npy", (32, 48))
    assert loaded.shape == (2, 32, 48, 3) and loaded.dtype == np.float32
    np.save(tmp_path / "small.npy", np.zeros((2, 16, 48, 3), np.uint8))
    with pytest.raises(
        CalibrationError, match=r"shape \(2, 16, 48, 3\), expected \[N, 32, 48, 3\]"
    ):
        load_image_array(tmp_path / "small.npy", (32, 48))
