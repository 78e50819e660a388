"""Metrics against hand-computed numbers (every expected value is worked out in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from segnet_tf.metrics import (
    boundary_f1,
    boundary_map,
    class_accuracy,
    confusion_matrix,
    global_accuracy,
    mean_iou,
    miou_metric,
    per_class_iou,
)

# 2 classes, void id 2 at the bottom-right corner.
LABELS = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 2]])
PREDS = np.array([[0, 0, 1], [0, 1, 1], [0, 1, 0]])
# Non-void (gt, pred) pairs: (0,0) x3, (0,1) x2, (1,1) x2, (1,0) x1.
CM = np.array([[3, 2], [1, 2]])


def test_confusion_matrix_skips_void_and_any_out_of_range_label():
    np.testing.assert_array_equal(confusion_matrix(LABELS, PREDS, 2, void_id=2), CM)
    # Ids outside the classes count as void even when void_id is not given (e.g. 255 padding).
    np.testing.assert_array_equal(
        confusion_matrix(np.where(LABELS == 2, 255, LABELS), PREDS, 2), CM
    )


def test_confusion_matrix_rejects_bad_predictions():
    with pytest.raises(ValueError, match="predicted ids"):
        confusion_matrix(LABELS, PREDS + 5, 2, void_id=2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(LABELS, PREDS[:2], 2)


def test_scores_of_the_two_class_example():
    assert global_accuracy(CM) == pytest.approx(5 / 8)
    assert class_accuracy(CM) == pytest.approx((3 / 5 + 2 / 3) / 2)
    # IoU(0) = 3 / (5 + 4 - 3) = 1/2; IoU(1) = 2 / (3 + 4 - 2) = 2/5.
    np.testing.assert_allclose(per_class_iou(CM), [0.5, 0.4])
    assert mean_iou(CM) == pytest.approx(0.45)


def test_missing_classes():
    # Ground truth is all class 0; half of it predicted as class 1; class 2 appears nowhere.
    cm = confusion_matrix(np.zeros((2, 2), int), np.array([[0, 0], [1, 1]]), 3)
    iou = per_class_iou(cm)
    assert iou[0] == pytest.approx(0.5) and iou[1] == 0.0 and np.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx(0.25)  # class 1 counts (predicted), class 2 does not
    assert class_accuracy(cm) == pytest.approx(0.5)  # only class 0 is in the ground truth
    empty = np.zeros((3, 3), np.int64)
    assert np.isnan(global_accuracy(empty)) and np.isnan(mean_iou(empty))


def test_streaming_miou_matches_numpy_and_ignores_void():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 8, 8))  # 3 classes + void id 3
    logits = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    metric = miou_metric(3)
    metric.update_state(labels[:1], logits[:1])
    metric.update_state(labels[1:], logits[1:])
    cm = confusion_matrix(labels, logits.argmax(-1), 3, void_id=3)
    assert float(metric.result()) == pytest.approx(mean_iou(cm), rel=1e-6)
    assert metric.name == "miou"


def halves(split_by_row: list[int], width: int = 10) -> np.ndarray:
    """Rows of class 0 up to column ``split_by_row[r]`` (exclusive), class 1 after."""
    return np.array([[0] * s + [1] * (width - s) for s in split_by_row])


def test_boundary_map_marks_both_sides_and_not_the_image_edge():
    edges = boundary_map(halves([5] * 3), np.ones((3, 10), bool))
    expected = np.zeros((3, 10), bool)
    expected[:, 4:6] = True
    np.testing.assert_array_equal(edges, expected)


def test_boundary_f1_perfect_shifted_and_partly_matching():
    gt = halves([5] * 10)  # 10x10: diagonal 14.1 px, default tolerance 0.106 px (exact match)
    assert boundary_f1(gt, gt, 2) == 1.0
    shifted = halves([6] * 10)
    assert boundary_f1(gt, shifted, 2) == 0.0
    assert boundary_f1(gt, shifted, 2, tolerance=1.01 / np.hypot(10, 10)) == pytest.approx(1.0)
    # Top 5 rows right, bottom 5 rows shifted by 2. Predicted class-0 boundary: column 4 of rows
    # 0-4, column 6 of rows 5-9 and (5, 5) under the step: 11 pixels, 5 on the true column 4.
    # P = 5/11, R = 5/10, F1 = 10/21; class 1 is the mirror image, so BF = 10/21.
    partly = halves([5] * 5 + [7] * 5)
    assert boundary_f1(gt, partly, 2) == pytest.approx(10 / 21)


def test_boundary_f1_ignores_void_and_scores_only_ground_truth_classes():
    gt = halves([5] * 10)
    gt[:, 4] = 255  # a void column between the classes: no true boundary is left
    assert boundary_f1(gt, halves([5] * 10), 2, void_id=255) == 1.0  # nothing to find, none found
    assert boundary_f1(gt, halves([3] * 10), 2, void_id=255) == 0.0  # boundaries that are not there
    assert np.isnan(boundary_f1(np.full((4, 4), 255), np.zeros((4, 4), int), 2, void_id=255))
    # Class 1 is absent from the ground truth: only class 0 is scored, and it has no boundary.
    assert boundary_f1(np.zeros((6, 6), int), halves([3] * 6, 6), 2) == 0.0
