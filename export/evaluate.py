"""Scores of an exported file on a dataset: the same metrics as ``segnet-tf evaluate`` gives a
Keras model, so an int8 model's accuracy is measured, not assumed from the float one's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_tf.data import open_dataset
from segnet_tf.evaluation import evaluate_predictor
from segnet_tf.export.runners import exported_classes, load_exported


def evaluate_exported(
    path: str | Path,
    data: str | Path,
    split: str = "val",
    threads: int | None = None,
    out: str | Path | None = None,
) -> dict:
    """Paper metrics of a ``.tflite`` or ``.onnx`` segmentation model on ``split`` of the
    dataset ``data``, images and labels resized to the model's input size (as for a Keras
    model); its classes (``labels.json`` beside it, else the count) must be the dataset's. With
    ``out``, the pictures of :func:`segnet_tf.evaluation.write_figures`."""
    model = load_exported(path, threads)
    dataset = open_dataset(data)
    classes = exported_classes(path, model, dataset.config)
    if classes.class_names != dataset.config.class_names:
        raise ValueError(
            f"model {str(path)!r} predicts {classes.num_classes} classes "
            f"({', '.join(classes.class_names[:4])}, ...) but dataset {dataset.config.name!r} "
            f"names others: {', '.join(dataset.config.class_names[:4])}, ..."
        )

    def predict(images: np.ndarray) -> np.ndarray:
        return np.stack([model(image).argmax(-1) for image in images])

    size = model.input_size
    scores = evaluate_predictor(predict, dataset, split=split, input_size=size, out=out)
    return {**scores, "split": split, "input_size": list(size), "label_size": list(size)}
