"""Candidate formulations of the lowering, measured against ``export.lowering`` by the profile.

Two changes, each aimed at an op that XNNPACK (TFLite's default CPU delegate) does not run:

* ``d2s`` upsampling: nearest-neighbour 2x as ``DEPTH_TO_SPACE(CONCATENATION([y] * 4))`` instead
  of ``RESIZE_NEAREST_NEIGHBOR``. Channel block ``(i * 2 + j) * C + c`` of the concatenation is
  ``y[..., c]`` for every ``(i, j)``, so it is the same copy, bit for bit, in float and int8. Its
  gradient (SPACE_TO_DEPTH and a sum) also compiles under XLA, which ``ResizeNearestNeighborGrad``
  does not.
* ``step`` equality (float32 only): ``window_max - x >= 0``, and ``1 - min(2**126 * d, 1)`` is 1
  exactly where ``d == 0`` for every difference of at least 2**-126 (the smallest normal float), so
  it replaces EQUAL and SELECT_V2 by SUB, MUL and MINIMUM. It differs from EQUAL only when two
  values of a window differ by a subnormal amount, and on inf/NaN inputs.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from export.lowering import window_priority
from segnet_tf.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D, MonteCarloDropout

STEP_GAIN = 2.0**126
VARIANTS = {
    # name: (equality, upsampling)
    "exact+d2s": ("exact", "d2s"),
    "step+d2s": ("step", "d2s"),
}


def upsample_d2s(x: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Nearest-neighbour 2x upsampling as CONCATENATION + DEPTH_TO_SPACE, cropped to size."""
    up = tf.nn.depth_to_space(tf.concat([x, x, x, x], axis=-1), 2)
    if tuple(up.shape[1:3]) != (height, width):
        up = up[:, :height, :width, :]
    return up


def first_max_mask_variant(x: tf.Tensor, pooled: tf.Tensor, equality: str) -> tf.Tensor:
    """:func:`export.lowering.first_max_mask` with d2s upsampling; ``step`` equality is float."""
    height, width = x.shape[1], x.shape[2]
    window_max = upsample_d2s(pooled, height, width)
    priority = tf.constant(window_priority(height, width), dtype=x.dtype)
    if equality == "exact":
        rank = tf.where(tf.equal(x, window_max), priority, tf.zeros_like(priority))
        max_rank = upsample_d2s(tf.nn.max_pool2d(rank, 2, 2, "SAME"), height, width)
        return tf.equal(rank, max_rank)
    rank = (1.0 - tf.minimum((window_max - x) * STEP_GAIN, 1.0)) * priority
    max_rank = upsample_d2s(tf.nn.max_pool2d(rank, 2, 2, "SAME"), height, width)
    return tf.nn.relu(1.0 - (max_rank - rank))


class VariantPool2D(keras.layers.Layer):
    def __init__(self, equality: str = "exact", **kwargs):
        super().__init__(**kwargs)
        self.equality = equality

    def call(self, inputs):
        pooled = tf.nn.max_pool2d(inputs, 2, 2, "SAME")
        return pooled, first_max_mask_variant(inputs, pooled, self.equality)

    def compute_output_spec(self, inputs):
        n, h, w, c = inputs.shape
        pooled = keras.KerasTensor((n, -(-h // 2), -(-w // 2), c), dtype=inputs.dtype)
        mask_dtype = "bool" if self.equality == "exact" else inputs.dtype
        return pooled, keras.KerasTensor(inputs.shape, dtype=mask_dtype)


class VariantUnpool2D(keras.layers.Layer):
    def call(self, inputs):
        updates, mask, _ = inputs
        up = upsample_d2s(updates, mask.shape[1], mask.shape[2])
        if mask.dtype == tf.bool:
            return tf.where(mask, up, tf.constant(0.0, up.dtype))
        return up * mask

    def compute_output_spec(self, inputs):
        updates, mask, _ = inputs
        return keras.KerasTensor((*mask.shape[:3], updates.shape[3]), dtype=updates.dtype)


def variant_model(model: keras.Model, variant: str, batch_size: int | None = 1) -> keras.Model:
    """``model`` lowered with :data:`VARIANTS` ``variant``, sharing its weights."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    equality, _ = VARIANTS[variant]

    def replace(layer):
        if isinstance(layer, MaxPoolingWithArgmax2D):
            return VariantPool2D(equality, name=layer.name)
        if isinstance(layer, MaxUnpooling2D):
            return VariantUnpool2D(name=layer.name)
        if isinstance(layer, MonteCarloDropout):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    shape = model.inputs[0].shape[1:]
    inputs = keras.Input(shape=shape, batch_size=batch_size, name=model.inputs[0].name)
    lowered = keras.models.clone_model(model, input_tensors=inputs, clone_function=replace)
    lowered.set_weights(model.get_weights())
    return lowered
