"""Scores of an exported file on a dataset: the same metrics as ``segnet-tf evaluate`` gives a
Keras model, so an int8 model's accuracy is measured, not assumed from the float one's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_tf.data import open_dataset
from segnet_tf.evaluation import evaluate_predictor
from segnet_tf.export.tflite import TFLiteModel


def evaluate_tflite(
    path: str | Path, data: str | Path, split: str = "val", threads: int | None = None
) -> dict:
    """Paper metrics of a ``.tflite`` segmentation model on ``split`` of the dataset ``data``,
    images and labels resized to the model's input size (as for a Keras model)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {str(path)!r}: no such file")
    try:
        model = TFLiteModel(path.read_bytes(), num_threads=threads)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"model {str(path)!r}: not a TFLite model: {e}") from e

    dataset = open_dataset(data)
    num_classes = int(model.output["shape"][-1])
    if num_classes != dataset.config.num_classes:
        raise ValueError(
            f"model {str(path)!r} predicts {num_classes} classes but dataset "
            f"{dataset.config.name!r} has {dataset.config.num_classes}"
        )

    def predict(images: np.ndarray) -> np.ndarray:
        return np.stack([model(image).argmax(-1) for image in images])

    size = model.input_size
    scores = evaluate_predictor(predict, dataset, split=split, input_size=size)
    return {**scores, "split": split, "input_size": list(size), "label_size": list(size)}
