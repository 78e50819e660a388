"""Index unpooling lowered to TFLite builtin ops, and the rewrite of a trained SegNet to use it.

``tf.nn.max_pool_with_argmax`` is not a TFLite builtin and ``tf.scatter_nd`` is not on the Edge
TPU, so neither can enter an int8 model. The lowering keeps what the indices mean instead of the
indices: a position receives the unpooled value iff it holds the maximum of its 2x2 window *and*
no earlier position (row-major: top-left, top-right, bottom-left, bottom-right) of that window
holds the same maximum. That is the rule of ``tf.nn.max_pool_with_argmax``, and ties are not
rare: windows of all-zero ReLU outputs are everywhere, and int8 rounding makes more. Pooling
therefore emits a one-hot *switch mask*, and unpooling writes each value where its mask is one.

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

int8 precision: a tensor gets one int8 scale for all its channels, so channels with a small range
get few levels and their 2x2 windows tie after rounding, moving unpooled values away from the
float argmax. :func:`equalize_activations` rescales every ReLU channel to [0, 6] (compensated in
the next convolution, so the function is unchanged).

Odd sizes: SAME pooling maps 45 -> 23. The pooled layouts pad the pooling input with a zero row
(never a first maximum: every SegNet pooling input is a ReLU output, >= 0, and padding comes last
in its window) and crop the unpooled map back to 45 with a stride-1 slice; the full-resolution
layout upsamples to 46 and crops likewise.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from segnet_tf.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D, MonteCarloDropout

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


def lower_model(
    model: keras.Model,
    lowering: str = "exact",
    batch_size: int | None = 1,
    gain: float = STEP_GAIN,
) -> keras.Model:
    """Rebuild ``model`` with builtin-op pooling/unpooling, sharing its weights.

    Monte Carlo dropout becomes identity (deterministic inference). ``gain`` is the step gain of
    the step lowerings (all but ``exact``), right for activations equalized by
    :func:`equalize_activations`. A static ``batch_size`` gives the static shapes that TFLite
    accelerators want.
    """
    if lowering not in LOWERINGS:
        raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
    if lowering in POOLED_LOWERINGS:
        check_nonnegative_pooling(model)
    return rebuild(
        model,
        pool=lambda name: MaxPoolingWithMask2D(lowering, gain, name=name),
        unpool=lambda name: MaskedUnpooling2D(lowering, name=name),
        batch_size=batch_size,
    )


def check_nonnegative_pooling(model: keras.Model) -> None:
    """The pooled layouts pad odd maps with zeros, exact only on ReLU outputs: check each pooling
    input comes from a ReLU (every SegNet preset's does)."""
    for layer in model.layers:
        if isinstance(layer, MaxPoolingWithArgmax2D):
            source = layer.input._keras_history.operation
            activation = getattr(getattr(source, "activation", None), "__name__", None)
            plain_relu = isinstance(source, keras.layers.ReLU) and not source.negative_slope
            if activation not in ("relu", "relu6") and not plain_relu:
                raise ValueError(
                    f"{model.name}: pooling {layer.name!r} reads {source.name!r}, not a ReLU "
                    "output; the step lowering of the float32 and int8 exports needs "
                    "non-negative pooling inputs (conv + batch norm + ReLU, as in every preset)"
                )


def rebuild(model: keras.Model, pool, unpool, batch_size: int | None = 1) -> keras.Model:
    """Clone ``model`` with its argmax pooling and unpooling layers made by ``pool(name)`` and
    ``unpool(name)``, Monte Carlo dropout removed, and every weight shared by value."""

    def replace(layer):
        if isinstance(layer, MaxPoolingWithArgmax2D):
            return pool(layer.name)
        if isinstance(layer, MaxUnpooling2D):
            return unpool(layer.name)
        if isinstance(layer, MonteCarloDropout):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    shape = model.inputs[0].shape[1:]
    inputs = keras.Input(shape=shape, batch_size=batch_size, name=model.inputs[0].name)
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=replace)
    clone.set_weights(model.get_weights())
    return clone


def relu_chain(model: keras.Model) -> list[tuple[str, str, str]]:
    """``(batch_norm, relu, next_conv)`` names along SegNet's chain of convolutions.

    Between one convolution and the next there are only per-channel positive-homogeneous steps
    (ReLU, max pooling, its argmax, unpooling), so a channel scale can move across them.
    """
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    names = {layer.name for layer in model.layers}
    chain = []
    for conv, following in zip(convs, convs[1:], strict=False):
        bn, relu = f"{conv.name}_bn", f"{conv.name}_relu"
        if bn in names and relu in names:
            chain.append((bn, relu, following.name))
    return chain


def activation_peaks(
    model: keras.Model, images: np.ndarray, batch_size: int = 8
) -> dict[str, np.ndarray]:
    """Per-channel maximum of every ReLU output of the chain over ``images``."""
    relus = [relu for _, relu, _ in relu_chain(model)]
    probe = keras.Model(
        model.inputs,
        [keras.ops.max(model.get_layer(r).output, axis=(1, 2)) for r in relus],
    )
    outputs = probe.predict(images, batch_size=batch_size, verbose=0)
    return {r: np.max(out, axis=0) for r, out in zip(relus, outputs, strict=True)}


def equalize_activations(model: keras.Model, peaks: dict[str, np.ndarray]) -> None:
    """Give every channel of every ReLU output the range [0, 6], in place (int8 exports only).

    int8 gives a tensor one scale for all its channels, set by the largest value seen, so a
    channel that peaks at 1/20 of the tensor's maximum gets about 12 levels. Before a pooling
    that is worse than noise: its 2x2 windows tie after rounding and the unpooled value lands
    away from the float argmax. Scaling channel c by ``6 / peak_c`` in the batch norm before the
    ReLU (positive homogeneity; pooling, its argmax and unpooling commute with it) and by
    ``peak_c / 6`` in the input weights of the next convolution leaves the float function as it
    was on the calibration range; the ReLU becomes a ReLU6, which fuses into the convolution
    and pins its int8 range to exactly [0, 6].
    """
    for bn_name, relu_name, conv_name in relu_chain(model):
        peak = peaks[relu_name]
        scale = np.where(peak > 0, ACTIVATION_RANGE / np.maximum(peak, 1e-12), 1.0)
        scale = scale.astype(np.float32)
        bn = model.get_layer(bn_name)
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * scale, beta * scale, mean, var])
        model.get_layer(relu_name).activation = keras.activations.relu6
        conv = model.get_layer(conv_name)
        weights = conv.get_weights()
        weights[0] = weights[0] / scale[None, None, :, None]
        conv.set_weights(weights)
