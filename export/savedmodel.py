"""SavedModel with a serving signature ``serving_default(image) -> {"scores": logits}``.

The reference (argmax) network is saved with a dynamic batch for TF Serving and
``tf.saved_model.load``; the lowered network is saved with batch 1 as the converter's input, so
every TFLite tensor has the static shape that accelerators require. Keras' ``ExportArchive``
tracks the model's variables so that the converter can freeze them.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf


def save_serving_model(model: keras.Model, path: Path, batch_size: int | None = None) -> None:
    height, width, channels = model.inputs[0].shape[1:]
    spec = tf.TensorSpec([batch_size, height, width, channels], tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda image: {"scores": model(image, training=False)},
        input_signature=[spec],
    )
    archive.write_out(str(path), verbose=False)
