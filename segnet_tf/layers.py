"""SegNet's pooling indices and index unpooling (Badrinarayanan et al., TPAMI 2017, section 3).

The encoder's 2x2 max pooling remembers *where* each maximum came from; the decoder puts each value
back at that position and leaves zeros elsewhere, so boundaries survive upsampling without learned
deconvolution. ``tf.nn.max_pool_with_argmax`` gives the positions as flat indices into the whole
input tensor (``include_batch_in_index=True``), so unpooling is a single ``tf.scatter_nd`` into a
zero tensor.

The resampling of the study's other decoders (:class:`CropToMatch`, :class:`BilinearUpsampling`)
sits here too: every layer a saved segnet-tf model names is registered by this one module.

Two traps shape this file. ``MaxPoolWithArgmax`` has no XLA kernel, so both layers set
``supports_jit = False`` (otherwise Keras 3 ``fit`` jit-compiles the step on GPU and crashes). And
pooling with SAME padding maps an odd size up, 45 -> 23, so unpooling cannot simply double: it
takes its output shape from the encoder tensor it mirrors (23 -> 45).

Inside a window with several equal maxima, ``tf.nn.max_pool_with_argmax`` keeps the first in
row-major order (top-left, top-right, bottom-left, bottom-right); the switch-mask twins below
reproduce exactly that rule with TFLite builtin ops, for the exporter.


The builtin-op twins, :class:`MaxPoolingWithMask2D` and :class:`MaskedUnpooling2D`: neither
``tf.nn.max_pool_with_argmax`` nor ``tf.scatter_nd`` can enter an int8 TFLite or Edge TPU model, so
the exporter (:mod:`segnet_tf.export.lowering`) swaps these in. Pooling emits a one-hot *switch
mask* instead of indices, and unpooling writes each value where its mask is one.

Two layouts of the mask (``LOWERINGS``):

* ``step`` (int8 cpu exports) and ``step-conv`` (float32 exports): the mask lives at the *pooled*
  resolution, one channel group per window position (``space_to_depth`` order), so every
  comparison runs on a quarter of the pixels and nothing is upsampled before unpooling::

      x0, x1, x2, x3 = space_to_depth(x)             # the four positions of every window
      e_k            = x_k == max_pool(x)
      mask_k         = e_k and not (e_0 or ... or e_{k-1})
      unpooled       = depth_to_space(mask * y)       # y broadcast over the four groups

  Equality is a step, ``relu(1 - gain * (max - x_k))`` (``max - x_k >= 0``): one SUB and one 1x1
  DEPTHWISE_CONV_2D with bias and fused ReLU, which XNNPACK runs (EQUAL and SELECT_V2 it does not).
  The tie-break is where the two differ. ``step`` slices e_0..e_2 out and multiplies:
  ``e0, (1-e0) e1, (1-e0)(1-e1) e2, (1-e0)(1-e1)(1-e2)`` (five small ops on int8 codes).
  ``step-conv`` steps all four groups at once and writes the rule as one causal depthwise
  convolution along the group axis, ``mask_k = relu(e_k - e_0 - ... - e_{k-1})`` (no slices, no
  concatenation: cheaper in float32, where every copy moves four bytes per value; in int8 on x86
  the five small ops win). In float32 ``FLOAT_STEP_GAIN`` saturates on every difference of at
  least the smallest normal float, so the step equals EQUAL. In int8, with
  :func:`equalize_activations`, every pooling input spans [0, 6], one code is 6/255 and
  ``STEP_GAIN`` (two codes' worth) saturates on any difference int8 can represent; the step's
  output range is exactly [0, 1], so 1 is an exact int8 code and the products and differences
  above stay exactly 0 or 1.
* ``exact`` (float16 exports) and ``edgetpu`` (the Edge TPU has no DEPTH_TO_SPACE, EQUAL, SELECT
  or CAST, and takes no rank-5 tensor): the mask lives at the input resolution::

      window_max = upsample(max_pool(x))
      rank       = (x == window_max) * priority       # priority = 4, 3, 2, 1 in each 2x2 window
      mask       = rank == upsample(max_pool(rank))   # keeps the first maximum only
      unpooled   = upsample(y) * mask

  ``exact`` writes equality with EQUAL and SELECT_V2 (equal to the argmax network bit for bit;
  float16 cannot hold the float32 gain) and upsamples with CONCATENATION + DEPTH_TO_SPACE;
  ``edgetpu`` uses the int8 step and RESIZE_NEAREST_NEIGHBOR.

Odd sizes: SAME pooling maps 45 -> 23. The pooled layouts pad the pooling input with a zero row
(never a first maximum: every SegNet pooling input is a ReLU output, >= 0, and padding comes last
in its window) and crop the unpooled map back to 45 with a stride-1 slice; the full-resolution
layout upsamples to 46 and crops likewise.
"""

