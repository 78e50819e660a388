"""Index unpooling lowered to TFLite builtin ops, and the rewrite of a trained SegNet to use it.

``tf.nn.max_pool_with_argmax`` is not a TFLite builtin and ``tf.scatter_nd`` is not on the Edge
TPU, so neither can enter an int8 model. The lowering keeps what the indices mean instead of the
indices: a position receives the unpooled value iff it holds the maximum of its 2x2 window *and*
no earlier position (row-major: top-left, top-right, bottom-left, bottom-right) of that window
holds the same maximum. That is the rule of ``tf.nn.max_pool_with_argmax``, and ties are not
rare: windows of all-zero ReLU outputs are everywhere, and int8 rounding makes more. Pooling
therefore emits a one-hot *switch mask* at the input resolution, and unpooling is
nearest-neighbour upsampling times the mask:

    window_max = upsample(max_pool(x))                # MAX_POOL_2D, upsampling
    is_max     = x == window_max                      # ties: several ones per window
    rank       = is_max * priority                    # priority = 4, 3, 2, 1 in each 2x2 window
    mask       = rank == upsample(max_pool(rank))     # keeps the first maximum only
    unpooled   = upsample(y) * mask

Three flavours differ in how equality and upsampling are written (``LOWERINGS``):

* ``exact`` (float16 exports): EQUAL and SELECT_V2. Equal to the argmax network bit for bit.
* ``step`` (float32 and int8 cpu exports): since ``window_max - x >= 0``, equality is
  ``1 - min(gain * (window_max - x), 1)``, a step made of SUB, MUL and MINIMUM. With
  :func:`equalize_activations` every pooling input spans [0, 6], one int8 code is 6/255 and
  ``STEP_GAIN`` (two codes' worth) saturates on any difference int8 can represent, so on int8
  codes the step is as exact as EQUAL; in float32 ``FLOAT_STEP_GAIN`` makes it so on every
  normal float. The second comparison is between small integers (0..4):
  ``relu(1 - (max_rank - rank))``. Unlike EQUAL and SELECT_V2, these ops all run in XNNPACK.
* ``edgetpu``: the ``step`` arithmetic with RESIZE_NEAREST_NEIGHBOR upsampling, because the Edge
  TPU has no EQUAL, SELECT, CAST or DEPTH_TO_SPACE.

``exact`` and ``step`` upsample by 2 with CONCATENATION + DEPTH_TO_SPACE (four copies of every
value into its 2x2 block), which XNNPACK runs and RESIZE_NEAREST_NEIGHBOR it does not.

int8 precision: a tensor gets one int8 scale for all its channels, so channels with a small range
get few levels and their 2x2 windows tie after rounding, moving unpooled values away from the
float argmax. :func:`equalize_activations` rescales every ReLU channel to [0, 6] (compensated in
the next convolution, so the function is unchanged).

Odd sizes: SAME pooling maps 45 -> 23; upsampling gives 46 and a stride-1 slice crops back to 45
(the extra row is the last window's padding, which never holds a maximum).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from segnet_tf.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D, MonteCarloDropout

LOWERINGS = ("exact", "step", "edgetpu")
ACTIVATION_RANGE = 6.0  # every equalized ReLU output spans [0, 6] (a fused ReLU6)
STEP_GAIN = 2 * 255 / ACTIVATION_RANGE  # two int8 codes of a [0, 6] tensor saturate the step
# float32: any difference of at least the smallest normal float (2^-126) saturates the step (inf
# included), so ``step`` equals EQUAL on every finite input bar subnormal differences, and unlike
# EQUAL/SELECT_V2 it runs inside XNNPACK. Not for float16, where 2^126 overflows.
FLOAT_STEP_GAIN = 2.0**126


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
    if (2 * h, 2 * w) != (height, width):
        up = up[:, :height, :width, :]
    return up


def first_max_mask(x: tf.Tensor, pooled: tf.Tensor, lowering: str, gain: float) -> tf.Tensor:
    """Where ``x`` holds the first maximum of its 2x2 window: bool (exact) or 1.0/0.0 (step)."""
    height, width = x.shape[1], x.shape[2]
    window_max = upsample_to(pooled, height, width, lowering)
    priority = tf.constant(window_priority(height, width), dtype=x.dtype)
    if lowering == "exact":
        # SELECT_V2 keeps int8 end to end; a CAST of the bool would leave a float island.
        rank = tf.where(tf.equal(x, window_max), priority, tf.zeros_like(priority))
    else:
        # relu6 fuses into the MUL, so its int8 output range is [0, 6], never gain * range(x).
        step = tf.minimum(tf.nn.relu6(gain * (window_max - x)), 1.0)
        rank = (1.0 - step) * priority
    max_rank = upsample_to(tf.nn.max_pool2d(rank, 2, 2, "SAME"), height, width, lowering)
    if lowering == "exact":
        return tf.equal(rank, max_rank)
    return tf.nn.relu(1.0 - (max_rank - rank))


@keras.saving.register_keras_serializable(package="segnet_tf")
class MaxPoolingWithMask2D(keras.layers.Layer):
    """Drop-in for :class:`MaxPoolingWithArgmax2D` made of builtin ops: returns ``(pooled, mask)``
    where ``mask`` is the one-hot argmax at the input resolution instead of flat indices."""

    def __init__(self, lowering: str = "exact", gain: float = STEP_GAIN, **kwargs):
        super().__init__(**kwargs)
        if lowering not in LOWERINGS:
            raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
        self.lowering = lowering
        self.gain = float(gain)

    def call(self, inputs):
        pooled = tf.nn.max_pool2d(inputs, 2, 2, "SAME")
        return pooled, first_max_mask(inputs, pooled, self.lowering, self.gain)

    def compute_output_spec(self, inputs):
        n, h, w, c = inputs.shape
        pooled = keras.KerasTensor((n, -(-h // 2), -(-w // 2), c), dtype=inputs.dtype)
        mask_dtype = "bool" if self.lowering == "exact" else inputs.dtype
        return pooled, keras.KerasTensor(inputs.shape, dtype=mask_dtype)

    def get_config(self):
        return {**super().get_config(), "lowering": self.lowering, "gain": self.gain}


@keras.saving.register_keras_serializable(package="segnet_tf")
class MaskedUnpooling2D(keras.layers.Layer):
    """Drop-in for :class:`MaxUnpooling2D`: called on ``[updates, mask, reference]``, returns
    ``upsample(updates) * mask`` at the reference's (possibly odd) size."""

    def __init__(self, lowering: str = "exact", **kwargs):
        super().__init__(**kwargs)
        if lowering not in LOWERINGS:
            raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
        self.lowering = lowering

    def call(self, inputs):
        updates, mask, _reference = inputs
        up = upsample_to(updates, mask.shape[1], mask.shape[2], self.lowering)
        if mask.dtype == tf.bool:
            return tf.where(mask, up, tf.constant(0.0, up.dtype))
        return up * mask

    def compute_output_spec(self, inputs):
        updates, mask, _ = inputs
        return keras.KerasTensor((*mask.shape[:3], updates.shape[3]), dtype=updates.dtype)

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
    ``step``/``edgetpu``, right for activations equalized by :func:`equalize_activations`. A static
    ``batch_size`` gives the static shapes that TFLite accelerators want.
    """
    if lowering not in LOWERINGS:
        raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")

    return rebuild(
        model,
        pool=lambda name: MaxPoolingWithMask2D(lowering, gain, name=name),
        unpool=lambda name: MaskedUnpooling2D(lowering, name=name),
        batch_size=batch_size,
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
