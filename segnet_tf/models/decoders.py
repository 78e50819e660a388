"""The decoders of the SegNet paper's study (Badrinarayanan et al., TPAMI 2017, section 3.1,
Table 1), each over the same encoder so that the comparison is controlled.

SegNet's own decoder (index unpooling) is one of them. A decoder is a function
``(bottleneck, switches, spec) -> logits``: ``switches`` holds, per encoder stage, the map it
pooled, the pooled map and (for the decoders that unpool) the argmax indices; ``spec`` the class
count, the encoder widths, the kernel size, the decoder activation and the Bayesian dropout.
:data:`DECODERS` names them; a preset lists the ones that fit its encoder
(:data:`segnet_tf.models.registry.PRESETS`).

What each keeps from the encoder until the decoder needs it is the memory side of the trade-off
(:func:`kept_bytes`): SegNet keeps 2-bit switches per pooled value, FCN its K-channel score maps,
encoder addition and U-Net the full maps, bilinear interpolation nothing.

Upsampling by a learned transposed convolution (FCN) or fixed bilinear interpolation doubles a
side, while SAME pooling maps an odd side up (45 -> 23): the upsampled map is cropped to the size
of the encoder map it mirrors (:class:`segnet_tf.layers.CropToMatch`), as index unpooling does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from segnet_tf.layers import BilinearUpsampling, CropToMatch, MaxUnpooling2D
from segnet_tf.models.blocks import (
    DecoderSpec,
    class_head,
    conv_bn_relu,
    decoder_stages,
    encoder_stages,
    stage_dropout,
)

FCN_KERNEL = 8  # the paper's 8x8 upsampling kernels (section 3.1)
SWITCH_BITS = 2  # a 2x2 window's argmax position
FLOAT_BYTES = 4


# --------------------------------------------------------------------------- decoders


def segnet_decoder(x, switches, spec: DecoderSpec):
    """SegNet's decoder: per stage, unpool with the stored indices, then densify with convs."""
    for i, widths in enumerate(decoder_stages(spec.stages)):
        s = len(switches) - i
        stage = switches[s - 1]
        x = MaxUnpooling2D(name=f"decoder{s}_unpool")([x, stage.indices, stage.features])
        for c, filters in enumerate(widths, start=1):
            x = conv_bn_relu(
                x, filters, spec.kernel_size, f"decoder{s}_conv{c}", activation=spec.activation
            )
        x = stage_dropout(x, s, spec)
    return class_head(x, spec.num_classes)


def same_width(spec: DecoderSpec, decoder: str) -> None:
    """Decoders that add to, or convolve per channel, the map they unpool keep every width."""
    widths = {w for stage in spec.stages for w in stage}
    if len(widths) > 1:
        raise ValueError(
            f"decoder {decoder!r} needs one width in every encoder stage (as SegNet-Basic's 64), "
            f"got {sorted(widths)}"
        )


def single_channel_decoder(x, switches, spec: DecoderSpec):
    """SegNet-Basic-SingleChannelDecoder: index unpooling, then per-channel (depthwise) filters."""
    same_width(spec, "single-channel")
    for s in reversed(range(1, len(switches) + 1)):
        stage = switches[s - 1]
        x = MaxUnpooling2D(name=f"decoder{s}_unpool")([x, stage.indices, stage.features])
        x = conv_bn_relu(
            x, 0, spec.kernel_size, f"decoder{s}_conv1", spec.activation, conv="depthwise"
        )
        x = stage_dropout(x, s, spec)
    return class_head(x, spec.num_classes)


def encoder_addition_decoder(x, switches, spec: DecoderSpec):
    """SegNet-Basic-EncoderAddition: SegNet's decoder stage, then the encoder map it mirrors
    added (the pooling indices and the full 64-channel maps both kept)."""
    same_width(spec, "encoder-addition")
    for i, widths in enumerate(decoder_stages(spec.stages)):
        s = len(switches) - i
        stage = switches[s - 1]
        x = MaxUnpooling2D(name=f"decoder{s}_unpool")([x, stage.indices, stage.features])
        for c, filters in enumerate(widths, start=1):
            x = conv_bn_relu(
                x, filters, spec.kernel_size, f"decoder{s}_conv{c}", activation=spec.activation
            )
        x = keras.layers.Add(name=f"decoder{s}_add")([x, stage.features])
        x = stage_dropout(x, s, spec)
    return class_head(x, spec.num_classes)


def score(x, s: int, num_classes: int):
    """FCN's dimensionality reduction: a 1x1 convolution of a pooled map to K class channels.
    A decoder layer (named ``decoder<s>_score``), though it reads encoder stage ``s``: whatever
    starts with :data:`segnet_tf.models.blocks.ENCODER_PREFIX` is the encoder."""
    return class_head(x, num_classes, name=f"decoder{s}_score")