from __future__ import annotations

import keras
import numpy as np
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


class FixedDropout(keras.layers.Layer):
    """:class:`MonteCarloDropout` with its N masks drawn in advance, for export: sample ``i`` of a
    batch of exactly N is multiplied by ``masks[i]`` (0 or ``1 / (1 - rate)``, as Keras' inverted
    dropout). TFLite has no random ops a board could run, so Monte Carlo sampling ships as one
    batch of N copies of a frame through a network with these constants in it (one MUL each).

    Never saved as ``.keras``: it lives only in the networks that the exporter builds and traces.
    """

    def __init__(self, masks: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.masks = np.asarray(masks, np.float32)

    def call(self, inputs):
        return inputs * tf.constant(self.masks, dtype=inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


# --------------------------------------------------------------------------- resampling
# The other decoders of the paper's study (segnet_tf.models.decoders) upsample by doubling: a
# doubled odd side is one too many (45 -> 23 -> 46), cut back to the encoder map's size.


@keras.saving.register_keras_serializable(package="segnet_tf")
class CropToMatch(keras.layers.Layer):
    """Called on ``[x, reference]``: ``x`` cut to the reference's height and width (a doubled odd
    side back to the encoder's size, 46 -> 45); only the reference's shape is used."""

    def call(self, inputs):
        x, reference = inputs
        height, width = reference.shape[1], reference.shape[2]
        if height is not None and width is not None:
            return crop_to(x, height, width)
        size = tf.shape(reference)[1:3]
        return x[:, : size[0], : size[1], :]

    def compute_output_spec(self, inputs):
        x, reference = inputs
        return keras.KerasTensor((x.shape[0], *reference.shape[1:3], x.shape[3]), dtype=x.dtype)


@keras.saving.register_keras_serializable(package="segnet_tf")
class BilinearUpsampling(keras.initializers.Initializer):
    """Kernel of a stride-2, SAME transposed convolution that starts as 2x bilinear interpolation
    of every channel (FCN's initialisation), whatever its (even) size.

    TF's SAME transposed convolution with kernel ``k`` puts input ``i`` at outputs
    ``2i - (k-2)//2 + t``; half-pixel bilinear interpolation gives outputs ``2i-1 .. 2i+2`` the
    weights 1/4, 3/4, 3/4, 1/4 of input ``i``. Away from the border it equals
    ``tf.image.resize(..., "bilinear")``; channel ``c`` reads channel ``c`` only.
    """

    def __call__(self, shape, dtype=None):
        size, _, out_channels, in_channels = shape
        if size < 4 or size % 2:
            raise ValueError(f"bilinear upsampling needs an even kernel >= 4, got {size}")
        taps = np.zeros(size, np.float32)
        first = (size - 2) // 2 - 1
        taps[first : first + 4] = (0.25, 0.75, 0.75, 0.25)
        kernel = np.zeros(shape, np.float32)
        for c in range(min(out_channels, in_channels)):
            kernel[:, :, c, c] = np.outer(taps, taps)
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")


# --------------------------------------------------------------------------- builtin-op twins

LOWERINGS = ("exact", "step", "step-conv", "edgetpu")
POOLED_LOWERINGS = ("step", "step-conv")  # the mask at the pooled resolution
ACTIVATION_RANGE = 6.0  # every equalized ReLU output spans [0, 6] (a fused ReLU6)
STEP_GAIN = 2 * 255 / ACTIVATION_RANGE  # two int8 codes of a [0, 6] tensor saturate the step
# float32: any difference of at least the smallest normal float (2^-126) saturates the step (inf
# included), so the step equals EQUAL on every finite input bar subnormal differences, and unlike
# EQUAL/SELECT_V2 it runs inside XNNPACK. Not for float16, where 2^126 overflows.
FLOAT_STEP_GAIN = 2.0**126
WINDOW = 4  # positions of a 2x2 pooling window


def window_priority(height: int, width: int) -> np.ndarray:
    """``[1, H, W, 1]`` constant: 4, 3, 2, 1 at the top-left, top-right, bottom-left, bottom-right
    of every 2x2 window, so the first maximum of a window has the highest rank."""
    rows = np.arange(height)[:, None] % 2
    cols = np.arange(width)[None, :] % 2
    return (4 - 2 * rows - cols).astype(np.float32)[None, :, :, None]


def upsample_to(x: tf.Tensor, height: int, width: int, lowering: str = "exact") -> tf.Tensor:
    """Nearest-neighbour 2x upsampling cropped to ``height x width`` (odd sizes)."""
    h, w = x.shape[1], x.shape[2]
    if lowering == "edgetpu":
        up = tf.image.resize(x, (2 * h, 2 * w), method="nearest")
    else:
        up = tf.nn.depth_to_space(tf.concat([x, x, x, x], axis=-1), 2)
    return crop_to(up, height, width)


def crop_to(x: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """``x`` without the rows and columns past ``height x width`` (a stride-1 slice, or nothing)."""
    if (x.shape[1], x.shape[2]) != (height, width):
        x = x[:, :height, :width, :]
    return x


def step_is_max(gap: tf.Tensor, gain: float) -> tf.Tensor:
    """1.0 where ``gap`` (a maximum minus a value, >= 0) is 0, else 0.0 once ``gain * gap >= 1``.

    ``relu(1 - gain * gap)`` as a 1x1 depthwise convolution with bias and fused ReLU: one op that
    XNNPACK and the Edge TPU run, whose int8 output range is exactly [0, 1].
    """
    channels = gap.shape[-1]
    kernel = tf.constant(np.full((1, 1, channels, 1), -gain, np.float32), dtype=gap.dtype)
    bias = tf.ones((channels,), dtype=gap.dtype)
    return tf.nn.relu(tf.nn.depthwise_conv2d(gap, kernel, [1, 1, 1, 1], "VALID") + bias)


def window_phases(x: tf.Tensor) -> tf.Tensor:
    """``[N, h, w, 4C]``: the four positions of every 2x2 window (``space_to_depth`` order), odd
    maps zero-padded first (exact on ReLU outputs: a 0 is never the first maximum there)."""
    height, width = x.shape[1], x.shape[2]
    if height % 2 or width % 2:
        x = tf.pad(x, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]])
    return tf.nn.space_to_depth(x, 2)


def grouped_is_max(phases: tf.Tensor, pooled: tf.Tensor, gain: float) -> tf.Tensor:
    """``[N, h*w, 4, C]``: e_k of every window position at once, the groups along the width
    (one broadcast SUB against the pooled map, one step)."""
    _, h, w, channels = pooled.shape
    grouped = tf.reshape(phases, (-1, h * w, WINDOW, channels))
    return step_is_max(tf.reshape(pooled, (-1, h * w, 1, channels)) - grouped, gain)


def window_mask(x: tf.Tensor, pooled: tf.Tensor, gain: float, lowering: str = "step") -> tf.Tensor:
    """``[N, h, w, 4C]``: 1.0 in the channel group of the window position holding the first
    maximum, in ``space_to_depth`` order (the pooled layouts). ``x`` must be >= 0 (ReLU'd)."""
    phases = window_phases(x)
    if lowering == "step-conv":
        first = first_in_window(grouped_is_max(phases, pooled, gain))
        return tf.reshape(first, (-1, *pooled.shape[1:3], WINDOW * pooled.shape[3]))
    channels = x.shape[3]
    e0, e1, e2 = (
        step_is_max(pooled - phases[..., k * channels : (k + 1) * channels], gain)
        for k in range(WINDOW - 1)
    )
    not_first = 1.0 - e0
    m1 = not_first * e1
    not_first_two = not_first - m1
    m2 = not_first_two * e2
    return tf.concat([e0, m1, m2, not_first_two - m2], axis=-1)


def first_in_window(is_max: tf.Tensor) -> tf.Tensor:
    """``relu(e_k - e_0 - ... - e_{k-1})`` along axis 2 (the 4 window positions) of 0/1 flags:
    1 only at the first 1. A depthwise 1x7 SAME convolution with taps -1, -1, -1, 1, 0, 0, 0:
    output k reads inputs k-3..k+3, zero-padded, so it sees exactly the positions before k."""
    channels = is_max.shape[-1]
    taps = np.zeros((1, 2 * WINDOW - 1, channels, 1), np.float32)
    taps[0, : WINDOW - 1] = -1.0
    taps[0, WINDOW - 1] = 1.0
    kernel = tf.constant(taps, dtype=is_max.dtype)
    return tf.nn.relu(tf.nn.depthwise_conv2d(is_max, kernel, [1, 1, 1, 1], "SAME"))


def first_max_mask(x: tf.Tensor, pooled: tf.Tensor, lowering: str, gain: float) -> tf.Tensor:
    """Where ``x`` holds the first maximum of its 2x2 window, at ``x``'s resolution: bool
    (``exact``) or 1.0/0.0 (``edgetpu``)."""
    height, width = x.shape[1], x.shape[2]
    window_max = upsample_to(pooled, height, width, lowering)
    priority = tf.constant(window_priority(height, width), dtype=x.dtype)
    if lowering == "exact":
        # SELECT_V2 keeps int8 end to end; a CAST of the bool would leave a float island.
        rank = tf.where(tf.equal(x, window_max), priority, tf.zeros_like(priority))
    else:
        rank = step_is_max(window_max - x, gain) * priority
    max_rank = upsample_to(tf.nn.max_pool2d(rank, 2, 2, "SAME"), height, width, lowering)
    if lowering == "exact":
        return tf.equal(rank, max_rank)
    return tf.nn.relu(1.0 - (max_rank - rank))


@keras.saving.register_keras_serializable(package="segnet_tf")
class MaxPoolingWithMask2D(keras.layers.Layer):
    """Drop-in for :class:`MaxPoolingWithArgmax2D` made of builtin ops: returns ``(pooled, mask)``
    where ``mask`` is the one-hot argmax instead of flat indices (layout: see the module doc)."""

    def __init__(self, lowering: str = "exact", gain: float = STEP_GAIN, **kwargs):
        super().__init__(**kwargs)
        if lowering not in LOWERINGS:
            raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
        self.lowering = lowering
        self.gain = float(gain)

    def call(self, inputs):
        pooled = tf.nn.max_pool2d(inputs, 2, 2, "SAME")
        if self.lowering in POOLED_LOWERINGS:
            return pooled, window_mask(inputs, pooled, self.gain, self.lowering)
        return pooled, first_max_mask(inputs, pooled, self.lowering, self.gain)

    def compute_output_spec(self, inputs):
        n, h, w, c = inputs.shape
        pooled = keras.KerasTensor((n, -(-h // 2), -(-w // 2), c), dtype=inputs.dtype)
        if self.lowering in POOLED_LOWERINGS:
            mask = keras.KerasTensor((*pooled.shape[:3], WINDOW * c), dtype=inputs.dtype)
        else:
            mask_dtype = "bool" if self.lowering == "exact" else inputs.dtype
            mask = keras.KerasTensor(inputs.shape, dtype=mask_dtype)
        return pooled, mask

    def get_config(self):
        return {**super().get_config(), "lowering": self.lowering, "gain": self.gain}


@keras.saving.register_keras_serializable(package="segnet_tf")
class MaskedUnpooling2D(keras.layers.Layer):
    """Drop-in for :class:`MaxUnpooling2D`: called on ``[updates, mask, reference]``, puts every
    value where the mask is one, at the reference's (possibly odd) size."""

    def __init__(self, lowering: str = "exact", **kwargs):
        super().__init__(**kwargs)
        if lowering not in LOWERINGS:
            raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
        self.lowering = lowering

    def call(self, inputs):
        updates, mask, reference = inputs
        height, width = reference.shape[1], reference.shape[2]
        if self.lowering in POOLED_LOWERINGS:
            _, h, w, c = updates.shape
            grouped = tf.reshape(mask, (-1, h, w, WINDOW, c)) * updates[:, :, :, None, :]
            up = tf.nn.depth_to_space(tf.reshape(grouped, (-1, h, w, WINDOW * c)), 2)
            return crop_to(up, height, width)
        up = upsample_to(updates, height, width, self.lowering)
        if mask.dtype == tf.bool:
            return tf.where(mask, up, tf.constant(0.0, up.dtype))
        return up * mask

    def compute_output_spec(self, inputs):
        updates, _, reference = inputs
        return keras.KerasTensor((*reference.shape[:3], updates.shape[3]), dtype=updates.dtype)

    def get_config(self):
        return {**super().get_config(), "lowering": self.lowering}
