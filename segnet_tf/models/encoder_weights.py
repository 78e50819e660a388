"""Initialise a SegNet encoder from Keras' ImageNet VGG16 (paper section 4: encoder pre-trained).

Keras' VGG16 expects Caffe preprocessing (BGR order, mean subtraction, no scaling) while our models
take RGB and normalise by ImageNet mean and std inside. The first kernel is therefore reversed
along its input channels and multiplied by the std, which makes the two exactly equivalent; deeper
kernels and all biases map unchanged (the bias is folded into the following batch norm's shift).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from segnet_tf.models.segnet import IMAGENET_STD, VGG16_STAGES


def vgg16_conv_names() -> list[str]:
    return [
        f"block{s}_conv{c}" for s, w in enumerate(VGG16_STAGES, 1) for c in range(1, len(w) + 1)
    ]


def load_vgg16(weights: str) -> keras.Model:
    """Keras' VGG16 without its classifier, with ``imagenet`` or a local weights file."""
    if weights != "imagenet" and not Path(weights).is_file():
        raise FileNotFoundError(
            f"--encoder-weights {weights!r}: no such file; "
            "pass 'imagenet', 'none' or a VGG16 .h5 path"
        )
    try:
        return keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=(None, None, 3)
        )
    except Exception as e:  # download failure or an unrelated .h5: say which and why
        raise ValueError(f"--encoder-weights {weights!r}: could not load VGG16 weights: {e}") from e


def load_vgg16_encoder_weights(model: keras.Model, weights: str) -> None:
    """Copy VGG16 conv kernels into ``model``'s encoder (same layer names, full width only)."""
    vgg = load_vgg16(weights)
    for name in vgg16_conv_names():
        try:
            target = model.get_layer(name)
        except ValueError as e:
            raise ValueError(f"model {model.name!r} has no VGG16 layer {name!r}: {e}") from e
        kernel, _bias = vgg.get_layer(name).get_weights()
        if target.kernel.shape != kernel.shape:
            raise ValueError(
                f"model {model.name!r}: {name} has kernel {tuple(target.kernel.shape)} but "
                f"VGG16 has {kernel.shape}; ImageNet weights fit only the full-width presets"
            )
        if name == "block1_conv1":
            kernel = (
                kernel[:, :, ::-1, :] * np.asarray(IMAGENET_STD, np.float32)[None, None, :, None]
            )
        target.kernel.assign(kernel)
