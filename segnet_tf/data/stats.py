"""Class statistics and median frequency balancing (SegNet paper, Sec. 3.3; Eigen & Fergus 2015).

The paper weights each class in the loss by ``median(freq) / freq(c)``, where ``freq(c)`` is the
number of pixels of class ``c`` divided by the total number of pixels in the images where ``c`` is
present. Void pixels are no class: they are left out of the class counts and of the image totals.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from segnet_tf.data.datasets import Dataset
from segnet_tf.progress import progress


def class_pixel_counts(
    labels: Iterable[np.ndarray], num_classes: int, void_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ``(pixel_counts, image_pixel_counts)`` over label maps (int64 ``[num_classes]``).

    ``image_pixel_counts[c]`` sums the labelled (non-void) pixels of every image containing
    class ``c``. An id that is neither a class nor ``void_id`` is an error.
    """
    pixel_counts = np.zeros(num_classes, np.int64)
    image_pixel_counts = np.zeros(num_classes, np.int64)
    for i, label in enumerate(labels):
        counts = np.bincount(np.asarray(label).ravel(), minlength=num_classes)
        if void_id is not None and void_id < counts.size:
            counts[void_id] = 0
        if counts[num_classes:].any():
            bad = (np.flatnonzero(counts[num_classes:]) + num_classes).tolist()
            raise ValueError(
                f"label {i}: ids {bad} are neither classes 0..{num_classes - 1} "
                f"nor the void id {void_id}"
            )
        counts = counts[:num_classes]
        pixel_counts += counts
        image_pixel_counts[counts > 0] += counts.sum()
    return pixel_counts, image_pixel_counts


def median_frequency_weights(pixel_counts, image_pixel_counts) -> np.ndarray:
    """``median(freq) / freq(c)`` with ``freq(c) = pixel_counts[c] / image_pixel_counts[c]``.

    The median is taken over the classes that occur; a class that never occurs gets weight 0.
    """
    pixel_counts = np.asarray(pixel_counts, np.float64)
    image_pixel_counts = np.asarray(image_pixel_counts, np.float64)
    present = pixel_counts > 0
    if not present.any():
        raise ValueError("median_frequency_weights: no class has any pixel")
    freq = np.zeros_like(pixel_counts)
    freq[present] = pixel_counts[present] / image_pixel_counts[present]
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


@dataclass(frozen=True)
class DatasetStats:
    """Class statistics of one split. ``share`` is each class's fraction of all pixels (void
    included, as in the CamVid README); ``frequency`` is the median-frequency ``freq(c)``."""

    split: str
    num_images: int
    class_names: tuple[str, ...]
    pixel_counts: np.ndarray
    image_pixel_counts: np.ndarray
    void_pixels: int
    total_pixels: int
    share: np.ndarray
    frequency: np.ndarray
    weights: np.ndarray

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "num_images": self.num_images,
            "total_pixels": self.total_pixels,
            "void_pixels": self.void_pixels,
            "classes": [
                {
                    "name": name,
                    "pixels": int(self.pixel_counts[c]),
                    "share": float(self.share[c]),
                    "frequency": float(self.frequency[c]),
                    "weight": float(self.weights[c]),
                }
                for c, name in enumerate(self.class_names)
            ],
        }


def dataset_stats(dataset: Dataset, split: str = "train") -> DatasetStats:
    """Pixel counts, shares and median-frequency weights of ``split`` (decodes every label)."""
    samples = dataset.split(split)
    config = dataset.config
    sizes: list[int] = []

    def load(sample) -> np.ndarray:
        label = sample.load_label(config)
        sizes.append(label.size)
        return label

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        pixel_counts, image_pixel_counts = class_pixel_counts(
            progress(pool.map(load, samples), f"stats {split}", total=len(samples)),
            config.num_classes,
            config.void_id,
        )
    total = sum(sizes)
    labelled = int(pixel_counts.sum())
    present = pixel_counts > 0
    frequency = np.zeros(config.num_classes)
    frequency[present] = pixel_counts[present] / image_pixel_counts[present]
    return DatasetStats(
        split=split,
        num_images=len(samples),
        class_names=config.class_names,
        pixel_counts=pixel_counts,
        image_pixel_counts=image_pixel_counts,
        void_pixels=total - labelled,
        total_pixels=total,
        share=pixel_counts / max(total, 1),
        frequency=frequency,
        weights=median_frequency_weights(pixel_counts, image_pixel_counts),
    )
