"""SegNet, SegNet-Basic and Bayesian SegNet as Keras functional models.

Paper sections: SegNet (Badrinarayanan et al., TPAMI 2017, section 3): the 13 convolutions of VGG16,
each conv + batch norm + ReLU, five 2x2 argmax poolings, and a mirrored decoder whose unpoolings
reuse the stored indices. SegNet-Basic (section 4.1): four encoder and four decoder stages of 64 7x7
filters, no ReLU in the decoder. Bayesian SegNet (Kendall et al., BMVC 2017): dropout 0.5 after the
three deepest encoder and decoder stages, sampled at test time. The other decoders of the paper's
study (Table 1) build on the same encoder: :mod:`segnet_tf.models.decoders`.

Every model takes raw RGB pixels (0..255) and normalises inside, so an exported model needs no
preprocessing, and outputs per-pixel class logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import keras

from segnet_tf.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D, MonteCarloDropout

# ImageNet statistics in RGB order and 0..255 units (the means are the Caffe VGG16 means).
IMAGENET_MEAN = (123.68, 116.779, 103.939)
IMAGENET_STD = (58.393, 57.12, 57.375)

VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
BASIC_STAGES: tuple[tuple[int, ...], ...] = ((64,), (64,), (64,), (64,))


def scale_stages(stages: Sequence[Sequence[int]], width: float) -> tuple[tuple[int, ...], ...]:
    """Scale every stage's filter count by ``width`` (a multiple of 8, at least 8: int8 kernels)."""
    return tuple(tuple(max(8, int(round(f * width / 8)) * 8) for f in stage) for stage in stages)


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


def min_input_size(num_pools: int) -> int:
    """Smallest side a network with ``num_pools`` poolings accepts (its deepest map is 1 pixel)."""
    return 2**num_pools


def check_input_shape(input_shape: Sequence[int | None], num_pools: int, name: str) -> None:
    """Fail early, with a fix, on input sizes the network cannot take."""
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(
            f"{name}: input_shape must be (height, width, 3) for an RGB image, "
            f"got {tuple(input_shape)}"
        )
    smallest = min_input_size(num_pools)
    for side, value in zip(("height", "width"), input_shape[:2], strict=True):
        if value is not None and value < smallest:
            raise ValueError(
                f"{name}: input {side} {value} is too small for {num_pools} poolings; use at least "
                f"{smallest} (e.g. 360x480, or any size >= {smallest}x{smallest})"
            )


def conv_bn_relu(x, filters: int, kernel_size: int, name: str, activation: str | None = "relu"):
    """Conv (no bias: batch norm follows) + BN (+ ReLU)."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)
    # momentum 0.9: moving statistics that keep up within an epoch of a short or resumed run
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


class EncoderStage(NamedTuple):
    """What one encoder stage offers its decoder: the map it pooled, the pooled map, and the
    argmax indices (None when the encoder pools without them: decoders that do not unpool)."""

    features: keras.KerasTensor
    pooled: keras.KerasTensor
    indices: keras.KerasTensor | None


def encoder(x, stages, kernel_size: int, dropout_from: int | None = None, argmax: bool = True):
    """VGG-style encoder: the bottleneck and an :class:`EncoderStage` per stage (first first)."""
    switches = []
    for s, widths in enumerate(stages, start=1):
        for c, filters in enumerate(widths, start=1):
            x = conv_bn_relu(x, filters, kernel_size, name=f"block{s}_conv{c}")
        pre_pool = x
        if argmax:
            x, indices = MaxPoolingWithArgmax2D(name=f"block{s}_pool")(x)
        else:
            x, indices = keras.layers.MaxPooling2D(padding="same", name=f"block{s}_pool")(x), None
        switches.append(EncoderStage(pre_pool, x, indices))
        if dropout_from is not None and s >= dropout_from:
            x = MonteCarloDropout(0.5, name=f"block{s}_dropout")(x)
    return x, switches


def decoder(x, switches, stages, kernel_size: int, activation: str | None, dropout_to: int | None):
    """Mirror of the encoder: unpool with the stored indices, then densify with convs."""
    num = len(stages)
    for i, widths in enumerate(stages):
        s = num - i
        pre_pool, _, indices = switches[s - 1]
        x = MaxUnpooling2D(name=f"decoder{s}_unpool")([x, indices, pre_pool])
        for c, filters in enumerate(widths, start=1):
            x = conv_bn_relu(
                x, filters, kernel_size, name=f"decoder{s}_conv{c}", activation=activation
            )
        if dropout_to is not None and s >= dropout_to:
            x = MonteCarloDropout(0.5, name=f"decoder{s}_dropout")(x)
    return x


@dataclass(frozen=True)
class DecoderSpec:
    """What a decoder needs besides the encoder's tensors (see :mod:`segnet_tf.models.decoders`)."""

    num_classes: int
    stages: tuple[tuple[int, ...], ...]  # the encoder's widths, first stage first
    kernel_size: int
    activation: str | None
    dropout_to: int | None  # Monte Carlo dropout after decoder stages >= this (Bayesian SegNet)


def segnet_decoder(x, switches, spec: DecoderSpec):
    """SegNet's decoder (index unpooling, then convolutions) and the 1x1 classifier: the logits."""
    x = decoder(
        x,
        switches,
        decoder_stages(spec.stages),
        spec.kernel_size,
        spec.activation,
        spec.dropout_to,
    )
    return keras.layers.Conv2D(spec.num_classes, 1, name="classifier", dtype="float32")(x)


def build_segnet(
    input_shape: Sequence[int | None] = (360, 480, 3),
    num_classes: int = 11,
    *,
    stages: Sequence[Sequence[int]] = VGG16_STAGES,
    width: float = 1.0,
    kernel_size: int = 3,
    decoder_activation: str | None = "relu",
    bayesian: bool = False,
    decoder: str = "indices",
    name: str = "segnet",
) -> keras.Model:
    """Build a SegNet-family model (see module docstring); ``width`` scales every stage and
    ``decoder`` names a decoder of :data:`segnet_tf.models.decoders.DECODERS`."""
    from segnet_tf.models.decoders import get_decoder  # the variants build on this module

    variant = get_decoder(decoder)
    stages = scale_stages(stages, width) if width != 1.0 else tuple(tuple(s) for s in stages)
    check_input_shape(input_shape, len(stages), name)
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
    dropout_at = len(stages) - 2 if bayesian else None

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Normalization(
        mean=IMAGENET_MEAN, variance=[s**2 for s in IMAGENET_STD], name="normalize"
    )(inputs)
    x, switches = encoder(
        x, stages, kernel_size, dropout_from=dropout_at, argmax=variant.uses_indices
    )
    spec = DecoderSpec(num_classes, stages, kernel_size, decoder_activation, dropout_at)
    logits = variant.build(x, switches, spec)
    return keras.Model(inputs, logits, name=name)
