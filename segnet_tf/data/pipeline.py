"""tf.data input pipeline: decode once, cache, then augment (training) or resize (evaluation).

Every sample kind (file pair, synthetic scene, packed record) loads itself through the OpenCV
readers in :mod:`segnet_tf.data.io`, wrapped in ``tf.numpy_function`` and run in parallel; the
decoded uint8 arrays are cached, so that cost is paid once. Augmentation follows common SegNet
reimplementations (the paper itself trains on fixed 360x480 crops without augmentation): random
scale, random crop, horizontal flip and photometric jitter, plus optional blur and sensor noise
(:data:`AUGMENTATIONS`: how much of each is a recipe choice, measured across drives). Labels are
only ever resized with nearest neighbour, so they never contain ids that were not in the source.

Scale and crop are separate: the scale is relative to ``input_size`` (1.0 is the image resized to
the size the model is evaluated at), and training crops ``crop_size`` out of it. A fully
convolutional net trained on 240x320 crops of 360x480 frames sees objects at their deployed size
for less than half the cost of whole frames.

Padding: a crop larger than the scaled image is padded with black pixels labelled ``void_id``,
which the loss and metrics ignore. When the config has no void id, nothing may be padded (it
would invent a class), so the lower end of the scale range is raised to 1.0: the scaled image
then always covers the crop.

Randomness comes from stateless ops seeded per element by ``tf.data.Dataset.random(seed)``, so a
fixed ``seed`` gives the same batches every run (and new ones each epoch).

Distillation (``soft_targets``): a teacher's logits for each sample, computed once on the clean
frame (:mod:`segnet_tf.distillation`), go through the same scale, crop and flip as the image,
resized bilinearly (colour jitter, blur and noise touch the image only: the student learns to
match the teacher's view of the clean frame). The labels then travel packed with them, see
:func:`make_dataset`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from segnet_tf.data.config import DatasetConfig
from segnet_tf.data.datasets import Dataset, Sample, SampleLike, open_dataset
from segnet_tf.data.io import DatasetError, DatasetFileNotFoundError

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class Augmentation:
    """How strongly training jitters each image (one recipe lever, see :data:`AUGMENTATIONS`)."""

    scale_range: tuple[float, float] = (0.75, 1.5)  # relative to the evaluation size
    brightness: float = 0.125  # max delta, fraction of full scale
    contrast: tuple[float, float] = (0.75, 1.25)
    saturation: tuple[float, float] = (0.75, 1.25)
    hue: float = 0.04  # max delta, fraction of the hue circle
    blur: float = 0.0  # probability of a Gaussian blur, sigma uniform in (0, 1.5] pixels
    noise: float = 0.0  # max standard deviation of additive Gaussian noise, 0..255 scale


# "strong": the scale range of common semantic segmentation recipes (0.5-2.0), wider lighting and
# colour changes, and the blur and sensor noise of another camera: what a new drive looks like.
AUGMENTATIONS: dict[str, Augmentation | None] = {
    "none": None,
    "default": Augmentation(),
    "strong": Augmentation(
        scale_range=(0.5, 2.0),
        brightness=0.25,
        contrast=(0.6, 1.4),
        saturation=(0.6, 1.4),
        hue=0.06,
        blur=0.3,
        noise=8.0,
    ),
}


def resolve_augmentation(augment: bool | str | Augmentation | None) -> Augmentation | None:
    """``True``/``False`` (older run configs), a name in :data:`AUGMENTATIONS` or an object."""
    if augment is None or isinstance(augment, Augmentation):
        return augment
    if isinstance(augment, bool):
        return AUGMENTATIONS["default" if augment else "none"]
    if augment not in AUGMENTATIONS:
        raise ValueError(f"--augment {augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[augment]


def make_dataset(
    source: Dataset | Sequence[SampleLike] | str | Path,
    config: DatasetConfig | None = None,
    *,
    split: str | None = None,
    input_size: tuple[int, int] | None,
    batch_size: int,
    training: bool,
    augment: bool | str | Augmentation | None = True,
    crop_size: tuple[int, int] | None = None,
    cache: bool = True,
    seed: int | None = None,
    shuffle_buffer: int = 512,
    scale_range: tuple[float, float] | None = None,
    soft_targets: Sequence[str | Path] | None = None,
) -> tf.data.Dataset:
    """Batches of ``(image float32 [B, H, W, 3] in 0..255, label int32 [B, H, W])``; with
    ``soft_targets`` (one ``.npy`` of teacher logits ``[h, w, classes]`` per sample) the second
    item is float32 ``[B, H, W, 1 + classes]``: the label id, then the teacher's logits.

    ``source`` is a list of samples (``dataset.split("train")``), or a :class:`Dataset` or dataset
    folder together with ``split``; ``config`` defaults to the dataset's. ``input_size`` is
    ``(H, W)``; evaluation may pass None to keep each image's own size (then batch images of one
    size only). Training shuffles, augments (``augment``: see :func:`resolve_augmentation`;
    ``scale_range`` overrides its scales; none: plain resize) into ``crop_size`` crops (default
    ``input_size``) and drops the last incomplete batch; evaluation keeps order and every sample.
    """
    samples, config = _resolve(source, config, split)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
        raise ValueError(f"input_size must be (height, width) > 0, got {input_size}")
    if training and input_size is None:
        raise ValueError("training needs an input_size (height, width) to crop batches to")
    aug = resolve_augmentation(augment) if training else None
    if aug is not None and scale_range is not None:
        aug = replace(aug, scale_range=tuple(scale_range))
    if aug is not None and not 0 < aug.scale_range[0] <= aug.scale_range[1]:
        raise ValueError(f"scale_range must be 0 < low <= high, got {aug.scale_range}")
    crop = tuple(crop_size or input_size or ())
    if crop_size is not None and (len(crop) != 2 or min(crop) < 1):
        raise ValueError(f"crop_size must be (height, width) > 0, got {crop_size}")
    if crop_size is not None and aug is None and crop != tuple(input_size):
        raise ValueError("crop_size needs augmentation (random crops); without it pass input_size")
    _check_files(samples)
    if soft_targets is not None and len(soft_targets) != len(samples):
        raise ValueError(f"{len(soft_targets)} soft targets for {len(samples)} samples")

    label_dtype = tf.uint8 if _max_label_id(config) <= 255 else tf.uint16
    ds = _decoded(samples, config, label_dtype, soft_targets)
    augmenting = aug is not None
    if input_size is not None and not augmenting:
        ds = ds.map(lambda *pair: _resize(*pair, size=input_size), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(shuffle_buffer, len(samples)), seed=seed, reshuffle_each_iteration=True)
    if augmenting:
        if config.void_id is None:  # the scaled image must cover the crop: see module docstring
            cover = max(c / i for c, i in zip(crop, input_size, strict=True))
            lo, hi = aug.scale_range
            aug = replace(aug, scale_range=(max(lo, cover), max(hi, cover)))
        pad_label = 0 if config.void_id is None else config.void_id  # unused when void is None
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda pair, s: augment_pair(
                pair[0], pair[1], s, input_size, aug, pad_label, crop, soft=_soft(pair)
            ),
            num_parallel_calls=AUTOTUNE,
        )
    ds = ds.batch(batch_size, drop_remainder=training and len(samples) >= batch_size)
    return ds.map(_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _soft(element: tuple) -> tf.Tensor | None:
    return element[2] if len(element) == 3 else None


def _model_inputs(image, label, soft=None):
    """float32 images; int32 labels, or labels packed before the teacher's logits."""
    if soft is None:
        return tf.cast(image, tf.float32), tf.cast(label, tf.int32)
    packed = tf.concat([tf.cast(label, tf.float32)[..., None], tf.cast(soft, tf.float32)], -1)
    return tf.cast(image, tf.float32), packed


