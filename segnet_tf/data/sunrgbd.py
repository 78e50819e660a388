"""SUN RGB-D (Song et al., CVPR 2015), the SegNet paper's indoor benchmark (section 4.2), in the
layout of its widely used 37-class segmentation release (github.com/ankurhanda/sunrgbd-meta-data:
``SUNRGBD-train_images.tgz``, ``SUNRGBD-test_images.tgz``, ``sunrgbd_train_test_labels.tar.gz``),
each archive unpacked into a folder of its own name::

    <root>/SUNRGBD-train_images/img-000001.jpg ... img-005285.jpg       5,285 train images
    <root>/SUNRGBD-test_images/img-000001.jpg ... img-005050.jpg        5,050 test images
    <root>/sunrgbd_train_test_labels/img-000001.png ... img-010335.png  10,335 label images

The label images are numbered across both splits, test first: test image ``img-k.jpg`` has label
``img-k.png`` and train image ``img-k.jpg`` has label ``img-(k + 5050).png``. Images may also sit
one folder deeper (an archive unpacked into a folder of the same name). Labels are 8-bit PNGs,
0 unlabelled and 1..37 the classes of :data:`~segnet_tf.data.config.SUNRGBD`; they load as ids
0..36 with 0 becoming the void id 255, so that the loss and the metrics ignore it. The splits are
``train`` and ``test``: training holds out a seeded tenth of train for validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segnet_tf.data.config import SUNRGBD, DatasetConfig
from segnet_tf.data.io import (
    DatasetError,
    DatasetFileNotFoundError,
    check_same_size,
    load_image,
    load_label,
)
from segnet_tf.data.samples import Sample

TRAIN_IMAGES = "SUNRGBD-train_images"
TEST_IMAGES = "SUNRGBD-test_images"
LABELS = "sunrgbd_train_test_labels"
TEST_LABELS = 5050  # label images 1..5050 are the test split's, 5051..10335 the train split's
LABEL_OFFSETS = {"train": TEST_LABELS, "test": 0}
IMAGE_FOLDERS = {"train": TRAIN_IMAGES, "test": TEST_IMAGES}
IMAGE_NAME = re.compile(r"img-(\d{6})\.jpg")


def is_sunrgbd(root: Path) -> bool:
    """Whether ``root`` holds the release's image folders."""
    return any((root / folder).is_dir() for folder in IMAGE_FOLDERS.values())


def sunrgbd_splits(root: Path) -> dict[str, tuple[Sample, ...]]:
    """The ``train`` and ``test`` samples (those whose image folder exists), every image paired
    with its label file; a missing label folder or file is an error that names it."""
    labels = _folder_with(root / LABELS, "img-*.png")
    splits = {}
    for split, folder in IMAGE_FOLDERS.items():
        if not (root / folder).is_dir():
            continue
        images = sorted(_folder_with(root / folder, "img-*.jpg").glob("img-*.jpg"))
        samples = [
            SunRgbdSample(image, labels / f"img-{number + LABEL_OFFSETS[split]:06d}.png")
            for image in images
            if (number := _number(image)) is not None
        ]
        if not samples:
            raise DatasetError(f"{root / folder}: no img-NNNNNN.jpg images")
        missing = [s.label.name for s in samples if not s.label.is_file()]
        if missing:
            raise DatasetFileNotFoundError(
                f"{labels}: no label for {len(missing)} of the {len(samples)} {split} images "
                f"(e.g. {', '.join(missing[:3])}; {split} image img-k.jpg has label "
                f"img-{{k + {LABEL_OFFSETS[split]}}}.png)"
            )
        splits[split] = tuple(samples)
    return splits


def _folder_with(folder: Path, pattern: str) -> Path:
    """``folder``, or its only subfolder when the files sit there (an archive unpacked into a
    folder of its own name)."""
    if not folder.is_dir():
        raise DatasetFileNotFoundError(f"{folder}: folder not found (SUN RGB-D layout)")
    if any(folder.glob(pattern)):
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir()]
    if len(inner) == 1 and any(inner[0].glob(pattern)):
        return inner[0]
    return folder


def _number(image: Path) -> int | None:
    found = IMAGE_NAME.fullmatch(image.name)
    return None if found is None else int(found.group(1))


# The release's raw ids: 0 unlabelled, then the 37 classes (used only to read and check them).
RAW_IDS = DatasetConfig(
    name="sunrgbd release (0 unlabelled, 1..37 classes)",
    class_names=("unlabelled", *SUNRGBD.class_names),
    colours=((0, 0, 0), *SUNRGBD.colours),
)


def shift_labels(raw: np.ndarray, void_id: int) -> np.ndarray:
    """Release ids -> class ids: 0 -> ``void_id``, k -> k - 1 (``raw`` holds 0..37)."""
    lut = np.arange(-1, 255, dtype=np.int64)
    lut[0] = void_id
    return lut[raw].astype(np.uint8)


@dataclass(frozen=True)
class SunRgbdSample(Sample):
    """A SUN RGB-D image and its label file, whose ids are shifted on loading."""

    def load(self, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
        image, label = load_image(self.image), self.load_label(config)
        check_same_size(image, label, str(self.image), str(self.label))
        return image, label

    def load_label(self, config: DatasetConfig) -> np.ndarray:
        if config.num_classes != SUNRGBD.num_classes or config.void_id is None:
            raise DatasetError(
                f"{self.label}: SUN RGB-D labels need a config with 37 classes and a void id, "
                f"not {config.name!r} ({config.num_classes} classes, void {config.void_id})"
            )
        return shift_labels(load_label(self.label, RAW_IDS), config.void_id)
