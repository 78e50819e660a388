"""SegNet's pooling indices and index unpooling (Badrinarayanan et al., TPAMI 2017, section 3).

The encoder's 2x2 max pooling remembers *where* each maximum came from; the decoder puts each value
back at that position and leaves zeros elsewhere, so boundaries survive upsampling without learned
deconvolution. ``tf.nn.max_pool_with_argmax`` gives the positions as flat indices into the whole
input tensor (``include_batch_in_index=True``), so unpooling is a single ``tf.scatter_nd`` into a
zero tensor.

Two traps shape this file. ``MaxPoolWithArgmax`` has no XLA kernel, so both layers set
``supports_jit = False`` (otherwise Keras 3 ``fit`` jit-compiles the step on GPU and crashes). And
pooling with SAME padding maps an odd size up, 45 -> 23, so unpooling cannot simply double: it
takes its output shape from the encoder tensor it mirrors (23 -> 45).

Inside a window with several equal maxima, ``tf.nn.max_pool_with_argmax`` keeps the first in
row-major order (top-left, top-right, bottom-left, bottom-right); ``export.lowering`` reproduces
exactly that rule with TFLite builtin ops.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="segnet_tf")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """2x2/stride-2 max pooling that also returns the argmax indices (the SegNet "switches").

    Returns ``(pooled, indices)``: ``indices`` are int64 flat positions in the (batch-included)
    input, ready for :class:`MaxUnpooling2D`.
    """

    def __init__(self, pool_size: int = 2, strides: int = 2, padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides
        self.padding = padding
        self.supports_jit = False

    def call(self, inputs):
        pooled, indices = tf.nn.max_pool_with_argmax(
            inputs,
            ksize=self.pool_size,
            strides=self.strides,
            padding=self.padding.upper(),
            include_batch_in_index=True,
        )
        return pooled, indices

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        size = self._pooled_size
        pooled = (n, size(h), size(w), c)
        return pooled, pooled

    def compute_output_spec(self, inputs):
        n, h, w, c = inputs.shape
        shape = (n, self._pooled_size(h), self._pooled_size(w), c)
        return (
            keras.KerasTensor(shape, dtype=inputs.dtype),
            keras.KerasTensor(shape, dtype="int64"),
        )

    def _pooled_size(self, size: int | None) -> int | None:
        if size is None:
            return None
        if self.padding == "same":
            return -(-size // self.strides)
        return (size - self.pool_size) // self.strides + 1

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="segnet_tf")
class MaxUnpooling2D(keras.layers.Layer):
    """Puts each value back at its stored argmax index, zeros elsewhere (non-learned).

    Called on ``[updates, indices, reference]``: ``updates`` is the decoder map at pooled
    resolution, ``indices`` come from the mirrored :class:`MaxPoolingWithArgmax2D`, and
    ``reference`` is the tensor that pooling took as input; only its shape is used, so odd sizes
    come back exactly and the batch size stays dynamic.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False

    def call(self, inputs):
        updates, indices, reference = inputs
        out_shape = tf.shape(reference, out_type=tf.int64)
        flat = tf.scatter_nd(
            tf.reshape(indices, [-1, 1]),
            tf.reshape(updates, [-1]),
            tf.reshape(tf.reduce_prod(out_shape), [1]),
        )
        out = tf.reshape(flat, out_shape)
        return tf.ensure_shape(out, reference.shape)

    def compute_output_shape(self, input_shapes):
        updates, _, reference = input_shapes
        return (*reference[:3], updates[3])

    def compute_output_spec(self, inputs):
        updates, _, reference = inputs
        return keras.KerasTensor((*reference.shape[:3], updates.shape[3]), dtype=updates.dtype)


@keras.saving.register_keras_serializable(package="segnet_tf")
class MonteCarloDropout(keras.layers.Dropout):
    """Dropout that Bayesian SegNet keeps on at test time while :attr:`sampling` is set.

    Batch norm must stay in inference mode during Monte Carlo sampling, so the model is not called
    with ``training=True``; instead :func:`segnet_tf.prediction.monte_carlo_predict` flips
    ``sampling``.
    """

    sampling: bool = False

    def call(self, inputs, training=False):
        return super().call(inputs, training=bool(training) or self.sampling)
