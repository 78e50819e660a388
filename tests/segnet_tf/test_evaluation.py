"""Evaluation: hand-worked scores, a constant predictor checked against label counts, and a
trained run whose mIoU must equal the one Keras measured during training."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from segnet_tf.data import CAMVID, Dataset, DatasetConfig, make_dataset, synthetic_dataset
from segnet_tf.evaluation import evaluate, evaluate_predictions, evaluate_predictor
from segnet_tf.models import load_model

TWO = DatasetConfig(name="two", class_names=("a", "b"), colours=((0, 0, 0), (9, 9, 9)), void_id=2)


def halves(split_by_row: list[int], width: int = 10) -> np.ndarray:
    return np.array([[0] * s + [1] * (width - s) for s in split_by_row])


def test_evaluate_predictions_by_hand():
    gt = halves([5] * 10)
    partly = halves([5] * 5 + [7] * 5)  # rows 5-9: columns 5 and 6 of class 1 predicted as 0
    void = np.full((10, 10), 2)
    scores = evaluate_predictions([gt, gt, void], [partly, gt, gt], TWO)
    # 200 labelled pixels, 10 wrong; class 0 fully recalled, class 1 90 of 100.
    assert scores["global_accuracy"] == pytest.approx(190 / 200)
    assert scores["class_accuracy"] == pytest.approx((1.0 + 0.9) / 2)
    assert scores["per_class_iou"] == pytest.approx({"a": 100 / 110, "b": 90 / 100})
    assert scores["miou"] == pytest.approx((100 / 110 + 0.9) / 2)
    # BF 10/21 for the shifted image (see test_metrics), 1 for the exact one; the all-void image
    # has no BF and is left out of the mean.
    assert scores["bf_score"] == pytest.approx((10 / 21 + 1.0) / 2)
    assert scores["num_images"] == 3
    assert scores["confusion_matrix"] == [[100, 0], [10, 90]]
    with pytest.raises(ValueError, match="no images"):
        evaluate_predictions([], [], TWO)


def test_a_constant_predictor_scores_what_the_label_counts_say():
    dataset = synthetic_dataset(train=0, val=3, size=(48, 64), seed=1)
    labels = np.concatenate(
        [
            lab.numpy()
            for _, lab in make_dataset(
                dataset, split="val", input_size=None, batch_size=1, training=False
            )
        ]
    )
    scores = evaluate_predictor(
        lambda images: np.zeros(images.shape[:3], int),
        dataset,
        "val",
        input_size=(48, 64),
        batch_size=2,
    )
    present = np.unique(labels)
    sky = np.mean(labels == 0)  # synthetic scenes have no void
    assert scores["num_images"] == 3
    assert scores["global_accuracy"] == pytest.approx(sky)
    assert scores["class_accuracy"] == pytest.approx(1 / len(present))
    assert scores["miou"] == pytest.approx(sky / len(set(present) | {0}))
    assert scores["bf_score"] == 0.0  # a constant map has no boundary at all


@pytest.mark.slow
def test_evaluating_a_run_matches_the_miou_measured_in_training(tiny_run):
    scores = evaluate(tiny_run.run_dir)  # the run's own val data (synthetic) at its input size
    assert scores["miou"] == pytest.approx(tiny_run.best_miou, abs=1e-6)
    assert scores["num_images"] == 8 and scores["input_size"] == [64, 96]
    for key in ("global_accuracy", "class_accuracy", "miou", "bf_score"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert len(scores["per_class_iou"]) == 11 and "Bicyclist" in scores["per_class_iou"]
    assert all(v is None or 0 <= v <= 1 for v in scores["per_class_iou"].values())
    json.dumps(scores, allow_nan=False)


@pytest.mark.slow
def test_evaluate_rejects_other_sizes_and_unknown_data(tiny_run):
    model = load_model(tiny_run.best_path)
    with pytest.raises(ValueError, match="takes only 64x96"):
        evaluate(model, synthetic_dataset(train=0, val=1), input_size=(32, 48))
    with pytest.raises(ValueError, match="pass --data"):
        evaluate(model)
    with pytest.raises(ValueError, match="predicts 11 classes but 'two' .* names 2"):
        evaluate(model, Dataset(root=None, config=TWO, splits={"val": ()}))


@pytest.mark.slow
def test_full_resolution_scores_every_label_pixel_at_its_own_size(tiny_run):
    model = load_model(tiny_run.best_path)  # takes 64x96
    same = synthetic_dataset(train=0, val=3, size=(64, 96))
    at_input = evaluate(model, same)
    at_labels = evaluate(model, same, full_resolution=True)
    # Same size: resizing is the identity, and the scores are the model-size scores.
    assert at_labels["miou"] == pytest.approx(at_input["miou"], abs=1e-9)

    big = synthetic_dataset(train=0, val=3, size=(128, 192))
    scores = evaluate(model, big, full_resolution=True)
    labels = [sample.load_label(big.config) for sample in big.split("val")]
    assert np.sum(scores["confusion_matrix"]) == sum(np.sum(lab != 11) for lab in labels)
    assert scores["label_size"] == "native" and scores["input_size"] == [64, 96]


def test_evaluate_needs_a_dataset_with_the_models_classes(tmp_path):
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Conv2D(11, 1)(inputs)).save(tmp_path / "best.keras")
    run = {"train": {"data": None}, "dataset": CAMVID.to_dict()}
    (tmp_path / "config.json").write_text(json.dumps(run))
    roads = DatasetConfig(
        name="roads", class_names=tuple(f"c{i}" for i in range(11)), colours=((0, 0, 0),) * 11
    )
    with pytest.raises(ValueError, match="classes of 'camvid' but dataset 'roads' names others"):
        evaluate(tmp_path / "best.keras", Dataset(root=None, config=roads, splits={"val": ()}))


def test_the_sample_grid_spreads_its_examples_over_the_split():
    from segnet_tf.evaluation import example_indices

    assert example_indices(101, 6) == [0, 20, 40, 60, 80, 100]
    assert example_indices(3, 6) == [0, 1, 2] and example_indices(1, 6) == [0]


def test_the_errors_panel_by_hand():
    from segnet_tf.plots import error_picture

    image = np.full((1, 3, 3), 90, np.uint8)
    truth = np.array([[1, 2, 11]])
    pred = np.array([[1, 0, 4]])
    np.testing.assert_array_equal(
        error_picture(image, truth, pred, 11)[0], [[30, 30, 30], [255, 0, 0], [128, 128, 128]]
    )
