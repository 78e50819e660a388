"""The same SegNet presets in PyTorch (``MaxPool2d(return_indices=True)`` + ``MaxUnpool2d``).

A peer framework for the benchmark, not a second implementation to maintain: the stage widths,
kernel size and decoder activation come from the Keras preset (:func:`torch_config`), so the two
networks have the same layers and the same FLOPs. ``ceil_mode=True`` is Keras' SAME pooling
(45 -> 23) and ``MaxUnpool2d`` takes the encoder map's size back (23 -> 45).

This module imports no TensorFlow at load time (``torch_config`` reads the Keras registry lazily),
so the fresh process that measures PyTorch's memory holds PyTorch alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def torch_config(name: str, num_classes: int = 11) -> dict:
    """Constructor arguments of :class:`TorchSegNet` for the Keras preset ``name``."""
    from segnet_tf.models.blocks import decoder_stages
    from segnet_tf.models.registry import PRESETS
    from segnet_tf.models.segnet import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        VGG16_STAGES,
        build_segnet,
        scale_stages,
    )

    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    if preset.builder is not build_segnet:
        raise ValueError(f"model {name!r} is not built by build_segnet; no PyTorch twin")
    kwargs = preset.kwargs
    stages = kwargs.get("stages", VGG16_STAGES)
    width = kwargs.get("width", 1.0)
    stages = scale_stages(stages, width) if width != 1.0 else tuple(tuple(s) for s in stages)
    return {
        "encoder": [list(s) for s in stages],
        "decoder": [list(s) for s in decoder_stages(stages)],
        "kernel_size": kwargs.get("kernel_size", 3),
        "decoder_relu": kwargs.get("decoder_activation", "relu") == "relu",
        "num_classes": num_classes,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def conv_bn(c_in: int, c_out: int, k: int, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class TorchSegNet(nn.Module):
    """Input ``[N, 3, H, W]`` raw RGB 0..255 (normalised inside, as in Keras); output logits."""

    def __init__(self, encoder, decoder, kernel_size, decoder_relu, num_classes, mean, std):
        super().__init__()
        self.config = dict(
            encoder=encoder,
            decoder=decoder,
            kernel_size=kernel_size,
            decoder_relu=decoder_relu,
            num_classes=num_classes,
            mean=mean,
            std=std,
        )
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        c = 3
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for stages, relu, blocks in (
            (encoder, True, self.encoder),
            (decoder, decoder_relu, self.decoder),
        ):
            for widths in stages:
                block = []
                for f in widths:
                    block.append(conv_bn(c, f, kernel_size, relu))
                    c = f
                blocks.append(nn.Sequential(*block))
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        switches = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            switches.append((indices, size))
        for block, (indices, size) in zip(self.decoder, reversed(switches), strict=True):
            x = block(self.unpool(x, indices, output_size=size))
        return self.classifier(x)


def save(model: TorchSegNet, path: Path) -> None:
    torch.save({"config": model.config, "state": model.state_dict()}, path)


def load(path: Path) -> TorchSegNet:
    saved = torch.load(path, map_location="cpu")
    model = TorchSegNet(**saved["config"])
    model.load_state_dict(saved["state"])
    return model
