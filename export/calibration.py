"""Calibration images for full-integer quantisation.

The converter sets every int8 range from the min and max it sees, so calibration must look like
deployment: random-scale crops of real training images at the model's input size (the training
augmentation, which also varies lighting). One pixel of the first image is set to 0 and one to 255
so the input range is exactly 0..255 and the int8 input is exactly ``pixel - 128`` (scale 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_tf.data import CAMVID, Dataset, make_dataset, open_dataset, synthetic_dataset
from segnet_tf.progress import progress


class CalibrationError(ValueError):
    """Calibration data is missing or does not fit the model."""


def calibration_source(data: str | Path | None, config) -> Dataset:
    """The dataset to calibrate on: ``data`` (a dataset folder), else the built-in scenes."""
    if data is None:
        if config.class_names != CAMVID.class_names:
            raise CalibrationError(
                f"the model predicts {config.name!r} classes; pass --calib-data with its dataset"
            )
        return synthetic_dataset(train=64, val=32)
    path = Path(data)
    if not path.exists():
        raise CalibrationError(f"--calib-data {str(path)!r}: no such folder")
    return open_dataset(path, config)


def calibration_images(
    dataset: Dataset, input_size: tuple[int, int], count: int, seed: int = 0
) -> np.ndarray:
    """``count`` augmented crops ``[N, H, W, 3]`` float32 (0..255) from the train split."""
    if count < 1:
        raise CalibrationError(f"--calib-samples must be >= 1, got {count}")
    split = "train" if "train" in dataset.splits else next(iter(dataset.splits), None)
    if split is None or not dataset.splits[split]:
        raise CalibrationError(f"calibration dataset {dataset.root or 'synthetic'} has no images")
    images = []
    while len(images) < count:
        stream = make_dataset(
            dataset.split(split),
            dataset.config,
            input_size=input_size,
            batch_size=1,
            training=True,
            cache=False,
            seed=seed + len(images),
        )
        for image, _ in stream.take(count - len(images)):
            images.append(image.numpy()[0])
    return np.stack(images).astype(np.float32)


def representative_dataset(images: np.ndarray):
    """The converter's calibration generator, with the input range pinned to 0..255."""
    pinned = images.copy()
    pinned[0, 0, 0, :], pinned[0, 0, 1, :] = 0.0, 255.0

    def generate():
        for image in progress(pinned, "int8 calibration"):
            yield [image[None]]

    return generate


def load_image_array(path: Path, input_size: tuple[int, int]) -> np.ndarray:
    """Calibration images given as a ``.npy`` array ``[N, H, W, 3]`` at the model's size."""
    try:  # memory-mapped: the shape is checked before any image is read
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        reason = " ".join(str(getattr(e, "strerror", None) or e).split())
        raise CalibrationError(
            f"--calib-data {str(path)!r}: not a readable .npy array of images: {reason}"
        ) from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise CalibrationError(
            f"--calib-data {str(path)!r}: expected a numeric .npy array [N, H, W, 3], got "
            f"{type(array).__name__ if not isinstance(array, np.ndarray) else array.dtype}"
        )
    if array.ndim != 4 or array.shape[1:] != (*input_size, 3):
        raise CalibrationError(
            f"--calib-data {str(path)!r}: array of shape {array.shape}, expected "
            f"[N, {input_size[0]}, {input_size[1]}, 3] for this model"
        )
    return array.astype(np.float32)
