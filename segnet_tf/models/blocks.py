"""The building blocks every SegNet-family model shares: the encoder stage, conv + batch norm +
ReLU, the 1x1 class head, and what a decoder is given (:class:`DecoderSpec`).

The encoder (SegNet, TPAMI 2017, section 3) is a stack of stages, each a few conv + BN + ReLU
blocks and a 2x2 pooling named ``block<s>_pool``; :func:`encoder_stages` finds those poolings in a
built or loaded model again, for the exporter and the cost counts, so the naming lives here only.
The decoders built on these blocks are :mod:`segnet_tf.models.decoders`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import keras

from segnet_tf.layers import MaxPoolingWithArgmax2D, MonteCarloDropout

BN_MOMENTUM = 0.9  # moving statistics that keep up within an epoch of a short or resumed run
# Every encoder layer's name starts so (block<s>_conv<c>, its _bn and _relu, block<s>_pool,
# block<s>_dropout) and no decoder layer's: freezing and learning-rate multipliers find it so.
ENCODER_PREFIX = "block"


def conv_bn_relu(
    x,
    filters: int,
    kernel_size: int,
    name: str,
    activation: str | None = "relu",
    conv: str = "conv",
    strides: int = 1,
):
    """Conv (no bias: batch norm follows) + BN (+ the activation), named ``name``, ``name_bn``
    and ``name_<activation>``; ``conv`` is ``conv``, ``depthwise`` (per channel, ``filters``
    ignored) or ``transpose`` (a learned upsampling by ``strides``)."""
    if conv == "depthwise":
        layer = keras.layers.DepthwiseConv2D(
            kernel_size,
            padding="same",
            use_bias=False,
            depthwise_initializer="he_normal",
            name=name,
        )
    else:
        kind = keras.layers.Conv2DTranspose if conv == "transpose" else keras.layers.Conv2D
        layer = kind(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=name,
        )
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(layer(x))
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def class_head(x, num_classes: int, name: str = "classifier"):
    """The 1x1 convolution to per-pixel class scores, in float32 under mixed precision."""
    return keras.layers.Conv2D(num_classes, 1, name=name, dtype="float32")(x)


class EncoderStage(NamedTuple):
    """What one encoder stage offers its decoder: the map it pooled, the pooled map, and the
    argmax indices (None when the encoder pools without them: decoders that do not unpool)."""

    features: keras.KerasTensor
    pooled: keras.KerasTensor
    indices: keras.KerasTensor | None


def pool_name(stage: int) -> str:
    """The name of encoder stage ``stage``'s pooling (1 = the first, full-resolution one)."""
    return f"{ENCODER_PREFIX}{stage}_pool"


def encoder(x, stages, kernel_size: int, dropout_from: int | None = None, argmax: bool = True):
    """VGG-style encoder: the bottleneck and an :class:`EncoderStage` per stage (first first)."""
    switches = []
    for s, widths in enumerate(stages, start=1):
        for c, filters in enumerate(widths, start=1):
            x = conv_bn_relu(x, filters, kernel_size, name=f"{ENCODER_PREFIX}{s}_conv{c}")
        pre_pool = x
        if argmax:
            x, indices = MaxPoolingWithArgmax2D(name=pool_name(s))(x)
        else:
            x, indices = keras.layers.MaxPooling2D(padding="same", name=pool_name(s))(x), None
        switches.append(EncoderStage(pre_pool, x, indices))
        if dropout_from is not None and s >= dropout_from:
            x = MonteCarloDropout(0.5, name=f"{ENCODER_PREFIX}{s}_dropout")(x)
    return x, switches


class StageLayers(NamedTuple):
    """An encoder stage of a built model: its pooling layer and the layer whose output it pools."""

    pool: keras.layers.Layer
    source: keras.layers.Layer


def producers(model: keras.Model) -> dict[int, keras.layers.Layer]:
    """The layer that computes each tensor of a functional model, by ``id`` of the tensor (from
    the layers' public ``output``, not Keras' private history of a tensor)."""
    return {id(t): layer for layer in model.layers for t in keras.tree.flatten(layer.output)}


def encoder_stages(model: keras.Model) -> list[StageLayers]:
    """The encoder stages of a SegNet-family model, first first (empty if it has none)."""
    layers = {layer.name: layer for layer in model.layers}
    producer = producers(model)
    pools = (MaxPoolingWithArgmax2D, keras.layers.MaxPooling2D)
    stages = []
    while isinstance(pool := layers.get(pool_name(len(stages) + 1)), pools):
        stages.append(StageLayers(pool, producer[id(keras.tree.flatten(pool.input)[0])]))
    return stages


def decoder_stages(stages: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """The mirror of an encoder: each decoder stage ends at the width of the encoder stage below.

    VGG16 gives (512,512,512), (512,512,256), (256,256,128), (128,64), (64,) as in the Caffe model.
    """
    mirrored = []
    for i in reversed(range(len(stages))):
        widths = list(stages[i])
        if i > 0:
            widths[-1] = stages[i - 1][-1]
        elif len(widths) > 1:
            widths = widths[:-1]
        mirrored.append(tuple(widths))
    return tuple(mirrored)


@dataclass(frozen=True)
class DecoderSpec:
    """What a decoder needs besides the encoder's tensors (see :mod:`segnet_tf.models.decoders`)."""

    num_classes: int
    stages: tuple[tuple[int, ...], ...]  # the encoder's widths, first stage first
    kernel_size: int
    activation: str | None
    dropout_to: int | None  # Monte Carlo dropout after decoder stages >= this (Bayesian SegNet)


def stage_dropout(x, s: int, spec: DecoderSpec):
    """Bayesian SegNet's Monte Carlo dropout after the deepest decoder stages."""
    if spec.dropout_to is not None and s >= spec.dropout_to:
        x = MonteCarloDropout(0.5, name=f"decoder{s}_dropout")(x)
    return x
