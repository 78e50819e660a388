"""The cost floor: SegNet with unpooling replaced by plain nearest-neighbour upsampling.

Not a SegNet (it forgets where the maxima were), only the cost of its convolutions, pooling and
upsampling: the lowering's overhead is the latency of the lowered network over this one. The
clone mirrors :func:`segnet_tf.export.lowering.lower_model`, layer for layer, so both convert
the same way.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segnet_tf.export.lowering import (
    rebuild,
)
from segnet_tf.layers import (
    upsample_to,
)


class PlainMaxPool2D(keras.layers.Layer):
    """Stands in for argmax pooling: ``(max_pool(x), x)``; the second output only keeps the
    decoder's wiring, nothing reads its values, and the converter prunes it."""

    def call(self, inputs):
        return tf.nn.max_pool2d(inputs, 2, 2, "SAME"), inputs

    def compute_output_spec(self, inputs):
        n, h, w, c = inputs.shape
        pooled = keras.KerasTensor((n, -(-h // 2), -(-w // 2), c), dtype=inputs.dtype)
        return pooled, keras.KerasTensor(inputs.shape, dtype=inputs.dtype)


class NearestUnpool2D(keras.layers.Layer):
    """Stands in for index unpooling: nearest-neighbour 2x upsampling to the reference's size,
    written as the masked unpooling's ``lowering`` writes it (DEPTH_TO_SPACE, or for
    ``edgetpu`` RESIZE_NEAREST_NEIGHBOR)."""

    def __init__(self, lowering: str = "exact", **kwargs):
        super().__init__(**kwargs)
        self.lowering = lowering

    def call(self, inputs):
        updates, _, reference = inputs
        return upsample_to(updates, reference.shape[1], reference.shape[2], self.lowering)

    def compute_output_spec(self, inputs):
        updates, _, reference = inputs
        return keras.KerasTensor((*reference.shape[:3], updates.shape[3]), dtype=updates.dtype)


def floor_model(
    model: keras.Model, batch_size: int | None = 1, lowering: str = "exact"
) -> keras.Model:
    """``model`` with plain max pooling and nearest upsampling, sharing its weights."""
    return rebuild(
        model,
        pool=lambda name: PlainMaxPool2D(name=name),
        unpool=lambda name: NearestUnpool2D(lowering, name=name),
        batch_size=batch_size,
    )
