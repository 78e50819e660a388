"""Floating-point operations of a forward pass, counted from the model's layers.

Only convolutions are counted (2 FLOPs per multiply-accumulate): batch norm, ReLU, pooling and
unpooling add well under 1% and run far below peak anyway. A training step costs about three
forward passes (forward, gradient with respect to activations, gradient with respect to weights).
"""

from __future__ import annotations

import math

import keras

TRAINING_FACTOR = 3


def conv_flops(layer: keras.layers.Conv2D) -> int:
    """FLOPs of one image through ``layer`` (static spatial input shape required)."""
    _, h, w, c_out = layer.output.shape
    c_in = layer.input.shape[-1]
    if h is None or w is None:
        raise ValueError(
            f"layer {layer.name}: FLOPs need a static input size, got {layer.output.shape}"
        )
    macs = h * w * c_out * math.prod(layer.kernel_size) * c_in // layer.groups
    return 2 * macs + (h * w * c_out if layer.use_bias else 0)


def forward_flops(model: keras.Model) -> int:
    """Convolution FLOPs of one image through ``model``."""
    return sum(
        conv_flops(layer) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    )
