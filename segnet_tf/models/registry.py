"""Named model presets: adding one here adds it to the CLI and to the test loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras

from segnet_tf.models.segnet import BASIC_STAGES, build_segnet


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    kwargs: dict = field(default_factory=dict)
    builder: Callable[..., keras.Model] = build_segnet


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            "segnet", "SegNet (paper): VGG16's 13 convs + mirrored decoder, ~29.4 M params"
        ),
        ModelPreset(
            "segnet-basic",
            "SegNet-Basic (paper): 4 + 4 stages of 64 7x7 filters, linear decoder",
            {"stages": BASIC_STAGES, "kernel_size": 7, "decoder_activation": None},
        ),
        ModelPreset(
            "segnet-lite",
            "SegNet topology at width 0.25 (~1.8 M params) for Jetson/Coral; --width to change",
            {"width": 0.25},
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


def build_model(
    name: str,
    input_shape: Sequence[int | None] = (360, 480, 3),
    num_classes: int = 11,
    encoder_weights: str | None = None,
    **overrides,
) -> keras.Model:
    """Build preset ``name``; ``overrides`` replace preset arguments (e.g. ``width=0.5``).

    ``encoder_weights``: ``None``/``"none"``, ``"imagenet"`` (Keras' VGG16 weights, downloaded when
    online) or a path to a VGG16 ``.h5``/``.weights.h5`` file; only VGG16-topology presets take
    them.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    model = preset.builder(
        input_shape=input_shape,
        num_classes=num_classes,
        name=name,
        **{**preset.kwargs, **overrides},
    )
    if encoder_weights not in (None, "none"):
        from segnet_tf.models.encoder_weights import load_vgg16_encoder_weights

        load_vgg16_encoder_weights(model, encoder_weights)
    return model
