"""Evaluation with the SegNet paper's metrics: G, C, mIoU and the boundary F1 score (BF).

Images are evaluated at the model's input size: each image is resized (bilinear) to it and its
label with nearest neighbour, exactly as during validation in training. Scores at the original
resolution would also count the upsampling of the prediction, which is not the network's work and
differs between deployments.

Three layers, so that exported models reuse the same code: :func:`evaluate` (a Keras model or
``.keras`` path) calls :func:`evaluate_predictor` (any callable from an image batch to class maps,
e.g. a TFLite interpreter), which feeds :func:`evaluate_predictions` (label and predicted maps).

:func:`evaluate_sampling` is Bayesian SegNet's comparison of weight averaging with Monte Carlo
dropout sampling (Kendall et al., BMVC 2017): the same metrics with dropout off (one pass) and for
the mean of N sampled passes, as a curve over N.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from segnet_tf.data import Dataset, DatasetConfig, colorize, make_dataset, open_dataset
from segnet_tf.metrics import (
    boundary_f1,
    class_accuracy,
    confusion_matrix,
    global_accuracy,
    mean_iou,
    per_class_iou,
)
from segnet_tf.models import load_model
from segnet_tf.prediction import (
    monte_carlo_dropout_layers,
    normalised_entropy,
    sampling_curve,
    segment,
)
from segnet_tf.progress import progress
from segnet_tf.runs import RunFolder, model_classes, open_run_dataset

Predictor = Callable[[np.ndarray], np.ndarray]
"""Float32 RGB batch ``[N, H, W, 3]`` in 0..255 -> class ids ``[N, H, W]``."""
CURVE_METRICS = ("global_accuracy", "class_accuracy", "miou", "bf_score")
EXAMPLES = 6  # rows of the sample-prediction grid of ``evaluate --out``


def evaluate(
    model_or_path: keras.Model | str | Path,
    data: Dataset | str | Path | None = None,
    split: str = "val",
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    full_resolution: bool = False,
    out: str | Path | None = None,
) -> dict:
    """Scores of a model on ``split`` of ``data`` (see :func:`evaluate_predictions` for the keys),
    and with ``out`` their pictures (:func:`write_figures`).

    ``data`` is a dataset folder or :class:`Dataset`; None takes the data the model's run was
    trained on (from its run folder's options, synthetic scenes included). ``input_size`` defaults
    to the model's own. ``full_resolution`` scores against the labels at their own size, each
    image predicted as ``segnet-tf predict`` does (resized to the model, probabilities resized
    back): the number to compare with the paper's 360x480 for a model that runs smaller.
    """
    model = model_or_path if isinstance(model_or_path, keras.Model) else load_model(model_or_path)
    dataset = _dataset(data, model_or_path)
    check_classes(model, model_or_path, dataset)
    size = model_input_size(model, input_size)
    if full_resolution:
        scores = evaluate_predictor(full_resolution_predictor(model), dataset, split, out=out)
    else:
        predict = keras_predictor(model)
        scores = evaluate_predictor(predict, dataset, split, size, batch_size, out=out)
    return {
        **scores,
        "split": split,
        "input_size": None if size is None else list(size),
        "label_size": "native" if full_resolution or size is None else list(size),
    }


def evaluate_predictor(
    predict: Predictor,
    dataset: Dataset | str | Path,
    split: str = "val",
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    out: str | Path | None = None,
) -> dict:
    """Scores of any predictor on ``split`` of a dataset (or dataset folder), images and labels
    resized to ``input_size`` (None: native size, one image per batch); with ``out``, the
    pictures of :func:`write_figures` there, the examples spread evenly over the split."""
    if not isinstance(dataset, Dataset):
        dataset = open_dataset(dataset)
    ds = _batches(dataset, split, input_size, batch_size)
    names = [s.name for s in dataset.split(split)]
    shown = set(example_indices(len(names), EXAMPLES))
    examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        index = 0
        for images, labels in _progress(ds, dataset, split, input_size, batch_size):
            preds = np.asarray(predict(images.numpy()))
            if preds.shape != tuple(labels.shape):
                raise ValueError(
                    f"predictor returned class maps of shape {preds.shape} for labels of shape "
                    f"{tuple(labels.shape)}"
                )
            for image, label, pred in zip(images.numpy(), labels.numpy(), preds, strict=True):
                if out is not None and index in shown:
                    examples.append((names[index], image.astype(np.uint8), label, pred))
                index += 1
                yield label, pred

    label_maps, pred_maps = itertools.tee(pairs())
    scores = evaluate_predictions(
        map(operator.itemgetter(0), label_maps),
        map(operator.itemgetter(1), pred_maps),
        dataset.config,
    )
    if out is not None:
        write_figures(scores, examples, dataset.config, Path(out))
    return scores


def example_indices(count: int, shown: int) -> list[int]:
    """``shown`` indices of ``count`` images spread evenly, first and last included."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(shown, count)).round()})


def write_figures(
    scores: dict,
    examples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    config: DatasetConfig,
    out: Path,
) -> dict[str, Path]:
    """``confusion_matrix.png`` (rows normalised, class names), ``per_class_iou.png`` and
    ``predictions.png`` (one row per ``(name, image, label, prediction)``: image | truth |
    prediction | errors) in ``out``; returns them by name."""
    from segnet_tf.plots import (
        confusion_matrix_plot,
        error_picture,
        per_class_iou_plot,
        prediction_grid,
    )

    rows = [
        (
            name,
            image,
            colorize(label, config),
            colorize(pred, config),
            error_picture(image, label, pred, config.void_id),
        )
        for name, image, label, pred in examples
    ]
    written = {
        "confusion_matrix": confusion_matrix_plot(
            np.asarray(scores["confusion_matrix"]),
            config.class_names,
            out / "confusion_matrix.png",
        ),
        "per_class_iou": per_class_iou_plot(scores["per_class_iou"], out / "per_class_iou.png"),
    }
    if rows:
        written["predictions"] = prediction_grid(
            rows, out / "predictions.png", config.class_names, config.colours
        )
    return written


def evaluate_sampling(
    model_or_path: keras.Model | str | Path,
    data: Dataset | str | Path | None = None,
    split: str = "val",
    samples: Sequence[int] = (1, 2, 4, 8),
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    seed: int | None = 0,
) -> dict:
    """Scores after weight averaging and Monte Carlo dropout sampling, for every count in
    ``samples`` (1: weight averaging, dropout off; N > 1: mean softmax of N sampled passes).

    Returns ``curve``, one row per count in increasing order with ``samples``, ``inference``, the
    four paper metrics and the mean normalised entropy of the mean softmax over labelled pixels
    (``mean_uncertainty``, and separately where the class map is right and wrong), plus
    ``scores`` (count -> the full :func:`evaluate_predictions` dict). The counts share their
    passes, so the curve costs ``max(samples)`` passes per image (one more with 1); ``seed``
    makes it repeatable (same seed and batch size, same numbers).
    """
    counts = sorted(set(samples))
    if not counts or counts[0] < 1:
        raise ValueError(f"--mc-samples: counts must be >= 1, got {list(samples)}")
    model = model_or_path if isinstance(model_or_path, keras.Model) else load_model(model_or_path)
    if counts[-1] > 1 and not monte_carlo_dropout_layers(model):
        raise ValueError(
            f"--mc-samples {counts[-1]}: model {model.name!r} has no Monte Carlo dropout; sampling "
            "needs a 'bayesian-segnet' model (--mc-samples 1 is plain weight averaging)"
        )
    dataset = _dataset(data, model_or_path)
    check_classes(model, model_or_path, dataset)
    size = model_input_size(model, input_size)
    void = -1 if dataset.config.void_id is None else dataset.config.void_id
    labels: list[np.ndarray] = []
    maps: dict[int, list[np.ndarray]] = {n: [] for n in counts}
    entropy = {n: np.zeros(3) for n in counts}  # sums over right and wrong pixels, and count
    batches = _batches(dataset, split, size, batch_size)
    for images, batch_labels in _progress(batches, dataset, split, size, batch_size):
        batch_labels = batch_labels.numpy()
        labelled = batch_labels != void
        first = not labels  # seeded once: later batches continue the same random stream
        curve = sampling_curve(model, images.numpy(), counts, seed if first else None)
        for n, probs in curve.items():
            pred = probs.argmax(-1).astype(np.uint8)
            u = normalised_entropy(probs)
            right = labelled & (pred == batch_labels)
            entropy[n] += [u[right].sum(), u[labelled & ~right].sum(), right.sum()]
            maps[n].extend(pred)
        labels.extend(batch_labels)
    pixels = int(sum(np.sum(label != void) for label in labels))
    scores, rows = {}, []
    for n in counts:
        scores[n] = evaluate_predictions(labels, maps[n], dataset.config)
        on_right, on_wrong, right = entropy[n]
        rows.append(
            {
                "samples": n,
                "inference": "weight averaging" if n == 1 else "Monte Carlo dropout",
                **{k: scores[n][k] for k in CURVE_METRICS},
                "mean_uncertainty": (on_right + on_wrong) / max(pixels, 1),
                "uncertainty_right": on_right / right if right else None,
                "uncertainty_wrong": on_wrong / (pixels - right) if pixels > right else None,
            }
        )
    return {
        "split": split,
        "input_size": None if size is None else list(size),
        "label_size": "native" if size is None else list(size),
        "num_images": len(labels),
        "seed": seed,
        "batch_size": batch_size,
        "curve": rows,
        "scores": {str(n): found for n, found in scores.items()},
    }


def evaluate_predictions(
    label_maps: Iterable[np.ndarray], pred_maps: Iterable[np.ndarray], config: DatasetConfig
) -> dict:
    """Paper metrics of paired ``[H, W]`` ground-truth and predicted class maps.

    Returns fractions in 0..1: ``global_accuracy``, ``class_accuracy``, ``miou``, ``bf_score``,
    ``per_class_iou`` (class name -> IoU, None for a class in neither map), plus ``num_images``
    and the ``confusion_matrix`` (rows: ground truth). Void pixels count nowhere.
    """
    n = config.num_classes
    cm = np.zeros((n, n), np.int64)
    bf_scores = []
    for label, pred in zip(label_maps, pred_maps, strict=True):
        cm += confusion_matrix(label, pred, n, config.void_id)
        bf_scores.append(boundary_f1(label, pred, n, config.void_id))
    if not bf_scores:
        raise ValueError("evaluate_predictions: no images to evaluate")
    iou = per_class_iou(cm)
    bf = np.asarray(bf_scores)
    return {
        "global_accuracy": global_accuracy(cm),
        "class_accuracy": class_accuracy(cm),
        "miou": mean_iou(cm),
        "bf_score": float(np.mean(bf[np.isfinite(bf)])) if np.isfinite(bf).any() else None,
        "per_class_iou": {
            name: (float(v) if np.isfinite(v) else None)
            for name, v in zip(config.class_names, iou, strict=True)
        },
        "num_images": len(bf_scores),
        "confusion_matrix": cm.tolist(),
    }


def keras_predictor(model: keras.Model) -> Predictor:
    return lambda images: np.argmax(model.predict_on_batch(images), axis=-1)


def full_resolution_predictor(model: keras.Model) -> Predictor:
    def predict(images: np.ndarray) -> np.ndarray:
        return np.stack([segment(model, image.astype(np.uint8))[0].argmax(-1) for image in images])

    return predict


def check_classes(model: keras.Model, model_or_path, dataset: Dataset) -> None:
    """The dataset must label the classes the model predicts (see
    :func:`segnet_tf.runs.model_classes`), by name, not only by count."""
    path = None if isinstance(model_or_path, keras.Model) else model_or_path
    classes = model_classes(int(model.output_shape[-1]), path, default=dataset.config)
    if classes.class_names != dataset.config.class_names:
        raise ValueError(
            f"model {model.name!r} predicts the classes of {classes.name!r} but dataset "
            f"{dataset.config.name!r} names others: {', '.join(dataset.config.class_names)}"
        )


def _batches(dataset: Dataset, split: str, input_size, batch_size: int):
    """Evaluation batches ``(images, labels)`` at ``input_size`` (None: native, one at a time)."""
    return make_dataset(
        dataset,
        split=split,
        input_size=input_size,
        batch_size=batch_size if input_size is not None else 1,
        training=False,
        cache=False,
    )


def _progress(batches, dataset: Dataset, split: str, input_size, batch_size: int):
    """The batches of :func:`_batches` with a bar counting them."""
    per_batch = batch_size if input_size is not None else 1
    total = math.ceil(len(dataset.split(split)) / per_batch)
    return progress(batches, f"evaluate {split}", total=total, unit="batch")


def model_input_size(
    model: keras.Model, requested: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """The (H, W) a model takes; a fixed-size model accepts no other ``requested`` size."""
    fixed = tuple(model.input_shape[1:3])
    if None in fixed:
        return None if requested is None else tuple(requested)
    if requested is not None and tuple(requested) != fixed:
        raise ValueError(
            f"input size {requested[0]}x{requested[1]}: model {model.name!r} takes only "
            f"{fixed[0]}x{fixed[1]} images"
        )
    return fixed


def _dataset(data: Dataset | str | Path | None, model_or_path) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if data is not None:
        return open_dataset(data)
    run = None if isinstance(model_or_path, keras.Model) else RunFolder.of(model_or_path)
    config = None if run is None else run.train_config()
    if config is None:
        raise ValueError(
            f"no --data given and the model is not in a run directory with {RunFolder.CONFIG}; "
            "pass --data DIR"
        )
    if config.data is not None and not Path(config.data).is_dir():
        raise FileNotFoundError(
            "no --data given, and the dataset this model was trained on is not here (looked "
            f"for {os.path.relpath(config.data)}, where its {RunFolder.CONFIG} points): "
            "pass --data DIR"
        )
    return open_run_dataset(config)