def fcn_decoder(x, switches, spec: DecoderSpec, *, addition: bool = True, reduction: bool = True):
    """FCN-Basic and its variants: each decoder stage upsamples by a learned 8x8 transposed
    convolution initialised bilinear, then adds the pooled map of the encoder stage above it
    (``addition``), reduced to K channels by a 1x1 convolution (``reduction``) or in full.

    With reduction the decoder runs on K channels and its output is the logits; without, it keeps
    the encoder's widths and a 1x1 classifier follows. Float32 throughout: it is small.
    """
    n = len(switches)
    if reduction:
        x = score(switches[n - 1].pooled, n, spec.num_classes)
    for s in reversed(range(1, n + 1)):
        above = switches[s - 2].pooled if s > 1 else None
        channels = spec.num_classes if reduction else spec.stages[max(s - 2, 0)][-1]
        x = keras.layers.Conv2DTranspose(
            channels,
            FCN_KERNEL,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer=BilinearUpsampling(),
            name=f"decoder{s}_deconv",
            dtype="float32",
        )(x)
        x = CropToMatch(name=f"decoder{s}_crop", dtype="float32")([x, switches[s - 1].features])
        if addition and above is not None:
            skip = score(above, s - 1, spec.num_classes) if reduction else above
            x = keras.layers.Add(name=f"decoder{s}_add", dtype="float32")([x, skip])
        x = stage_dropout(x, s, spec)
    if reduction:
        return x
    return class_head(x, spec.num_classes)


def bilinear_decoder(x, switches, spec: DecoderSpec):
    """Bilinear-Interpolation: the bottleneck reduced to K class channels, then fixed 2x bilinear
    upsampling per decoder stage; nothing learned, nothing kept from the encoder."""
    n = len(switches)
    x = class_head(x, spec.num_classes)
    for s in reversed(range(1, n + 1)):
        x = keras.layers.UpSampling2D(
            interpolation="bilinear", name=f"decoder{s}_upsample", dtype="float32"
        )(x)
        x = CropToMatch(name=f"decoder{s}_crop", dtype="float32")([x, switches[s - 1].features])
    return x


def unet_decoder(x, switches, spec: DecoderSpec):
    """U-Net's decoding over this encoder: a learned 2x2 up-convolution (+ batch norm, ReLU) to the
    width of the encoder map it mirrors, that full map concatenated, then the stage's convolutions
    (SegNet's mirrored widths)."""
    for i, widths in enumerate(decoder_stages(spec.stages)):
        s = len(switches) - i
        features = switches[s - 1].features
        x = conv_bn_relu(
            x, features.shape[-1], 2, f"decoder{s}_upconv", conv="transpose", strides=2
        )
        x = CropToMatch(name=f"decoder{s}_crop")([x, features])
        x = keras.layers.Concatenate(name=f"decoder{s}_concat")([x, features])
        for c, filters in enumerate(widths, start=1):
            x = conv_bn_relu(
                x, filters, spec.kernel_size, f"decoder{s}_conv{c}", activation=spec.activation
            )
        x = stage_dropout(x, s, spec)
    return class_head(x, spec.num_classes)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Decoder:
    name: str
    paper_name: str
    description: str
    build: Callable[..., keras.KerasTensor]
    uses_indices: bool  # the encoder pools with argmax (else plain max pooling)
    keeps: tuple[str, ...]  # what it keeps from the encoder: see KEPT


def _fcn(addition: bool, reduction: bool) -> Callable[..., keras.KerasTensor]:
    def build(x, switches, spec):
        return fcn_decoder(x, switches, spec, addition=addition, reduction=reduction)

    return build


DECODERS: dict[str, Decoder] = {
    d.name: d
    for d in (
        Decoder(
            "indices",
            "SegNet",
            "unpool with the encoder's max-pooling indices, then convolutions (SegNet)",
            segnet_decoder,
            True,
            ("switches",),
        ),
        Decoder(
            "single-channel",
            "SegNet-Basic-SingleChannelDecoder",
            "index unpooling, then per-channel (depthwise) decoder filters",
            single_channel_decoder,
            True,
            ("switches",),
        ),
        Decoder(
            "encoder-addition",
            "SegNet-Basic-EncoderAddition",
            "SegNet's decoder, then the full encoder maps added at every stage",
            encoder_addition_decoder,
            True,
            ("switches", "features"),
        ),
        Decoder(
            "bilinear",
            "Bilinear-Interpolation",
            "bottleneck to K channels, fixed bilinear upsampling, nothing learned in the decoder",
            bilinear_decoder,
            False,
            (),
        ),
        Decoder(
            "fcn",
            "FCN-Basic",
            "learned 8x8 upsampling (bilinear init) + pooled maps reduced to K channels, added",
            _fcn(addition=True, reduction=True),
            False,
            ("scores",),
        ),
        Decoder(
            "fcn-noaddition",
            "FCN-Basic-NoAddition",
            "FCN-Basic without the encoder maps: learned upsampling of the K-channel bottleneck",
            _fcn(addition=False, reduction=True),
            False,
            (),
        ),
        Decoder(
            "fcn-nodimreduction",
            "FCN-Basic-NoDimReduction",
            "FCN-Basic on the full 64-channel maps: learned upsampling, pooled maps added",
            _fcn(addition=True, reduction=False),
            False,
            ("pooled",),
        ),
        Decoder(
            "fcn-noaddition-nodimreduction",
            "FCN-Basic-NoAddition-NoDimReduction",
            "learned upsampling of the full 64-channel bottleneck, nothing added",
            _fcn(addition=False, reduction=False),
            False,
            (),
        ),
        Decoder(
            "unet",
            "U-Net",
            "learned 2x2 up-convolution, the full encoder map concatenated, then convolutions",
            unet_decoder,
            False,
            ("features",),
        ),
    )
}
BASIC_DECODERS = (
    "indices",
    "single-channel",
    "encoder-addition",
    "bilinear",
    "fcn",
    "fcn-noaddition",
    "fcn-nodimreduction",
    "fcn-noaddition-nodimreduction",
)
VGG_DECODERS = ("indices", "bilinear", "fcn", "unet")


