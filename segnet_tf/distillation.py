"""Distillation targets: a trained teacher's logits for every training frame, computed once.

``segnet-tf train --teacher MODEL`` trains a student (e.g. segnet-lite) against the teacher's
per-pixel class probabilities as well as the labels (:class:`segnet_tf.losses.DistillationLoss`).
Running the teacher at every step would cost more than training the student, so its logits are
computed once per frame, on the clean frame at the teacher's input size, and kept in the run
folder as float16 ``.npy`` files (one per frame; 3.8 MB at 360x480 for 11 classes). The pipeline
then scales, crops and flips them with the image (:mod:`segnet_tf.data.pipeline`). A manifest
names the teacher file (by SHA-256), the frames and the size, so ``--resume`` reuses the cache and
a changed teacher or split recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from segnet_tf.data import DatasetConfig
from segnet_tf.data.samples import SampleLike
from segnet_tf.models import load_model
from segnet_tf.models.loading import resolve_model_file
from segnet_tf.runs import atomic_path, atomic_write_text

LOGGER = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def teacher_logits(
    teacher: str | Path,
    samples: Sequence[SampleLike],
    config: DatasetConfig,
    out_dir: Path,
    input_size: tuple[int, int],
    batch_size: int = 4,
) -> list[Path]:
    """One float16 ``.npy`` of the teacher's logits ``[H, W, classes]`` per sample, in
    ``out_dir``; ``H x W`` is the teacher's own input size (``input_size`` if it has none)."""
    path = resolve_model_file(teacher)
    model = load_model(path)
    classes = model.outputs[0].shape[-1]
    if classes != config.num_classes:
        raise ValueError(
            f"--teacher {teacher}: predicts {classes} classes, the dataset has "
            f"{config.num_classes} ({config.name})"
        )
    size = tuple(model.inputs[0].shape[1:3])
    size = tuple(input_size) if None in size else size
    out_dir = Path(out_dir)
    files = [out_dir / f"{i:05d}.npy" for i in range(len(samples))]
    manifest = {
        "teacher": str(path),
        "sha256": _sha256(path),
        "size": list(size),
        "samples": [s.name for s in samples],
    }
    if _read_manifest(out_dir) == manifest and all(f.is_file() for f in files):
        LOGGER.info("teacher logits: reusing %s", out_dir)
        return files
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # written last: a killed pass is redone
    LOGGER.info("teacher logits: running %s on %d frames at %dx%d", path, len(samples), *size)
    for start in range(0, len(samples), batch_size):
        chunk = range(start, min(start + batch_size, len(samples)))
        images = np.stack([_resized(samples[i].load(config)[0], size) for i in chunk])
        logits = np.asarray(model(images.astype(np.float32), training=False), np.float16)
        for i, frame in zip(chunk, logits, strict=True):
            with atomic_path(files[i]) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, frame, allow_pickle=False)
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    return files


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _read_manifest(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
