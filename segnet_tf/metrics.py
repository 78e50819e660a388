"""Segmentation metrics of the SegNet paper (TPAMI 2017, section 4): G, C, mIoU and BF.

Everything is a pure numpy function of a confusion matrix (rows: ground truth, columns:
prediction), except the boundary F1 score, which needs the label maps. Void pixels (any label id
outside ``0..num_classes-1``) are left out of every metric.

Conventions for classes that are missing, which the paper leaves open:

- class accuracy (C) averages the recall of the classes present in the ground truth;
- mean IoU averages over the classes present in the ground truth *or* the prediction (a class that
  is only predicted has IoU 0 and counts; one that appears in neither is undefined and skipped),
  the same rule as ``keras.metrics.MeanIoU``, which :func:`miou_metric` uses during training.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np


def confusion_matrix(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, void_id: int | None = None
) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts of (ground truth, predicted) pixel pairs.

    Pixels whose label is ``void_id`` or any other id outside the classes are skipped.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} differ in shape")
    labels, preds = labels.ravel().astype(np.int64), preds.ravel().astype(np.int64)
    keep = (labels >= 0) & (labels < num_classes)
    if void_id is not None:
        keep &= labels != void_id
    labels, preds = labels[keep], preds[keep]
    if preds.size and (preds.min() < 0 or preds.max() >= num_classes):
        raise ValueError(
            f"predicted ids must be in 0..{num_classes - 1}, got {preds.min()}..{preds.max()}"
        )
    counts = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def global_accuracy(cm: np.ndarray) -> float:
    """G: fraction of (non-void) pixels classified correctly."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def class_accuracy(cm: np.ndarray) -> float:
    """C: mean per-class recall over the classes present in the ground truth."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / support[present]))


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU of every class; NaN for a class absent from both ground truth and prediction."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    iou = np.full(len(tp), np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    return iou


def mean_iou(cm: np.ndarray) -> float:
    """mIoU over the classes present in the ground truth or the prediction."""
    iou = per_class_iou(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def boundary_f1(
    label: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    void_id: int | None = None,
    tolerance: float = 0.0075,
) -> float:
    """Boundary F1 (BF) of one image (Csurka et al., BMVC 2013, as used by SegNet).

    For every class present in the ground truth, the boundary pixels of its ground-truth and
    predicted masks are matched within ``tolerance`` times the image diagonal (0.75 %: 4.5 pixels
    at 360x480): precision is the share of predicted boundary pixels near a true one, recall the
    share of true boundary pixels near a predicted one. The image's BF is the mean F1 over those
    classes (NaN when the image has no labelled pixel); the paper then averages images.

    A pixel is on a boundary when a 4-neighbour has another id; only pairs of non-void pixels
    count, so the edges of void regions and of the image are no boundary in either map. A class
    whose mask has no boundary in both maps (it fills the labelled area) scores 1.
    """
    label, pred = np.asarray(label), np.asarray(pred)
    if label.shape != pred.shape or label.ndim != 2:
        raise ValueError(f"boundary_f1 takes two [H, W] maps, got {label.shape} and {pred.shape}")
    valid = (label >= 0) & (label < num_classes)
    if void_id is not None:
        valid &= label != void_id
    classes = np.unique(label[valid])
    if classes.size == 0:
        return float("nan")
    max_dist = tolerance * float(np.hypot(*label.shape))
    gt_edges, pred_edges = boundary_map(label, valid), boundary_map(pred, valid)
    scores = [_f1(gt_edges & (label == c), pred_edges & (pred == c), max_dist) for c in classes]
    return float(np.mean(scores))


def boundary_map(ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Boolean ``[H, W]``: valid pixels with a valid 4-neighbour of another id."""
    edges = np.zeros(ids.shape, bool)
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        differ = (ids[a] != ids[b]) & valid[a] & valid[b]
        edges[a] |= differ
        edges[b] |= differ
    return edges


def _f1(gt: np.ndarray, pred: np.ndarray, max_dist: float) -> float:
    if not gt.any() and not pred.any():
        return 1.0
    if not gt.any() or not pred.any():
        return 0.0
    precision = np.mean(_distance_to(gt)[pred] <= max_dist)
    recall = np.mean(_distance_to(pred)[gt] <= max_dist)
    total = precision + recall
    return float(2 * precision * recall / total) if total else 0.0


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest ``True`` pixel of ``mask``."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def miou_metric(
    num_classes: int, name: str = "miou", packed: bool = False
) -> keras.metrics.MeanIoU:
    """Streaming mIoU on logits for ``fit``/``evaluate``; labels outside the classes (void) are
    dropped by Keras' bounds check, so any void id works and the model reloads without us.
    ``packed``: labels that travel before a teacher's logits (distillation)."""
    kind = PackedLabelsMeanIoU if packed else keras.metrics.MeanIoU
    return kind(num_classes=num_classes, sparse_y_pred=False, name=name)


@keras.saving.register_keras_serializable(package="segnet_tf")
class PackedLabelsMeanIoU(keras.metrics.MeanIoU):
    """:class:`keras.metrics.MeanIoU` of ``y_true[..., 0]`` when ``y_true`` is ``[N, H, W, 1 + C]``
    (labels, then a teacher's logits: :class:`segnet_tf.losses.DistillationLoss`)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        if len(y_true.shape) == 4:
            y_true = keras.ops.round(y_true[..., 0])
        return super().update_state(y_true, y_pred, sample_weight)
