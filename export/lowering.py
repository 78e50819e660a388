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
    CropToMatch,
    MaskedUnpooling2D,
    MaxPoolingWithArgmax2D,
    MaxPoolingWithMask2D,
    MaxUnpooling2D,
    MonteCarloDropout,
)
from segnet_tf.models.blocks import producers


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
    producer = producers(model)
    for layer in model.layers:
        if isinstance(layer, MaxPoolingWithArgmax2D):
            source = producer[id(layer.input)]
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


# Layers that commute with a positive per-channel scale of their first input (max pooling and its
# switches, unpooling, cropping, bilinear upsampling, dropout); their other inputs only say where
# or how big (indices, masks, reference shapes).
SCALE_COMMUTING = (
    MaxPoolingWithArgmax2D,
    MaxPoolingWithMask2D,
    MaxUnpooling2D,
    MaskedUnpooling2D,
    CropToMatch,
    MonteCarloDropout,
    keras.layers.MaxPooling2D,
    keras.layers.UpSampling2D,
    keras.layers.Dropout,
    keras.layers.Identity,
)
# Layers that can undo a scale of their input channels in their kernel.
COMPENSATING = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose)


def relu_chain(model: keras.Model) -> list[tuple[str, str, tuple[tuple[str, int], ...]]]:
    """``(batch_norm, relu, ((conv, first_channel), ...))`` for every ReLU after a batch norm whose
    output reaches only convolutions, the channels it feeds starting at ``first_channel``.

    On the way there may be only per-channel positive-homogeneous steps (:data:`SCALE_COMMUTING`)
    and concatenations (which shift the channels), so a channel scale can move across them. A ReLU
    that anything else reads (the sums of SegNet-Basic-EncoderAddition or FCN-NoDimReduction, a
    model output) is left out: its scale could not be undone.
    """
    readers: dict[int, list[tuple[keras.layers.Layer, int]]] = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            for position, tensor in enumerate(keras.tree.flatten(layer.input)):
                readers.setdefault(id(tensor), []).append((layer, position))
    outputs = {id(t) for t in model.outputs}
    producer = producers(model)
    chain = []
    for layer in model.layers:
        if not is_relu(layer):
            continue
        source = producer[id(layer.input)]
        if isinstance(source, keras.layers.BatchNormalization):
            convs = compensating_convs(layer.output, readers, outputs)
            if convs:
                chain.append((source.name, layer.name, convs))
    return chain


def is_relu(layer: keras.layers.Layer) -> bool:
    """A ReLU layer, or the ReLU6 that :func:`equalize_activations` made of one."""
    activation = getattr(layer, "activation", None)
    relus = (keras.activations.relu, keras.activations.relu6)
    return isinstance(layer, keras.layers.Activation) and activation in relus


def compensating_convs(tensor, readers: dict, outputs: set[int]) -> tuple[tuple[str, int], ...]:
    """The convolutions (and first channel) that read ``tensor``'s channels through scale-commuting
    steps; empty when some other layer, or the model's output, reads them."""
    found: list[tuple[str, int]] = []
    frontier = [(tensor, 0)]
    while frontier:
        current, offset = frontier.pop()
        if id(current) in outputs:
            return ()
        for layer, position in readers.get(id(current), []):
            if isinstance(layer, SCALE_COMMUTING):
                if position == 0:
                    frontier.append((keras.tree.flatten(layer.output)[0], offset))
            elif isinstance(layer, keras.layers.Concatenate) and layer.axis in (-1, 3):
                before = keras.tree.flatten(layer.input)[:position]
                frontier.append((layer.output, offset + sum(t.shape[-1] for t in before)))
            elif isinstance(layer, COMPENSATING):
                found.append((layer.name, offset))
            else:
                return ()
    return tuple(found)


def activation_peaks(
    model: keras.Model, images: np.ndarray, batch_size: int = 8
) -> dict[str, np.ndarray]:
    """Per-channel maximum of every ReLU output of the chain over ``images``."""
    relus = [relu for _, relu, _ in relu_chain(model)]
    if not relus:
        return {}
    probe = keras.Model(
        model.inputs,
        {r: keras.ops.max(model.get_layer(r).output, axis=(1, 2)) for r in relus},
    )
    outputs = probe.predict(images, batch_size=batch_size, verbose=0)
    return {r: np.max(outputs[r], axis=0) for r in relus}


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
    for bn_name, relu_name, convs in relu_chain(model):
        peak = peaks[relu_name]
        scale = np.where(peak > 0, ACTIVATION_RANGE / np.maximum(peak, 1e-12), 1.0)
        scale = scale.astype(np.float32)
        bn = model.get_layer(bn_name)
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * scale, beta * scale, mean, var])
        model.get_layer(relu_name).activation = keras.activations.relu6
        for conv_name, first in convs:
            divide_input_channels(model.get_layer(conv_name), scale, first)


def divide_input_channels(conv: keras.layers.Layer, scale: np.ndarray, first: int) -> None:
    """Divide the kernel taps of input channels ``first ..`` by ``scale`` (undoing its scale)."""
    weights = conv.get_weights()
    # Conv2D and DepthwiseConv2D kernels are (h, w, in, ...); Conv2DTranspose's are (h, w, out, in)
    axis = 3 if isinstance(conv, keras.layers.Conv2DTranspose) else 2
    index = [slice(None)] * 4
    index[axis] = slice(first, first + scale.size)
    shape = [1] * 4
    shape[axis] = scale.size
    weights[0][tuple(index)] /= scale.reshape(shape)
    conv.set_weights(weights)
