"""SegNet model family: presets, builders and loading."""

from __future__ import annotations

from pathlib import Path

import keras

from segnet_tf.models.loading import ModelFileError, load_model, unsafe_loading
from segnet_tf.models.registry import PRESETS, ModelPreset, build_model, list_models
from segnet_tf.models.segnet import build_segnet

__all__ = [
    "PRESETS",
    "ModelFileError",
    "ModelPreset",
    "build_model",
    "build_segnet",
    "list_models",
    "load_model",
    "transfer_weights",
    "unsafe_loading",
]


def transfer_weights(model: keras.Model, source: str | Path) -> list[str]:
    """Copy into ``model`` the weights of every same-named, same-shaped layer of ``source``.

    Fine-tuning: start from a trained model (e.g. ``models/segnet-lite-camvid``) on new data; a
    classifier for another number of classes keeps its fresh weights. Returns the names of the
    ``model`` layers with weights that were not copied; fails if none was.
    """
    donor = {layer.name: layer for layer in load_model(source).layers}
    skipped, learned = [], 0
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        other = donor.get(layer.name)
        theirs = other.get_weights() if other is not None else []
        if [w.shape for w in theirs] != [w.shape for w in weights]:
            skipped.append(layer.name)
            continue
        layer.set_weights(theirs)
        learned += bool(layer.trainable_weights)  # not the input normalisation's constants
    if not learned:
        raise ValueError(
            f"--init-weights {str(source)!r}: no layer matches {model.name!r} by name and shape"
        )
    return skipped
