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
        labels, weights = self.pixel_weights(y_true)
        ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return ops.divide_no_nan(ops.sum(weights * ce), global_sum(ops.sum(weights)))

    def pixel_weights(self, y_true):
        """Labels with void replaced by 0 (a valid index), and each pixel's weight (0 for void)."""
        labels = ops.cast(y_true, "int32")
        valid = ops.logical_and(labels >= 0, labels < len(self.class_weights))
        safe_labels = ops.where(valid, labels, 0)
        weights = ops.where(valid, ops.take(ops.array(self.class_weights), safe_labels), 0.0)
        return safe_labels, weights

    def get_config(self) -> dict:
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="segnet_tf")
class DistillationLoss(WeightedSparseCategoricalCrossentropy):
    """Knowledge distillation (Hinton et al. 2015) per pixel: ``(1 - weight) * CE(labels) +
    weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    ``y_true`` is ``[N, H, W, 1 + C]``: the label id, then the teacher's logits
    (:func:`segnet_tf.data.pipeline.make_dataset` with ``soft_targets``). Both terms weight and
    normalise pixels alike (class weights, void ignored), and ``T^2`` keeps the soft term's
    gradients at the scale of the hard one's whatever the temperature. Plain labels
    ``[N, H, W]`` (validation, which has no teacher) give the cross entropy alone, so ``val_loss``
    stays comparable with a run without a teacher.
    """

    def __init__(
        self,
        class_weights: Sequence[float],
        weight: float = 0.5,
        temperature: float = 2.0,
        name: str = "distillation",
        **kwargs,
    ):
        super().__init__(class_weights, name=name, **kwargs)
        self.weight, self.temperature = float(weight), float(temperature)
        if not 0.0 <= self.weight <= 1.0 or not self.temperature > 0:
            raise ValueError(
                f"distillation weight must be in 0..1 and temperature > 0, got {weight}, "
                f"{temperature}"
            )

    def call(self, y_true, y_pred):
        if len(y_true.shape) != 4:
            return super().call(y_true, y_pred)
        logits = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        labels, weights = self.pixel_weights(ops.round(y_true[..., 0]))
        total = global_sum(ops.sum(weights))
        ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        t = self.temperature
        teacher = ops.softmax(y_true[..., 1:] / t, axis=-1)
        kl = ops.sum(
            teacher
            * (
                ops.log_softmax(y_true[..., 1:] / t, axis=-1) - ops.log_softmax(logits / t, axis=-1)
            ),
            axis=-1,
        )
        hard = ops.divide_no_nan(ops.sum(weights * ce), total)
        soft = ops.divide_no_nan(ops.sum(weights * kl), total) * t * t
        return (1.0 - self.weight) * hard + self.weight * soft

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight, "temperature": self.temperature}


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
