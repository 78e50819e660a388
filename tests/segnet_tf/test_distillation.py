"""Distillation: the loss against hand-computed values, the teacher's logits travelling with the
augmentation, the cache, and a run with a teacher."""

from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

import segnet_tf
from segnet_tf.config import TrainConfig
from segnet_tf.data import synthetic_dataset
from segnet_tf.data.pipeline import make_dataset
from segnet_tf.distillation import teacher_logits
from segnet_tf.losses import DistillationLoss, WeightedSparseCategoricalCrossentropy
from segnet_tf.training import train


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_the_loss_mixes_weighted_cross_entropy_and_tempered_kl():
    weights = [1.0, 2.0, 0.5]
    labels = np.array([[[0, 2, 3]]], np.float32)  # 3 = void
    student = np.array([[[[2.0, 0.0, -1.0], [0.5, 0.5, 1.0], [9.0, 0.0, 0.0]]]], np.float32)
    teacher = np.array([[[[1.0, 1.0, 0.0], [0.0, -1.0, 3.0], [0.0, 0.0, 9.0]]]], np.float32)
    t, w = 2.0, 0.3
    y_true = np.concatenate([labels[..., None], teacher], -1)
    loss = float(DistillationLoss(weights, w, t)(y_true, student))

    pixel_w = np.array([1.0, 0.5])  # classes 0 and 2; the void pixel counts nowhere
    ce = -np.array([log_softmax(student[0, 0, 0])[0], log_softmax(student[0, 0, 1])[2]])
    p_t = np.exp(log_softmax(teacher[0, 0, :2] / t))
    kl = (p_t * (log_softmax(teacher[0, 0, :2] / t) - log_softmax(student[0, 0, :2] / t))).sum(-1)
    expected = (1 - w) * (pixel_w @ ce) / pixel_w.sum() + w * t * t * (pixel_w @ kl) / pixel_w.sum()
    assert loss == pytest.approx(expected, rel=1e-5)
    # validation has plain labels: the cross entropy alone, as without a teacher
    plain = float(DistillationLoss(weights, w, t)(labels, student))
    assert plain == pytest.approx(
        float(WeightedSparseCategoricalCrossentropy(weights)(labels, student))
    )
    # a student that equals its teacher pays the label term only
    same = np.concatenate([labels[..., None], student], -1)
    assert float(DistillationLoss(weights, w, t)(same, student)) == pytest.approx(
        (1 - w) * (pixel_w @ ce) / pixel_w.sum(), rel=1e-5
    )
    with pytest.raises(ValueError, match="weight must be in 0..1"):
        DistillationLoss(weights, 1.5)


def test_teacher_logits_are_scaled_cropped_and_flipped_with_the_image(tmp_path):
    dataset = synthetic_dataset(train=4, val=1, size=(48, 64))
    samples = dataset.split("train")
    files = []
    for i, sample in enumerate(samples):  # a "teacher" that is the label, one-hot, as logits
        label = sample.load(dataset.config)[1]
        files.append(tmp_path / f"{i}.npy")
        np.save(files[-1], (10.0 * np.eye(11)[label]).astype(np.float16))
    ds = make_dataset(
        samples,
        dataset.config,
        input_size=(48, 64),
        crop_size=(32, 40),
        batch_size=4,
        training=True,
        seed=3,
        soft_targets=files,
    )
    for _ in range(2):  # two epochs of different crops, scales and flips
        images, packed = next(iter(ds))
        assert images.shape == (4, 32, 40, 3) and packed.shape == (4, 32, 40, 12)
        labels, soft = packed[..., 0].numpy(), packed[..., 1:].numpy()
        # the labels are resized nearest and the logits bilinear: away from class borders the
        # teacher's class is the label
        agree = (soft.argmax(-1) == labels).mean()
        assert agree > 0.9, agree


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def tiny_teacher(path) -> None:
    keras.utils.set_random_seed(0)
    segnet_tf.build_model("segnet-basic", (32, 48, 3), 11, width=0.125).save(path)


def test_the_teacher_runs_once_per_frame_and_its_cache_is_reused(tmp_path):
    dataset = synthetic_dataset(train=3, val=1, size=(32, 48))
    samples = dataset.split("train")
    teacher = tmp_path / "teacher.keras"
    tiny_teacher(teacher)
    files = teacher_logits(teacher, samples, dataset.config, tmp_path / "cache", (32, 48), 2)
    model = keras.models.load_model(teacher)
    for sample, file in zip(samples, files, strict=True):
        expected = model(sample.load(dataset.config)[0][None].astype(np.float32))[0].numpy()
        np.testing.assert_allclose(np.load(file), expected, atol=2e-2 * np.abs(expected).max())
    stamps = [f.stat().st_mtime_ns for f in files]
    again = teacher_logits(teacher, samples, dataset.config, tmp_path / "cache", (32, 48), 2)
    assert [f.stat().st_mtime_ns for f in again] == stamps  # reused, not recomputed
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["samples"] == [s.name for s in samples] and manifest["size"] == [32, 48]
    other = segnet_tf.build_model("segnet-basic", (32, 48, 3), 5, width=0.125)
    other.save(tmp_path / "five.keras")
    with pytest.raises(ValueError, match="predicts 5 classes, the dataset has 11"):
        teacher_logits(tmp_path / "five.keras", samples, dataset.config, tmp_path / "c2", (32, 48))


@pytest.mark.slow
def test_a_run_with_a_teacher_trains_and_caches_its_logits(tmp_path):
    teacher = tmp_path / "teacher.keras"
    tiny_teacher(teacher)
    config = TrainConfig(
        out=str(tmp_path / "run"),
        model="segnet-basic",
        width=0.125,
        input_size=(32, 48),
        epochs=2,
        batch_size=4,
        synthetic_train=8,
        synthetic_val=4,
        teacher=str(teacher),
        distill_weight=0.7,
    )
    with pytest.raises(KeyboardInterrupt):
        train(config, [StopAfterFirstEpoch()], verbose=0)
    cached = sorted((tmp_path / "run" / "teacher").glob("*.npy"))
    stamps = [f.stat().st_mtime_ns for f in cached]
    result = train(replace(config, resume=True), verbose=0)  # the loss and metric reload
    assert len(cached) == 8 and [f.stat().st_mtime_ns for f in cached] == stamps
    assert np.all(np.isfinite(result.history["loss"])) and len(result.history["val_miou"]) == 2
    stored = json.loads((result.run_dir / "config.json").read_text())["train"]
    assert stored["teacher"] == str(teacher.resolve()) and stored["distill_weight"] == 0.7
    with pytest.raises(FileNotFoundError, match="--teacher .*no such model"):
        train(TrainConfig(out=str(tmp_path / "x"), teacher=str(tmp_path / "none.keras")))
