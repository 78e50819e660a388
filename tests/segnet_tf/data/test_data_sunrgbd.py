"""SUN RGB-D: the 37-class release's layout on a few files made here, its id shift and its
errors (the real data cannot be fetched on these machines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segnet_tf.data import (
    SUNRGBD,
    DatasetError,
    colorize,
    load_dataset_config,
    make_dataset,
    open_dataset,
    validate,
)
from segnet_tf.data.io import DatasetFileNotFoundError
from segnet_tf.data.sunrgbd import SunRgbdSample, shift_labels

H, W = 6, 8


def release_label(seed: int) -> np.ndarray:
    """Release ids (0 unlabelled, 1..37), the corners pinned to 0, 1, 37 and 20."""
    label = np.random.default_rng(seed).integers(0, 38, (H, W)).astype(np.uint8)
    label[0, 0], label[0, -1], label[-1, 0], label[-1, -1] = 0, 1, 37, 20
    return label


@pytest.fixture
def sunrgbd(tmp_path: Path, files) -> Path:
    """Train images img-000001/2 (labels img-005051/2) and test image img-000001 (label
    img-000001), as the release's archives unpack."""
    rng = np.random.default_rng(0)
    for folder, numbers, offset in (
        ("SUNRGBD-train_images", (1, 2), 5050),
        ("SUNRGBD-test_images", (1,), 0),
    ):
        for k in numbers:
            files.image(
                tmp_path / folder / f"img-{k:06d}.jpg",
                rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            )
            label = release_label(k + offset)
            files.label(tmp_path / "sunrgbd_train_test_labels" / f"img-{k + offset:06d}.png", label)
    return tmp_path


def test_the_config_has_the_37_classes_in_label_order():
    assert load_dataset_config("sunrgbd") is load_dataset_config("SUNRGBD") is SUNRGBD
    assert SUNRGBD.num_classes == 37 and SUNRGBD.void_id == 255
    # release ids 1, 5, 22 and 37 are wall, chair, ceiling and bag: class ids one lower
    names = SUNRGBD.class_names
    assert (names[0], names[4], names[21], names[36]) == ("wall", "chair", "ceiling", "bag")
    assert len(set(SUNRGBD.colours)) == 37 and (0, 0, 0) not in SUNRGBD.colours


def test_shift_maps_unlabelled_to_void_and_classes_one_down():
    raw = np.array([[0, 1, 2], [36, 37, 0]], np.uint8)
    np.testing.assert_array_equal(shift_labels(raw, 255), [[255, 0, 1], [35, 36, 255]])


def test_the_release_layout_is_found_and_paired_across_the_label_numbering(sunrgbd):
    dataset = open_dataset(sunrgbd)
    assert dataset.config is SUNRGBD
    assert dataset.counts == {"train": 2, "test": 1}
    labels = sunrgbd / "sunrgbd_train_test_labels"
    assert [s.label for s in dataset.split("train")] == [
        labels / "img-005051.png",
        labels / "img-005052.png",
    ]
    assert dataset.split("test")[0].label == labels / "img-000001.png"
    assert validate(dataset) == 3

    sample = dataset.split("train")[1]
    assert isinstance(sample, SunRgbdSample)
    image, label = sample.load(dataset.config)
    assert image.shape == (H, W, 3) and label.dtype == np.uint8
    want = release_label(5052).astype(np.int64) - 1
    want[want < 0] = 255
    np.testing.assert_array_equal(label, want)
    assert (label[0, 0], label[0, -1], label[-1, 0]) == (255, 0, 36)
    assert tuple(colorize(label, SUNRGBD)[-1, 0]) == (161, 176, 169)  # bag
    assert tuple(colorize(label, SUNRGBD)[0, 0]) == (0, 0, 0)  # void


def test_the_pipeline_reads_shifted_ids(sunrgbd):
    dataset = open_dataset(sunrgbd)
    (_, labels), *_ = make_dataset(
        dataset, split="test", input_size=None, batch_size=1, training=False
    )
    want = release_label(1).astype(np.int64) - 1
    np.testing.assert_array_equal(labels.numpy()[0], np.where(want < 0, 255, want))


def test_an_archive_unpacked_into_a_folder_of_its_name_is_found(sunrgbd):
    outer = sunrgbd / "SUNRGBD-test_images"
    inner = outer / "SUNRGBD-test_images"
    inner.mkdir()
    for image in outer.glob("*.jpg"):
        image.rename(inner / image.name)
    assert open_dataset(sunrgbd).split("test")[0].image == inner / "img-000001.jpg"


def test_errors_name_the_file_and_the_rule(sunrgbd, files):
    files.label(
        sunrgbd / "sunrgbd_train_test_labels" / "img-005052.png", np.full((H, W), 38, np.uint8)
    )
    with pytest.raises(DatasetError, match=r"img-005052.png: label ids \[38\] are outside 0\.\.37"):
        validate(open_dataset(sunrgbd), "train")
    with pytest.raises(DatasetError, match="37 classes and a void id, not 'camvid'"):
        open_dataset(sunrgbd, "camvid").split("test")[0].load_label(load_dataset_config("camvid"))
    (sunrgbd / "sunrgbd_train_test_labels" / "img-005051.png").unlink()
    with pytest.raises(
        DatasetFileNotFoundError,
        match=r"no label for 1 of the 2 train images \(e\.g\. img-005051\.png; train image "
        r"img-k\.jpg has label img-\{k \+ 5050\}\.png\)",
    ):
        open_dataset(sunrgbd)