def unwrap_dataset_error(error: Exception) -> Exception:
    """The :class:`DatasetError` a sample raised while the pipeline ran, else ``error`` itself.

    Samples decode inside ``tf.numpy_function``, so a corrupt file reaches the caller as a TF
    error carrying a Python traceback; training and evaluation re-raise this instead, which
    names just the file and what is wrong with it.
    """
    found = re.search(r"(DatasetError|DatasetFileNotFoundError): ([^\n]+)", str(error))
    if not isinstance(error, tf.errors.OpError) or found is None:
        return error
    kind = (
        DatasetFileNotFoundError if found.group(1) == "DatasetFileNotFoundError" else DatasetError
    )
    return kind(found.group(2))


def _resolve(source, config, split) -> tuple[Sequence[SampleLike], DatasetConfig]:
    if isinstance(source, (str, Path)):
        source = open_dataset(source, config)
    if isinstance(source, Dataset):
        if split is None:
            raise ValueError(
                f"make_dataset: pass split= (one of {', '.join(source.splits)}) with a dataset"
            )
        return source.split(split), config or source.config
    if config is None:
        raise ValueError("make_dataset: a list of samples needs the dataset config")
    return source, config


def _check_files(samples: Sequence[SampleLike]) -> None:
    """Fail before building the graph on missing files (decode errors surface while iterating,
    inside a TF error; run :func:`segnet_tf.data.datasets.validate` to get them up front)."""
    if not samples:
        raise DatasetError("make_dataset: no samples")
    missing = [
        str(p)
        for s in samples
        if isinstance(s, Sample)
        for p in (s.image, s.label)
        if not p.is_file()
    ]
    if missing:
        raise DatasetFileNotFoundError(
            f"{len(missing)} dataset file(s) not found: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )


def _max_label_id(config: DatasetConfig) -> int:
    return max(config.num_classes - 1, config.void_id or 0)


def _decoded(
    samples: Sequence[SampleLike],
    config: DatasetConfig,
    label_dtype,
    soft_targets: Sequence[str | Path] | None = None,
) -> tf.data.Dataset:
    np_label_dtype = label_dtype.as_numpy_dtype

    def load(index: np.ndarray) -> tuple[np.ndarray, ...]:
        image, label = samples[int(index)].load(config)
        if soft_targets is None:
            return image, label.astype(np_label_dtype)
        soft = np.load(soft_targets[int(index)], allow_pickle=False).astype(np.float16)
        return image, label.astype(np_label_dtype), soft

    def load_tf(index: tf.Tensor):
        dtypes = (tf.uint8, label_dtype) + (() if soft_targets is None else (tf.float16,))
        loaded = tf.numpy_function(load, [index], dtypes, stateful=False)
        shapes = ([None, None, 3], [None, None], [None, None, None])[: len(loaded)]
        for tensor, shape in zip(loaded, shapes, strict=True):
            tensor.set_shape(shape)
        return tuple(loaded)

    return tf.data.Dataset.range(len(samples)).map(load_tf, num_parallel_calls=AUTOTUNE)


def _resize(image: tf.Tensor, label: tf.Tensor, soft: tf.Tensor | None = None, *, size):
    """Image bilinear, label nearest, both to ``size``; the image stays uint8 for caching.
    Soft targets (logits) bilinear, kept float16."""
    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    image = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
    label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
    if soft is None:
        return image, label
    return image, label, tf.cast(tf.image.resize(tf.cast(soft, tf.float32), size), tf.float16)


def augment_pair(
    image: tf.Tensor,
    label: tf.Tensor,
    seed: tf.Tensor,
    size: tuple[int, int],
    aug: Augmentation,
    pad_label: int,
    crop: tuple[int, int] | None = None,
    soft: tf.Tensor | None = None,
) -> tuple[tf.Tensor, ...]:
    """Random scale, colour jitter, blur and noise, pad/crop to ``crop`` and flip of one uint8
    image and label (and the same scale, crop and flip of ``soft``, the teacher's logits, which
    are padded with zeros where the label is void).

    The scale is relative to ``size`` (1.0 resizes the whole image to ``size``, as evaluation
    does), so object sizes seen in training and evaluation match on average; ``crop`` (default
    ``size``) is the size of the random window taken from the scaled image. ``seed`` is a ``[2]``
    int tensor; the result is a float32 image in 0..255 and a label of the input dtype.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)
    scale = tf.random.stateless_uniform([], seeds[0], aug.scale_range[0], aug.scale_range[1])
    sh = tf.maximum(tf.cast(tf.round(size[0] * scale), tf.int32), 1)
    sw = tf.maximum(tf.cast(tf.round(size[1] * scale), tf.int32), 1)
    h, w = crop or size
    img = tf.image.resize(tf.cast(image, tf.float32), [sh, sw], method="bilinear")
    img = _jitter_colours(img, seeds[6], aug)  # before padding: contrast uses the image mean
    img = _degrade(img, seeds[7], aug)
    lab = tf.image.resize(label[..., None], [sh, sw], method="nearest")

    pad_h, pad_w = tf.maximum(h - sh, 0), tf.maximum(w - sw, 0)
    top = tf.random.stateless_uniform([], seeds[1], 0, pad_h + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[2], 0, pad_w + 1, dtype=tf.int32)
    paddings = [[top, pad_h - top], [left, pad_w - left], [0, 0]]
    img = tf.pad(img, paddings, constant_values=0.0)
    lab = tf.pad(lab, paddings, constant_values=tf.cast(pad_label, lab.dtype))

    y = tf.random.stateless_uniform([], seeds[3], 0, sh + pad_h - h + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], seeds[4], 0, sw + pad_w - w + 1, dtype=tf.int32)
    img, lab = img[y : y + h, x : x + w], lab[y : y + h, x : x + w, 0]
    img.set_shape([h, w, 3])
    lab.set_shape([h, w])

    flip = tf.random.stateless_uniform([], seeds[5]) < 0.5
    img = tf.cond(flip, lambda: img[:, ::-1], lambda: img)
    lab = tf.cond(flip, lambda: lab[:, ::-1], lambda: lab)
    if soft is None:
        return img, lab
    logits = tf.pad(tf.image.resize(tf.cast(soft, tf.float32), [sh, sw]), paddings)
    logits = logits[y : y + h, x : x + w]
    logits.set_shape([h, w, soft.shape[-1]])
    return img, lab, tf.cond(flip, lambda: logits[:, ::-1], lambda: logits)


def _jitter_colours(image: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Brightness, contrast, saturation and hue jitter of a float 0..255 image, kept in 0..255."""
    s = tf.random.experimental.stateless_split(seed, 4)
    x = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    x = tf.image.stateless_random_brightness(x, aug.brightness, s[0])
    x = tf.image.stateless_random_contrast(x, *aug.contrast, s[1])
    x = tf.clip_by_value(x, 0.0, 1.0)  # saturation and hue work in HSV and need 0..1
    x = tf.image.stateless_random_saturation(x, *aug.saturation, s[2])
    x = tf.image.stateless_random_hue(x, aug.hue, s[3])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _degrade(image: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Another camera's optics and sensor: a Gaussian blur with probability ``aug.blur`` and
    additive Gaussian noise of a random strength up to ``aug.noise``; a float 0..255 image."""
    if not aug.blur and not aug.noise:
        return image
    s = tf.random.experimental.stateless_split(seed, 4)
    if aug.blur:
        sigma = tf.random.stateless_uniform([], s[0], 1e-3, 1.5)
        taps = tf.range(-3.0, 4.0)
        kernel = tf.exp(-0.5 * tf.square(taps / sigma))
        kernel = kernel / tf.reduce_sum(kernel)
        depthwise = tf.tile(kernel[:, None, None, None], [1, 1, 3, 1])
        blurred = tf.nn.depthwise_conv2d(image[None], depthwise, [1, 1, 1, 1], "SAME")
        blurred = tf.nn.depthwise_conv2d(
            blurred, tf.transpose(depthwise, [1, 0, 2, 3]), [1, 1, 1, 1], "SAME"
        )[0]
        apply = tf.random.stateless_uniform([], s[1]) < aug.blur
        image = tf.where(apply, blurred, image)
    if aug.noise:
        std = tf.random.stateless_uniform([], s[2], 0.0, aug.noise)
        image = image + std * tf.random.stateless_normal(tf.shape(image), s[3])
    return tf.clip_by_value(image, 0.0, 255.0)