def get_decoder(name: str) -> Decoder:
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose one of: {', '.join(DECODERS)}")
    return DECODERS[name]


# --------------------------------------------------------------------------- kept memory


def _switches(stage: tuple, num_classes: int) -> int:
    (_, _, _), (h, w, c) = stage
    return -(-h * w * c * SWITCH_BITS // 8)


def _features(stage: tuple, num_classes: int) -> int:
    (h, w, c), _ = stage
    return h * w * c * FLOAT_BYTES


def _pooled(stage: tuple, num_classes: int) -> int:
    _, (h, w, c) = stage
    return h * w * c * FLOAT_BYTES


def _scores(stage: tuple, num_classes: int) -> int:
    _, (h, w, _) = stage
    return h * w * num_classes * FLOAT_BYTES


# What a decoder keeps, per encoder stage ((features shape, pooled shape), K) -> bytes, and for
# which stages: FCN adds the pooled maps of every stage but the deepest (that one it decodes).
KEPT: dict[str, tuple[Callable[[tuple, int], int], bool]] = {
    "switches": (_switches, True),  # 2 bits per pooled value, every stage
    "features": (_features, True),  # the full float32 map that was pooled, every stage
    "pooled": (_pooled, False),  # the float32 pooled map, all but the deepest stage
    "scores": (_scores, False),  # its K-channel reduction, all but the deepest stage
}


def stage_shapes(model: keras.Model) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """``((h, w, c) pooled from, (h, w, c) pooled)`` of every encoder stage of a static model."""
    shapes = []
    for stage in encoder_stages(model):
        source = keras.tree.flatten(stage.pool.input)[0].shape[1:]
        pooled = keras.tree.flatten(stage.pool.output)[0].shape[1:]
        if None in (*source, *pooled):
            raise ValueError(f"{model.name}: kept memory needs a fixed input size")
        shapes.append((tuple(source), tuple(pooled)))
    return shapes


def kept_bytes(model: keras.Model, decoder: str) -> int:
    """Bytes of encoder output that ``decoder`` keeps per image until it is used (batch 1)."""
    shapes = stage_shapes(model)
    num_classes = int(model.outputs[0].shape[-1])
    total = 0
    for kind in get_decoder(decoder).keeps:
        size, every_stage = KEPT[kind]
        stages = shapes if every_stage else shapes[:-1]
        total += sum(size(stage, num_classes) for stage in stages)
    return total


# --------------------------------------------------------------------------- the paper's figures


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 1 (SegNet-Basic's encoder on CamVid, 360x480, test split,
    median-frequency balancing; percentages)."""

    params_m: float
    storage_multiplier: float | None  # first-layer encoder storage, SegNet-Basic's indices = 1
    infer_ms: float  # Caffe, NVIDIA Titan GPU
    global_accuracy: float
    class_accuracy: float
    miou: float
    bf: float


TABLE_1: dict[str, PaperRow] = {
    "bilinear": PaperRow(0.625, 0, 24.2, 77.9, 61.1, 43.3, 20.83),
    "indices": PaperRow(1.425, 1, 52.6, 82.7, 62.0, 47.7, 35.78),
    "encoder-addition": PaperRow(1.425, 64, 53.0, 83.4, 63.6, 48.5, 35.92),
    "single-channel": PaperRow(0.625, 1, 33.1, 81.2, 60.7, 46.1, 31.62),
    "fcn": PaperRow(0.65, 11, 24.2, 81.7, 62.4, 47.3, 38.11),
    "fcn-noaddition": PaperRow(0.65, None, 23.8, 80.5, 58.6, 44.1, 31.96),
    "fcn-nodimreduction": PaperRow(1.625, 64, 44.8, 84.1, 63.4, 50.1, 37.37),
    "fcn-noaddition-nodimreduction": PaperRow(1.625, 0, 43.9, 80.5, 61.6, 45.9, 30.47),
}
