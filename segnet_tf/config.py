"""What a user sets on the command line, parsed once for every tool that takes it.

``parse_size`` reads the ``HxW`` sizes of ``segnet-tf`` and of the benchmarks; whether a size
fits a model (its poolings) is the model's to say
(:func:`segnet_tf.models.registry.check_input_size`).
"""

from __future__ import annotations

from edge_demo.images import MAX_PIXELS

# Every input size becomes a model and its activations: the same cap as for an image read.
MAX_INPUT_PIXELS = MAX_PIXELS


class SizeTooLarge(ValueError):
    """An ``HxW`` above :data:`MAX_INPUT_PIXELS`."""


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``360x480``) -> ``(H, W)``; ValueError naming the text otherwise, and
    :class:`SizeTooLarge` above :data:`MAX_INPUT_PIXELS`."""
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
        height, width = int(parts[0]), int(parts[1])
        if height * width > MAX_INPUT_PIXELS:
            raise SizeTooLarge(
                f"{height * width / 1e6:g} megapixels, above the {MAX_INPUT_PIXELS / 1e6:g} "
                "megapixel limit (8K video is 33 megapixels)"
            )
        return height, width
    raise ValueError(f"{text!r}: expected HEIGHTxWIDTH with positive integers, e.g. 360x480")
