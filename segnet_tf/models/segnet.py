"""SegNet, SegNet-Basic and Bayesian SegNet as Keras functional models.

Paper sections: SegNet (Badrinarayanan et al., TPAMI 2017, section 3): the 13 convolutions of VGG16,
each conv + batch norm + ReLU, five 2x2 argmax poolings, and a mirrored decoder whose unpoolings
reuse the stored indices. SegNet-Basic (section 4.1): four encoder and four decoder stages of 64 7x7
filters, no ReLU in the decoder. Bayesian SegNet (Kendall et al., BMVC 2017): dropout 0.5 after the
three deepest encoder and decoder stages, sampled at test time. The other decoders of the paper's
study (Table 1) build on the same encoder: :mod:`segnet_tf.models.decoders`, which holds
SegNet's own too; the blocks they share are :mod:`segnet_tf.models.blocks`.

Every model takes raw RGB pixels (0..255) and normalises inside, so an exported model needs no
preprocessing, and outputs per-pixel class logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from segnet_tf.models.blocks import DecoderSpec, encoder
from segnet_tf.models.decoders import get_decoder

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
