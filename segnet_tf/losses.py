"""Class-weighted cross entropy that ignores void pixels (SegNet paper, section 3.3).

SegNet trains with Caffe's ``SoftmaxWithLoss`` with ``class_weighting`` (median frequency balancing)
and an ignore label, normalised: the loss of a batch is ``sum_i w_i * ce_i / sum_i w_i`` over its
pixels, with ``w_i`` the weight of pixel i's class and 0 for void. Dividing by the summed weights
rather than the pixel count keeps the loss scale (and so the learning rate) independent of how much
of a batch is void and of the weights' overall scale; a batch that is all void has loss 0.

Any label outside ``0..num_classes-1`` counts as void, so the void id itself (CamVid's 11, or 255)
never reaches the softmax, where it would be an out-of-range index.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="segnet_tf")
class WeightedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Normalised class-weighted cross entropy on logits ``[N, H, W, C]`` and ids ``[N, H, W]``.

    ``class_weights`` has one weight per class (all ones: plain cross entropy over non-void pixels).
    """

    def __init__(
        self,
        class_weights: Sequence[float],
        name: str = "weighted_cross_entropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        if not self.class_weights or min(self.class_weights) < 0:
            raise ValueError(
                f"class_weights must be a non-empty list of weights >= 0, got {self.class_weights}"
            )

    def call(self, y_true, y_pred):
        # Under mixed precision the softmax and the sums need float32 range and precision.
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        num_classes = len(self.class_weights)
        valid = ops.logical_and(labels >= 0, labels < num_classes)
        safe_labels = ops.where(valid, labels, 0)
        weights = ops.where(valid, ops.take(ops.array(self.class_weights), safe_labels), 0.0)
        ce = ops.sparse_categorical_crossentropy(safe_labels, logits, from_logits=True)
        return ops.divide_no_nan(ops.sum(weights * ce), global_sum(ops.sum(weights)))

    def get_config(self) -> dict:
        return {**super().get_config(), "class_weights": self.class_weights}


def global_sum(value):
    """``value`` summed over the replicas a global batch is split across (itself on one).

    Dividing each replica's weighted sum by the global batch's summed weights makes the replicas'
    losses add up to the loss of the whole batch, and their gradients, which tf.distribute sums,
    to its gradient: training on N replicas matches one device on the same global batch.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
