"""The SegNet loss on hand-worked pixels: void is ignored, weights scale each class, the mean is
normalised by the summed weights (Caffe's normalised SoftmaxWithLoss with class weighting)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from segnet_tf.losses import WeightedSparseCategoricalCrossentropy

LN2 = math.log(2.0)

# Three pixels in a 1x1x3 image with 2 classes: label 0 with logits (0, 0) -> ce = ln 2; label 1
# with logits (ln 3, 0) -> p(1) = 1/4, ce = ln 4; the third is void with confident wrong logits.
LOGITS = np.array([[[[0.0, 0.0], [math.log(3.0), 0.0], [50.0, -50.0]]]], np.float32)


def labels(void: int) -> np.ndarray:
    return np.array([[[0, 1, void]]], np.int32)


@pytest.mark.parametrize("void", [2, 255])
def test_unweighted_mean_is_over_non_void_pixels(void):
    loss = WeightedSparseCategoricalCrossentropy([1.0, 1.0])
    assert float(loss(labels(void), LOGITS)) == pytest.approx((LN2 + 2 * LN2) / 2, rel=1e-6)


def test_class_weights_scale_each_pixel_and_normalise_by_their_sum():
    loss = WeightedSparseCategoricalCrossentropy([1.0, 3.0])
    expected = (1 * LN2 + 3 * 2 * LN2) / (1 + 3)  # = 7/4 ln 2
    assert float(loss(labels(2), LOGITS)) == pytest.approx(expected, rel=1e-6)
    # Scaling every weight by the same factor leaves the normalised loss unchanged.
    scaled = WeightedSparseCategoricalCrossentropy([10.0, 30.0])
    assert float(scaled(labels(2), LOGITS)) == pytest.approx(expected, rel=1e-6)


def test_void_pixels_get_no_gradient_and_an_all_void_batch_has_loss_zero():
    loss = WeightedSparseCategoricalCrossentropy([1.0, 3.0])
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        value = loss(labels(2), logits)
    grad = tape.gradient(value, logits).numpy()
    assert np.all(grad[0, 0, 2] == 0) and np.all(grad[0, 0, :2] != 0)
    assert float(loss(np.full((1, 1, 3), 2, np.int32), LOGITS)) == 0.0


def test_float16_logits_are_computed_in_float32():
    loss = WeightedSparseCategoricalCrossentropy([1.0, 3.0])
    value = loss(labels(2), tf.constant(LOGITS, tf.float16))
    assert value.dtype == tf.float32
    assert float(value) == pytest.approx(7 / 4 * LN2, rel=1e-3)


def test_serialises_and_rejects_bad_weights():
    loss = WeightedSparseCategoricalCrossentropy([0.5, 2.0])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, WeightedSparseCategoricalCrossentropy)
    assert restored.class_weights == [0.5, 2.0]
    with pytest.raises(ValueError, match="class_weights"):
        WeightedSparseCategoricalCrossentropy([1.0, -1.0])
