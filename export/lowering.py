"""The rewrite of a trained SegNet to builtin-op pooling/unpooling, and int8 equalization.

``tf.nn.max_pool_with_argmax`` is not a TFLite builtin and ``tf.scatter_nd`` is not on the Edge
TPU, so neither can enter an int8 model. The lowering keeps what the indices mean instead of the
indices: a position receives the unpooled value iff it holds the maximum of its 2x2 window *and*
no earlier position (row-major: top-left, top-right, bottom-left, bottom-right) of that window
holds the same maximum. That is the rule of ``tf.nn.max_pool_with_argmax``, and ties are not
rare: windows of all-zero ReLU outputs are everywhere, and int8 rounding makes more. Pooling
therefore emits a one-hot *switch mask*, and unpooling writes each value where its mask is one.

The builtin-op layers themselves, and the layouts of the mask, sit beside the reference layers in
:mod:`segnet_tf.layers` (a saved lowered model reloads with ``import segnet_tf``). This module
swaps them into a trained network (:func:`lower_model`) and prepares it for int8.

int8 precision: a tensor gets one int8 scale for all its channels, so channels with a small range
get few levels and their 2x2 windows tie after rounding, moving unpooled values away from the
float argmax. :func:`equalize_activations` rescales every ReLU channel to [0, 6] (compensated in
the next convolution, so the function is unchanged).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from segnet_tf.layers import (
    ACTIVATION_RANGE,
    LOWERINGS,
    POOLED_LOWERINGS,
    STEP_GAIN,
    MaskedUnpooling2D,
    MaxPoolingWithArgmax2D,
    MaxPoolingWithMask2D,
    MaxUnpooling2D,
    MonteCarloDropout,
)


def lower_model(
    model: keras.Model,
    lowering: str = "exact",
    batch_size: int | None = 1,
    gain: float = STEP_GAIN,
    dropout: Callable[[MonteCarloDropout], keras.layers.Layer] | None = None,
) -> keras.Model:
    """Rebuild ``model`` with builtin-op pooling/unpooling, sharing its weights.

    Monte Carlo dropout becomes identity (deterministic inference), or ``dropout(layer)`` (fixed
    masks: :mod:`segnet_tf.export.montecarlo`). ``gain`` is the step gain of the step lowerings
    (all but ``exact``), right for activations equalized by :func:`equalize_activations`. A
    static ``batch_size`` gives the static shapes that TFLite accelerators want.
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
        dropout=dropout,
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


def rebuild(
    model: keras.Model, pool, unpool, batch_size: int | None = 1, dropout=None
) -> keras.Model:
    """Clone ``model`` with its argmax pooling and unpooling layers made by ``pool(name)`` and
    ``unpool(name)``, Monte Carlo dropout removed (or made by ``dropout(layer)``), and every
    weight shared by value."""

    def replace(layer):
        if isinstance(layer, MaxPoolingWithArgmax2D):
            return pool(layer.name)
        if isinstance(layer, MaxUnpooling2D):
            return unpool(layer.name)
        if isinstance(layer, MonteCarloDropout):
            return keras.layers.Identity(name=layer.name) if dropout is None else dropout(layer)
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
